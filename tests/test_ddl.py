"""QLDB DDL statements from the journal: the parser (every form, quoting, case, comments) and the schema state."""

from __future__ import annotations

import json

import pytest
from amazon.ion import simpleion
from hypothesis import given, settings
from hypothesis import strategies as st
from qldb_migrate.ddl import (
    CreateIndex,
    CreateTable,
    DropIndex,
    DropTable,
    NotDdl,
    UndropTable,
    Unparseable,
    parse_statement,
)
from qldb_migrate.ddlstate import ACTIVE, DROPPED, At, DocumentRef, LedgerSchema

# --- parser: the documented forms ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # the examples of the QLDB PartiQL reference pages
        ("CREATE TABLE VehicleRegistration", CreateTable("VehicleRegistration")),
        ("CREATE TABLE Vehicle WITH (aws_tags = `{'environment': 'development'}`)",
         CreateTable("Vehicle", {"environment": "development"})),
        ("CREATE TABLE Vehicle WITH (aws_tags = `{'key1': 'value1', 'key2': 'value2'}`)",
         CreateTable("Vehicle", {"key1": "value1", "key2": "value2"})),
        ("CREATE INDEX ON VehicleRegistration (LicensePlateNumber)",
         CreateIndex("VehicleRegistration", "LicensePlateNumber")),
        ('DROP INDEX "4tPW3fUhaVhDinRgKRLhGU" ON VehicleRegistration WITH (purge = true)',
         DropIndex("4tPW3fUhaVhDinRgKRLhGU", "VehicleRegistration", purge=True)),
        ("DROP TABLE VehicleRegistration", DropTable("VehicleRegistration")),
        ('UNDROP TABLE "5PLf9SXwndd63lPaSIa0O6"', UndropTable("5PLf9SXwndd63lPaSIa0O6")),
        # keywords in any case; names kept exactly (QLDB names are case sensitive)
        ("create table vehicle", CreateTable("vehicle")),
        ("CrEaTe TaBlE VeHiClE", CreateTable("VeHiClE")),
        ("create index on Person (govId)", CreateIndex("Person", "govId")),
        ('drop index "abc" on Person with (purge = TRUE)', DropIndex("abc", "Person", purge=True)),
        ("drop table _t_1", DropTable("_t_1")),
        ('undrop table "Aa"', UndropTable("Aa")),
        # quoted identifiers: anything, "" is one quote; quoted and plain name the same table
        ('CREATE TABLE "Person"', CreateTable("Person")),
        ('CREATE TABLE "user"', CreateTable("user")),
        ('CREATE TABLE "a ""b"" c"', CreateTable('a "b" c')),
        ('CREATE TABLE "Ünïcode ☃ -- not a comment /* nor this */"',
         CreateTable("Ünïcode ☃ -- not a comment /* nor this */")),
        ('CREATE INDEX ON "Person" ("Gov Id")', CreateIndex("Person", "Gov Id")),
        ('CREATE INDEX ON "select" ("from")', CreateIndex("select", "from")),
        ('DROP INDEX "x""y" ON "T t"', DropIndex('x"y', "T t", purge=False)),
        ('DROP TABLE "DROP TABLE x"', DropTable("DROP TABLE x")),
        ("CREATE TABLE $tbl", CreateTable("$tbl")),
        # whitespace, newlines, comments, one trailing semicolon
        ("  \n\tCREATE TABLE Person  \n", CreateTable("Person")),
        ("CREATE\nTABLE\r\nPerson;", CreateTable("Person")),
        ("CREATE TABLE Person ;  -- done", CreateTable("Person")),
        ("-- make it\nCREATE /* the */ TABLE/**/Person/* end */", CreateTable("Person")),
        ("/* multi\nline */ DROP\n-- x\nINDEX\"i\"ON\"T\"WITH(purge=true);", DropIndex("i", "T", purge=True)),
        ("CREATE INDEX ON T(f)", CreateIndex("T", "f")),
        ("DROP TABLE -- old Mac line end\rT", DropTable("T")),
        ("DROP TABLE -- Windows\r\nT", DropTable("T")),
        ("CREATE INDEX ON T ( f ) ;", CreateIndex("T", "f")),
        # the tags literal: Ion text, backticks inside Ion strings and comments do not close it
        ("CREATE TABLE T WITH (aws_tags = `{}`)", CreateTable("T", {})),
        ('CREATE TABLE T WITH (aws_tags = `{a: "x`y", /* ` */ b: \'\'\'p`q\'\'\' // `\n}`)',
         CreateTable("T", {"a": "x`y", "b": "p`q"})),
        ("CREATE TABLE T WITH ( aws_tags=`{'k':\"v\"}` ) ;", CreateTable("T", {"k": "v"})),
    ],
)
def test_documented_forms(text: str, expected: object) -> None:
    assert parse_statement(text) == expected


def test_tags_keep_their_names_and_values_exactly() -> None:
    result = parse_statement("CREATE TABLE T WITH (aws_tags = `{'Env': 'Prod', 'cost-center': '42'}`)")
    assert isinstance(result, CreateTable)
    assert result.tags == {"Env": "Prod", "cost-center": "42"}


# --- parser: not DDL -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "INSERT INTO Customer ?",
        "SELECT email FROM Customer WHERE email = ?",
        "UPDATE Customer as b SET b.guid = ? WHERE b.email = ?",
        "DELETE FROM Person AS p WHERE p.GovId = ?",
        "FROM VehicleRegistration AS r \nWHERE r.VIN = '1N4AL11D75C109151'\nINSERT INTO r.Owners.SecondaryOwners\n"
        "    VALUE { 'PersonId' : 'CMVdR77XP8zAglmmFDGTvt' }",
        "EXEC redact_revision '2021-08-02T00:00Z', 'tableId', 'documentId'",
        "SELECT * FROM information_schema.user_tables WHERE name = 'CREATE TABLE x'",
        "-- CREATE TABLE x\nSELECT 1",
        "/* DROP TABLE x */ INSERT INTO T ?",
        '"CREATE" TABLE x',  # a quoted identifier is not the keyword
        "CREATED TABLE x",
        "createtable x",
        "SELECT 'unterminated",  # only the first token decides; the rest is not ours to judge
        "REMOVE p.x FROM T p WHERE p.id = ?",
        "",
        "   -- only a comment",
        "(SELECT 1)",
    ],
)
def test_not_ddl(text: str) -> None:
    assert parse_statement(text) == NotDdl()


# --- parser: unparseable, reported -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("CREATE VIEW v", "expected TABLE or INDEX"),
        ("CREATE TABLE", "expected a table name"),
        ("CREATE TABLE T U", "after the statement"),
        ("CREATE TABLE T; CREATE TABLE U", "after the statement"),
        ("CREATE TABLE T;;", "after the statement"),
        ("CREATE TABLE IF NOT EXISTS T", "after the statement"),
        ('CREATE TABLE ""', "empty a table name"),
        ("CREATE TABLE Café", "'é'"),
        ("CREATE TABLE ?", "parameter"),
        ("CREATE TABLE T WITH (aws_tags = ?)", "parameter"),
        ("CREATE TABLE T WITH (AWS_TAGS = `{}`)", "case sensitive"),
        ("CREATE TABLE T WITH (tags = `{}`)", "expected aws_tags"),
        ("CREATE TABLE T WITH (aws_tags = '{}')", "Ion literal in backticks"),
        ("CREATE TABLE T WITH (aws_tags = `[1]`)", "not an Ion struct"),
        ("CREATE TABLE T WITH (aws_tags = `null.struct`)", "not an Ion struct"),
        ("CREATE TABLE T WITH (aws_tags = `{a: 1}`)", "names to strings"),
        ("CREATE TABLE T WITH (aws_tags = `{a: null.string}`)", "names to strings"),
        ("CREATE TABLE T WITH (aws_tags = `{a: 'x', a: 'y'}`)", "twice"),
        ("CREATE TABLE T WITH (aws_tags = `{a: \"x`)", "unterminated Ion literal"),
        ("CREATE TABLE T WITH (aws_tags = `{a: `)", "not one Ion value"),
        ("CREATE TABLE T WITH (aws_tags = `{a: }`)", "not one Ion value"),
        ("CREATE TABLE T WITH (aws_tags = `{}` `{}`)", "expected ')'"),
        ("CREATE INDEX ON T (a.b)", "one top-level field"),
        ("CREATE INDEX ON T (a[0])", "one top-level field"),
        ("CREATE INDEX ON T (a, b)", "composite"),
        ("CREATE INDEX ON T ()", "expected a field name"),
        ("CREATE INDEX ON T f", "expected '('"),
        ("CREATE INDEX idx ON T (f)", "expected ON"),
        ("CREATE INDEX ON T (?)", "parameter"),
        ('DROP INDEX "i" ON T WITH (purge = false)', "expected TRUE"),
        ('DROP INDEX "i" ON T WITH (PURGE = true)', "case sensitive"),
        ('DROP INDEX "i" ON T WITH (purge = `true`)', "expected TRUE"),
        ('DROP INDEX "i"', "expected ON"),
        ('DROP INDEX "i" ON', "expected a table name"),
        ("DROP VIEW v", "expected TABLE or INDEX"),
        ("DROP TABLE", "expected a table name"),
        ("DROP TABLE T CASCADE", "after the statement"),
        ("UNDROP TABLE", "expected a table id"),
        ("UNDROP INDEX \"x\"", "expected TABLE"),
        ('CREATE TABLE "unterminated', "unterminated quoted identifier"),
        ("CREATE TABLE T /* unterminated", "unterminated /* comment"),
        ("/* unterminated CREATE TABLE x", "unterminated /* comment"),
    ],
)
def test_unparseable(text: str, reason: str) -> None:
    result = parse_statement(text)
    assert isinstance(result, Unparseable), result
    assert reason in result.reason, result.reason


# --- parser: generated statements -----------------------------------------------------------------

_plain = st.from_regex(r"[A-Za-z_$][A-Za-z0-9_$]{0,12}", fullmatch=True).filter(
    lambda w: w.upper() not in {"TABLE", "INDEX", "ON", "WITH", "CREATE", "DROP", "UNDROP", "TRUE"})
_any_name = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12)
_blank = st.lists(st.sampled_from([" ", "\n", "\t", "\r\n", "/* c */", "/**/", "-- c\n", "/* -- */"]),
                  min_size=1, max_size=3).map("".join)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _ident(draw: st.DrawFn) -> tuple[str, str]:
    """(name, how the statement writes it)."""
    if draw(st.booleans()):
        name = draw(_plain)
        return name, draw(st.sampled_from([name, _quote(name)]))
    name = draw(_any_name)
    return name, _quote(name)


def _kw(draw: st.DrawFn, word: str) -> str:
    return "".join(c.upper() if draw(st.booleans()) else c.lower() for c in word)


@st.composite
def _statements(draw: st.DrawFn) -> tuple[str, object]:
    b = lambda: draw(_blank)
    kind = draw(st.sampled_from(["create", "tags", "index", "drop_index", "drop", "undrop"]))
    table, table_text = _ident(draw)
    if kind == "create":
        text, expected = f"{_kw(draw, 'CREATE')}{b()}{_kw(draw, 'TABLE')}{b()}{table_text}", CreateTable(table)
    elif kind == "tags":
        tags = draw(st.dictionaries(_any_name, _any_name, max_size=3))
        ion = simpleion.dumps(tags, binary=False, omit_version_marker=True)
        text = f"{_kw(draw, 'create')}{b()}{_kw(draw, 'table')}{b()}{table_text}{b()}{_kw(draw, 'with')}{b()}(" \
               f"aws_tags{b()}={b()}`{ion}`{b()})"
        expected = CreateTable(table, tags)
    elif kind == "index":
        fld, fld_text = _ident(draw)
        text = f"{_kw(draw, 'CREATE')}{b()}{_kw(draw, 'INDEX')}{b()}{_kw(draw, 'ON')}{b()}{table_text}{b()}(" \
               f"{b()}{fld_text}{b()})"
        expected = CreateIndex(table, fld)
    elif kind == "drop_index":
        index, index_text = _ident(draw)
        purge = draw(st.booleans())
        clause = f"{b()}{_kw(draw, 'WITH')}{b()}({b()}purge{b()}={b()}{_kw(draw, 'true')}{b()})" if purge else ""
        text = f"{_kw(draw, 'DROP')}{b()}{_kw(draw, 'INDEX')}{b()}{index_text}{b()}{_kw(draw, 'ON')}{b()}" \
               f"{table_text}{clause}"
        expected = DropIndex(index, table, purge)
    elif kind == "drop":
        text, expected = f"{_kw(draw, 'DROP')}{b()}{_kw(draw, 'TABLE')}{b()}{table_text}", DropTable(table)
    else:
        text, expected = f"{_kw(draw, 'UNDROP')}{b()}{_kw(draw, 'TABLE')}{b()}{table_text}", UndropTable(table)
    tail = draw(st.sampled_from(["", ";", " ;", ";\n-- end", "\n", " /* end */ "]))
    head = draw(st.sampled_from(["", " ", "\n\t", "-- start\n", "/* start */"]))
    return head + text + tail, expected


@settings(max_examples=600, deadline=None)
@given(_statements())
def test_generated_statements_parse_exactly(case: tuple[str, object]) -> None:
    text, expected = case
    assert parse_statement(text) == expected


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_any_text_is_classified_without_raising(text: str) -> None:
    result = parse_statement(text)
    assert isinstance(result, NotDdl | Unparseable | CreateTable | CreateIndex | DropIndex | DropTable | UndropTable)


# --- state machine ---------------------------------------------------------------------------------


def _doc(name: str, table_id: str, *statements: int) -> DocumentRef:
    return DocumentRef(name, table_id, tuple(statements))


def _codes(findings: list) -> list[str]:  # type: ignore[type-arg]
    return [f.code for f in findings]


def test_create_write_index_drop_undrop() -> None:
    s = LedgerSchema()
    assert s.apply(1, "2024-01-01T00:00:00.000Z", ["CREATE TABLE Person"]) == []
    person = s.active("Person")
    assert person is not None and person.table_id is None and person.created == At(1, 0, "2024-01-01T00:00:00.000Z")
    assert s.apply(2, None, ["CREATE INDEX ON Person (GovId)", "INSERT INTO Person ?"], [_doc("Person", "P1", 1)]) == []
    assert person.table_id == "P1" and [ix.field for ix in person.live_indexes()] == ["GovId"]
    assert s.apply(3, None, ["DROP TABLE Person"]) == []
    assert person.status == DROPPED and person.changed == At(3, 0, None) and s.active("Person") is None
    assert s.apply(4, None, ['UNDROP TABLE "P1"']) == []
    assert person.status == ACTIVE and s.active("Person") is person
    assert [ix.field for ix in person.live_indexes()] == ["GovId"]  # dropping a table leaves its indexes


def test_name_reused_after_drop_is_a_new_table() -> None:
    s = LedgerSchema()
    s.apply(1, None, ["CREATE TABLE T", "INSERT INTO T ?"], [_doc("T", "A", 1)])
    s.apply(2, None, ["DROP TABLE T"])
    s.apply(3, None, ["CREATE TABLE T"])
    s.apply(4, None, ["INSERT INTO T ?"], [_doc("T", "B", 0)])
    old, new = s.by_id("A"), s.by_id("B")
    assert old is not None and new is not None and old is not new
    assert (old.status, new.status) == (DROPPED, ACTIVE) and s.active("T") is new
    assert s.apply(5, None, ['UNDROP TABLE "A"'])[0].code == "conflict"  # QLDB refuses: T is active


def test_ids_bind_at_the_statement_that_wrote_the_document() -> None:
    s = LedgerSchema()
    s.apply(1, None, ["CREATE TABLE T", "INSERT INTO T ?"], [_doc("T", "A", 1)])
    findings = s.apply(2, None, ["UPDATE T SET x = 1", "DROP TABLE T", "CREATE TABLE T", "INSERT INTO T ?"],
                       [_doc("T", "A", 0), _doc("T", "B", 3)])
    assert findings == []
    assert s.by_id("A").status == DROPPED  # type: ignore[union-attr]
    assert s.active("T") is s.by_id("B")


def test_ambiguous_document_position_in_a_reshaping_block_is_reported_not_bound() -> None:
    s = LedgerSchema()
    findings = s.apply(1, None, ["CREATE TABLE T", "INSERT INTO T ?"], [_doc("T", "A", 7)])
    assert _codes(findings) == ["ambiguous"] and s.by_id("A") is None and s.active("T").table_id is None  # type: ignore[union-attr]
    # without DDL that changes what a name means, the position does not matter
    assert s.apply(2, None, ["INSERT INTO T ?"], [_doc("T", "A")]) == []
    assert s.active("T").table_id == "A"  # type: ignore[union-attr]


def test_tables_from_before_the_blocks_seen_are_assumed() -> None:
    s = LedgerSchema()
    findings = s.apply(50, None, ["INSERT INTO Old ?", "CREATE INDEX ON Older (f)"], [_doc("Old", "O1", 0)])
    assert _codes(findings) == ["assumed", "assumed"]
    old, older = s.by_id("O1"), s.active("Older")
    assert old is not None and old.created is None and old.name == "Old"
    assert older is not None and older.created is None and older.table_id is None
    assert [ix.field for ix in older.live_indexes()] == ["f"]


def test_undrop_of_an_unknown_id_learns_its_name_from_documents() -> None:
    s = LedgerSchema()
    findings = s.apply(10, None, ['UNDROP TABLE "X"'])
    assert _codes(findings) == ["assumed"]
    t = s.by_id("X")
    assert t is not None and t.name is None and t.status == ACTIVE
    # an index created by name after the UNDROP is on the same table: merged once documents show the name
    s.apply(11, None, ["CREATE INDEX ON Lost (f)"])
    s.apply(12, None, ["INSERT INTO Lost ?"], [_doc("Lost", "X", 0)])
    assert t.name == "Lost" and [ix.field for ix in t.indexes] == ["f"]
    assert [x for x in s.tables if x.name == "Lost"] == [t]


def test_drop_index_by_elimination_when_all_indexes_are_known() -> None:
    s = LedgerSchema()
    s.apply(1, None, ["CREATE TABLE T", "CREATE INDEX ON T (a)"])
    findings = s.apply(2, None, ['DROP INDEX "i1" ON T WITH (purge = true)'])
    assert _codes(findings) == ["index-id-deduced"]
    (ix,) = s.active("T").indexes  # type: ignore[union-attr]
    assert ix.index_id == "i1" and ix.dropped == At(2, 0, None)


def test_drop_index_among_several_is_index_id_unknown() -> None:
    s = LedgerSchema()
    s.apply(1, None, ["CREATE TABLE T", "CREATE INDEX ON T (a)", "CREATE INDEX ON T (b)"])
    findings = s.apply(2, None, ['DROP INDEX "i1" ON T WITH (purge = true)'])
    assert _codes(findings) == ["index-id-unknown"]
    t = s.active("T")
    assert t is not None
    assert [(ix.field, ix.dropped, ix.possibly_dropped_by) for ix in t.indexes] == [
        ("a", None, ["i1"]), ("b", None, ["i1"])]
    assert [(d.index_id, d.at) for d in t.unmatched_index_drops] == [("i1", At(2, 0, None))]
    # an id learned later settles it, and clears the doubt on the other index
    s.apply(3, None, ["INSERT INTO T ?"], [_doc("T", "TID", 0)])
    assert s.set_index_id("TID", "b", "i1")
    assert [(ix.field, ix.index_id, ix.dropped, ix.possibly_dropped_by) for ix in t.indexes] == [
        ("a", None, None, []), ("b", "i1", At(2, 0, None), [])]
    assert t.unmatched_index_drops == []


def test_drop_index_by_a_known_id() -> None:
    s = LedgerSchema()
    s.apply(1, None, ["CREATE TABLE T", "CREATE INDEX ON T (a)", "CREATE INDEX ON T (b)", "INSERT INTO T ?"],
            [_doc("T", "TID", 3)])
    assert s.set_index_id("TID", "a", "ia") and not s.set_index_id("TID", "zz", "iz")
    assert s.apply(2, None, ['DROP INDEX "ia" ON T WITH (purge = true)']) == []
    t = s.by_id("TID")
    assert t is not None and [ix.field for ix in t.live_indexes()] == ["b"]


def test_no_deduction_for_a_table_from_before_the_blocks_seen_or_after_an_unparseable_statement() -> None:
    s = LedgerSchema()
    s.apply(1, None, ["CREATE INDEX ON Pre (a)"])
    assert "index-id-unknown" in _codes(s.apply(2, None, ['DROP INDEX "x" ON Pre WITH (purge = true)']))
    s.apply(3, None, ["CREATE TABLE T", "CREATE INDEX ON T (a)", "CREATE INDEX ON T (a.b)"])
    assert not s.all_parsed
    assert _codes(s.apply(4, None, ['DROP INDEX "y" ON T WITH (purge = true)'])) == ["index-id-unknown"]


def test_contradictions_are_reported() -> None:
    s = LedgerSchema()
    s.apply(1, None, ["CREATE TABLE T", "INSERT INTO T ?"], [_doc("T", "A", 1)])
    findings = s.apply(2, None, ["CREATE TABLE T"])  # QLDB accepted it, so A was dropped somewhere unseen
    assert _codes(findings) == ["conflict"] and s.by_id("A").status == DROPPED  # type: ignore[union-attr]
    assert _codes(s.apply(3, None, ["INSERT INTO T ?"], [_doc("T", "A", 0)])) == ["conflict"]
    assert _codes(s.apply(4, None, ["INSERT INTO U ?"], [_doc("U", "A", 0)])) == ["conflict", "conflict"]


def test_blocks_apply_in_order_only() -> None:
    s = LedgerSchema()
    s.apply(5, None, [])
    with pytest.raises(ValueError, match="not after block 5"):
        s.apply(5, None, [])


def test_state_round_trips_and_continues_in_a_later_run() -> None:
    s = LedgerSchema()
    s.apply(1, "2024-01-01T00:00Z", ["CREATE TABLE T WITH (aws_tags = `{'env': 'prod'}`)", "CREATE INDEX ON T (a)",
                                      "CREATE INDEX ON T (b)", 'DROP INDEX "i" ON T WITH (purge = true)',
                                      "INSERT INTO T ?", 'UNDROP TABLE "Z"'], [_doc("T", "TID", 4)])
    text = s.to_json()
    json.loads(text)
    again = LedgerSchema.from_json(text)
    assert again.to_json() == text and again.tables == s.tables and again.last_sequence_no == 1
    # the next export's block: an index on the table created in the earlier one
    assert again.apply(2, None, ["CREATE INDEX ON T (c)"]) == []
    assert [ix.field for ix in again.by_id("TID").live_indexes()] == ["a", "b", "c"]  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="version"):
        LedgerSchema.from_json(json.dumps({"version": 99}))


def test_apply_block_reads_a_journal_block() -> None:
    block = simpleion.loads(
        "{blockAddress:{strandId:\"S\",sequenceNo:7},transactionId:\"tx\",blockTimestamp:2024-05-01T10:00:00.123Z,"
        "transactionInfo:{statements:["
        "{statement:\"CREATE TABLE Vehicle\",startTime:2024-05-01T10:00:00.100Z,statementDigest:{{AA==}}},"
        "{statement:\"CREATE INDEX ON Vehicle (VIN)\",startTime:2024-05-01T10:00:00.110Z,statementDigest:{{AA==}}},"
        "{statement:\"INSERT INTO Vehicle ?\",startTime:2024-05-01T10:00:00.120Z,statementDigest:{{AA==}}}],"
        "documents:{d1:{tableName:\"Vehicle\",tableId:\"V1\",statements:[2]}}}}",
        single_value=True,
    )
    s = LedgerSchema()
    assert s.apply_block(block) == []
    vehicle = s.by_id("V1")
    assert vehicle is not None and vehicle.name == "Vehicle"
    assert vehicle.created == At(7, 0, "2024-05-01T10:00:00.123Z")
    assert [ix.field for ix in vehicle.live_indexes()] == ["VIN"]
    # a documents entry without a table name or id names no table
    odd = simpleion.loads("{blockAddress:{sequenceNo:8},transactionInfo:{statements:[],documents:"
                          "{d2:{tableName:\"Vehicle\",statements:[]},d3:{tableId:\"V9\"}}}}", single_value=True)
    assert s.apply_block(odd) == [] and [t.table_id for t in s.tables] == ["V1"]
    # a block without transactionInfo (a system block) changes nothing
    assert s.apply_block(simpleion.loads("{blockAddress:{strandId:\"S\",sequenceNo:9}}", single_value=True)) == []
    assert s.last_sequence_no == 9
