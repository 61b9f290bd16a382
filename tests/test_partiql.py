"""From PartiQL to SQL: the README's pairs run on a migrated sample ledger, each answer compared with the journal's.

The expected rows come from ``tests/journal.py`` (the export's Ion read with
amazon-ion, QLDB's semantics applied in Python), never from the database.
Also: indexes and table status recreated from the journal's DDL, ``EXPLAIN``
showing the indexes used, ``qldb.history`` windows and name resolution, the
committed views, and the ACID transfer at SERIALIZABLE with a retry.
"""

from __future__ import annotations

import datetime as _dt
import json
import random
import re
import shutil
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row
from qldb_migrate.ddlfeed import feed
from qldb_migrate.ddlstate import LedgerSchema

from tests.conftest import _admin_servers, fresh_database, run_cli
from tests.journal import Journal, decimal_text, field

UTC = _dt.UTC

# --- the README's SQL, exactly as the README shows it (parameters where it has literals) ----------
TRANSACTIONS_OF_ACCOUNT = """
SELECT data FROM ledger.transactions
WHERE data->>'fromAccountId' = %(account)s OR data->>'toAccountId' = %(account)s
"""
TRANSACTIONS_IN_WINDOW = """
SELECT data FROM ledger.transactions
WHERE qldb.ion_timestamp(data->>'timestamp') BETWEEN %(start)s AND %(end)s
"""
ACCOUNT_HISTORY = """
SELECT a.data->>'accountId' AS "accountId", (a.data->>'balance')::numeric AS balance,
       a.metadata->>'txTime' AS "txTime"
FROM qldb.history('Accounts') AS a
WHERE a.data->>'accountId' = %(account)s
"""
TRANSACTION_HISTORY = """
SELECT t.*, t.metadata->>'txTime' AS "txTime", t.metadata->>'txId' AS "txId"
FROM qldb.history('Transactions') AS t
WHERE t.data->>'transactionId' = %(transaction)s
"""
TRANSFER = [
    """UPDATE ledger.accounts SET data = jsonb_set(data, '{balance}',
                                    to_jsonb((data->>'balance')::numeric - %(amount)s))
       WHERE data->>'accountId' = %(from)s AND (data->>'balance')::numeric >= %(amount)s""",
    """UPDATE ledger.accounts SET data = jsonb_set(data, '{balance}',
                                    to_jsonb((data->>'balance')::numeric + %(amount)s))
       WHERE data->>'accountId' = %(to)s""",
    """INSERT INTO ledger.transactions (data)
       VALUES (jsonb_build_object('transactionId', %(id)s::text, 'fromAccountId', %(from)s::text,
                                  'toAccountId', %(to)s::text, 'amount', %(amount)s::numeric))""",
]


def _ion_instant(text: str) -> _dt.datetime:
    """Only for the txTime QLDB writes (UTC, milliseconds): ``2024-03-01T09:00:06.032Z``."""
    return _dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


@pytest.fixture(scope="module", params=_admin_servers())
def ledger(request: pytest.FixtureRequest, sample_factory, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[str, Journal, Path]]:
    """One migrated sample (two overlapping exports, redactions) per server, and its journal."""
    admin = (request.getfixturevalue("embedded_admin") if request.param == "embedded"
             else request.getfixturevalue("container_admin") if request.param == "container"
             else __import__("os").environ["QLDB_MIGRATE_TEST_DSN"])
    tmp = tmp_path_factory.mktemp("partiql")
    export = sample_factory(tmp, revisions=600, exports=2, seed=5)
    with fresh_database(admin) as dsn:
        proc = run_cli("migrate", export, "--dsn", dsn, "--no-check")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        yield dsn, Journal(export), export


def _rows(dsn: str, query: str, params: dict) -> list[dict]:
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        return conn.execute(query, params).fetchall()


# --- 1. schema from the journal -------------------------------------------------------------------

_CREATE_INDEX = re.compile(r'^\s*create\s+index\s+on\s+"?(\w+)"?\s*\(\s*(\w+)\s*\)\s*$', re.IGNORECASE)
_CREATE_TABLE = re.compile(r"^\s*create\s+table\s+\"?(\w+)\"?\s*$", re.IGNORECASE)


def test_indexes_and_table_status_come_from_the_journal(ledger) -> None:
    dsn, journal, _ = ledger
    expected: dict[str, set[str]] = {}
    created_at: dict[str, int] = {}
    for seq, text in journal.ddl():
        if m := _CREATE_INDEX.match(text):
            expected.setdefault(m.group(1), set()).add(m.group(2))
        elif m := _CREATE_TABLE.match(text):
            created_at[m.group(1)] = seq
    assert sum(map(len, expected.values())) == 11 and any(t.startswith("create index") for _, t in journal.ddl())
    with psycopg.connect(dsn) as conn:
        tables = conn.execute("SELECT table_name, pg_schema, current_name, status, status_block, status_time "
                              "FROM qldb.ledger_table").fetchall()
        assert {t[0] for t in tables} == set(expected)
        for name, schema, current, status, block, when in tables:
            defs = [r[0] for r in conn.execute(
                "SELECT pg_get_indexdef(x.indexrelid) FROM pg_index x JOIN pg_class c ON c.oid = x.indrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s "
                "AND NOT x.indisprimary", (schema, current))]
            fields = {re.search(r"\(data ->> '(\w+)'::text\)", d).group(1) for d in defs}
            assert fields == expected[name], name
            assert status == "active" and block["sequenceNo"] == created_at[name]
            assert when is not None
        findings = conn.execute("SELECT count(*) FROM qldb.ddl_finding").fetchone()[0]
    assert findings == 0  # every statement parsed, nothing assumed: the DDL is at the start of the journal


def test_indexed_lookups_use_the_indexes(ledger) -> None:
    dsn, _, _ = ledger
    with psycopg.connect(dsn) as conn:
        conn.execute("SET enable_seqscan = off")
        plan = "\n".join(r[0] for r in conn.execute(
            "EXPLAIN SELECT data FROM ledger.accounts WHERE data->>'accountId' = %s", ("ACC-001",)))
        assert "accounts_qldb_accountid" in plan, plan
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + TRANSACTIONS_OF_ACCOUNT, {"account": "ACC-001"}))
        assert "transactions_qldb_fromaccountid" in plan and "transactions_qldb_toaccountid" in plan, plan
        plan = "\n".join(r[0] for r in conn.execute(
            "EXPLAIN SELECT * FROM ledger.accounts_committed WHERE data->>'accountId' = %s", ("ACC-001",)))
        assert "accounts_qldb_accountid" in plan, plan


# --- 4. the recipe's queries ------------------------------------------------------------------------

def test_transactions_of_an_account(ledger) -> None:
    dsn, journal, _ = ledger
    committed = journal.committed("Transactions")
    accounts = sorted({field(r, "fromAccountId") for r in committed} | {"ACC-001"})
    nonempty = 0
    for account in accounts:
        want = sorted(field(r, "transactionId") for r in committed
                      if account in (field(r, "fromAccountId"), field(r, "toAccountId")))
        got = sorted(r["data"]["transactionId"] for r in _rows(dsn, TRANSACTIONS_OF_ACCOUNT, {"account": account}))
        assert got == want, account
        nonempty += bool(want)
    assert nonempty >= 5


def test_transactions_in_a_window(ledger) -> None:
    dsn, journal, _ = ledger
    committed = journal.committed("Transactions")
    rng = random.Random(3)
    for start, end in [(_dt.datetime(2024, 1, 1, tzinfo=UTC), _dt.datetime(2024, 1, 31, 23, 59, 59, tzinfo=UTC)),
                       (_dt.datetime(2024, 3, 1, tzinfo=UTC), _dt.datetime(2024, 6, 30, 23, 59, 59, tzinfo=UTC)),
                       *[(s, s + _dt.timedelta(days=rng.randrange(5, 90)))
                         for s in (_dt.datetime(2024, 3, 1, tzinfo=UTC) + _dt.timedelta(days=rng.randrange(300))
                                   for _ in range(5))]]:
        want = sorted(field(r, "transactionId") for r in committed
                      if field(r, "timestamp") is not None
                      and start <= field(r, "timestamp").astimezone(UTC) <= end)
        got = sorted(r["data"]["transactionId"] for r in _rows(dsn, TRANSACTIONS_IN_WINDOW,
                                                                 {"start": start, "end": end}))
        assert got == want, (start, end)
    assert got or want == []


def test_history_of_an_account(ledger) -> None:
    dsn, journal, _ = ledger
    accounts = sorted({field(r, "accountId") for r in journal.history("Accounts")} - {None})
    several = 0
    for account in accounts[:25]:
        want = [(account, decimal_text(field(r, "balance")), r.tx_time)
                for r in journal.history("Accounts") if field(r, "accountId") == account]
        got = [(r["accountId"], r["balance"], _ion_instant(r["txTime"]))
               for r in _rows(dsn, ACCOUNT_HISTORY, {"account": account})]
        assert sorted(got) == sorted(want), account
        several += len(want) > 1
    assert several >= 3  # business keys stay across updates: one account, several revisions


def test_history_of_a_transaction(ledger) -> None:
    dsn, journal, _ = ledger
    ids = sorted({field(r, "transactionId") for r in journal.history("Transactions")} - {None})
    assert "TXN-001" in ids
    for transaction in ids[:15]:
        want = sorted((r.document_id, r.version, r.tx_id, r.tx_time, r.sequence_no)
                      for r in journal.history("Transactions") if field(r, "transactionId") == transaction)
        got = sorted((r["metadata"]["id"], r["metadata"]["version"], r["txId"], _ion_instant(r["txTime"]),
                      r["block_address"]["sequenceNo"])
                     for r in _rows(dsn, TRANSACTION_HISTORY, {"transaction": transaction}))
        assert got == want, transaction
        assert all(len(r) == 4 for r in _rows(dsn, "SELECT * FROM qldb.history('Transactions') LIMIT 3", {}))


# --- 2. history() ------------------------------------------------------------------------------------

def test_history_returns_the_revisions_active_in_the_window(ledger) -> None:
    dsn, journal, _ = ledger
    times = sorted({r.tx_time for r in journal.revisions.values()})
    rng = random.Random(11)
    windows = [(None, None), (times[40], None), (None, times[40])]
    for _ in range(12):
        a, b = sorted(rng.sample(times, 2))
        windows.append((a, b))
        windows.append((a + _dt.timedelta(milliseconds=1), b - _dt.timedelta(milliseconds=1)))
    for table in ("Accounts", "Person"):
        for start, end in windows:
            want = sorted((r.document_id, r.version) for r in journal.history(table, start, end))
            got = sorted((r["metadata"]["id"], r["metadata"]["version"]) for r in _rows(
                dsn, "SELECT metadata FROM qldb.history(%(t)s, %(s)s, %(e)s)", {"t": table, "s": start, "e": end}))
            assert got == want, (table, start, end)
    # the documented example: a revision committed before start_time and still active at it is returned
    doc = next(d for d in {r.document_id for r in journal.history("Accounts")}
               if sum(r.document_id == d for r in journal.history("Accounts")) >= 3)
    revs = sorted((r for r in journal.history("Accounts") if r.document_id == doc), key=lambda r: r.version)
    start = revs[1].tx_time + (revs[2].tx_time - revs[1].tx_time) / 2
    got = [r["metadata"]["version"] for r in _rows(
        dsn, "SELECT metadata FROM qldb.history('Accounts', %(s)s, %(s)s) h WHERE h.metadata->>'id' = %(d)s",
        {"s": start, "d": doc})]
    assert got == [revs[1].version]


def test_history_names_ids_and_ambiguity(ledger) -> None:
    dsn, journal, _ = ledger
    count = len(journal.history("Accounts"))
    with psycopg.connect(dsn) as conn:
        table_id, ledger_name = conn.execute(
            "SELECT t.table_id, l.ledger_name FROM qldb.ledger_table t JOIN qldb.ledger l USING (strand_id) "
            "WHERE t.table_name = 'Accounts'").fetchone()
        for name in ("Accounts", "accounts", table_id, "ledger.Accounts", "ledger.accounts",
                     f"{ledger_name}.Accounts"):
            assert conn.execute("SELECT count(*) FROM qldb.history(%s)", (name,)).fetchone()[0] == count, name
        with pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute("SELECT * FROM qldb.history('NoSuchTable')")
        conn.rollback()
        # a name reused after a drop: another table id with the same QLDB name (this transaction only)
        conn.execute("SELECT qldb.create_table_pair('ledger', 'accounts_2', 'accounts_2_history')")
        conn.execute("INSERT INTO qldb.ledger_table (strand_id, table_id, table_name, pg_schema, current_name, "
                     "history_name) SELECT strand_id, 'AnotherTableId00000000', 'Accounts', 'ledger', 'accounts_2', "
                     "'accounts_2_history' FROM qldb.ledger")
        with pytest.raises(psycopg.errors.AmbiguousAlias, match="ambiguous") as caught:
            conn.execute("SELECT * FROM qldb.history('Accounts')")
        assert "table id" in (caught.value.diag.message_hint or "")
        conn.rollback()


def test_committed_views_are_the_current_tables_in_qldb_shape(ledger) -> None:
    dsn, journal, _ = ledger
    want = sorted((r.document_id, r.version, r.tx_id, r.sequence_no) for r in journal.committed("Accounts"))
    rows = _rows(dsn, 'SELECT "blockAddress", hash, data, metadata FROM ledger.accounts_committed', {})
    got = sorted((r["metadata"]["id"], r["metadata"]["version"], r["metadata"]["txId"],
                  r["blockAddress"]["sequenceNo"]) for r in rows)
    assert got == want
    with psycopg.connect(dsn) as conn:
        names = [r[0] for r in conn.execute("SELECT committed_name FROM qldb.ledger_table ORDER BY 1")]
    assert "vehicle_registration_committed" in names and len(names) == 7


# --- 1. DDL state across runs (an index on a table an earlier export created) ------------------------

def test_schema_state_continues_across_runs_and_reports_what_it_cannot_parse() -> None:
    first = LedgerSchema()
    docs = {"d1": {"tableName": "Accounts", "tableId": "T1", "statements": [1]}}
    assert feed(first, [(1, "2024-03-01T09:00:00.000Z", {"statements": [{"statement": "CREATE TABLE Accounts"},
                                                                        {"statement": "INSERT INTO Accounts ?"}],
                                                         "documents": docs})]) == []
    later = LedgerSchema.from_json(first.to_json())  # what qldb.ledger.ddl_state keeps between runs
    findings = feed(later, [
        (1, None, {"statements": [{"statement": "CREATE INDEX ON Accounts (ignored)"}]}),  # applied already
        (5, "2024-03-02T09:00:00.000Z", {"statements": [{"statement": 'cReAtE InDeX oN "Accounts" (accountId)'},
                                                         {"statement": "CREATE INDEX ON Accounts (owner.name)"}]}),
        (6, None, {"statements": [{"statement": "UPDATE Accounts SET x = 1"}]}),  # no DDL, no new table: skipped
    ])
    table = later.by_id("T1")
    assert [ix.field for ix in table.live_indexes()] == ["accountId"]
    assert [f.code for f in findings] == ["unparseable"] and "owner.name" in findings[0].message
    assert later.last_sequence_no == 5


def test_later_ddl_is_applied_in_the_load_transaction_and_what_does_not_parse_is_recorded(ledger) -> None:
    """sync_schema on blocks after the sample's: an index added, one dropped (its id deduced), a table dropped,
    an unparseable statement recorded and nothing guessed from it (all rolled back after)."""
    from qldb_migrate.pg.schemasync import sync_schema

    dsn, _, _ = ledger
    with psycopg.connect(dsn) as conn:
        strand, last, ts = conn.execute("SELECT strand_id, max(sequence_no), max(block_timestamp_ion) FROM qldb.block "
                                        "GROUP BY strand_id").fetchone()
        # a DROP INDEX first (every statement so far parsed: its index is deduced), then a block with a
        # statement that does not parse (from then on no drop is deduced), an index and a DROP TABLE
        blocks = [[{"statement": 'DROP INDEX "ixPerson0000000000000" ON Person WITH (purge = true)'}],
                  [{"statement": "CREATE INDEX ON Accounts (owner.name)"},
                   {"statement": "/* audit */ create INDEX on \"Accounts\" (currency);"},
                   {"statement": "DROP TABLE Vehicle"}]]
        for n, statements in enumerate(blocks, start=1):
            conn.execute("INSERT INTO qldb.block (strand_id, sequence_no, block_hash, entries_hash, "
                         "previous_block_hash, entries_hash_list, revision_hashes, revision_documents, "
                         "block_timestamp_ion, transaction_info, source_object, run_id) "
                         "VALUES (%s, %s, '', '', '', '{}', '{}', '{}', %s, %s, 'test', 0)",
                         (strand, last + n, ts, psycopg.types.json.Jsonb({"statements": statements})))
        done = sync_schema(conn, strand, "ledger")
        assert done.indexes_created == ["ledger.accounts_qldb_currency"]
        assert done.indexes_dropped == ["ledger.person_qldb_govid"]
        assert sorted(f.code for f in done.findings) == ["index-id-deduced", "unparseable"]
        assert conn.execute("SELECT code, statement FROM qldb.ddl_finding WHERE code = 'unparseable'").fetchone() \
            == ("unparseable", 0)
        status = conn.execute("SELECT status, status_block->>'sequenceNo' FROM qldb.ledger_table "
                              "WHERE table_name = 'Vehicle'").fetchone()
        assert status == ("dropped", str(last + 2))
        conn.rollback()


def test_an_incremental_migrate_continues_the_schema(sample_factory, tmp_path: Path, pg_dsn: str) -> None:
    export = sample_factory(tmp_path, revisions=300, exports=2, seed=5)
    older = tmp_path / "older"
    older.mkdir()
    first = min(export.glob("*.completed.manifest"), key=lambda p: json.loads(p.read_text())["keys"][0])
    for path in export.glob(f"{first.name.split('.')[0]}.*"):
        shutil.copy(path, older / path.name)
    for key in json.loads(first.read_text())["keys"]:
        rel = key.split("vehicle-registration/", 1)[1]
        (older / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(export / rel, older / rel)
    assert run_cli("migrate", older, "--dsn", pg_dsn, "--no-check").returncode == 0
    indexes = "SELECT count(*) FROM pg_indexes WHERE schemaname = 'ledger' AND indexname LIKE '%%_qldb_%%'"
    with psycopg.connect(pg_dsn) as conn:
        before = conn.execute(indexes).fetchone()[0]
        through = conn.execute("SELECT (ddl_state->>'through')::int FROM qldb.ledger").fetchone()[0]
    proc = run_cli("migrate", export, "--dsn", pg_dsn, "--no-check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute(indexes).fetchone()[0] == before == 11
        after = conn.execute("SELECT (ddl_state->>'through')::int FROM qldb.ledger").fetchone()[0]
        assert after == conn.execute("SELECT max(sequence_no) FROM qldb.block").fetchone()[0] > through
        assert conn.execute("SELECT count(*) FROM qldb.ddl_finding").fetchone()[0] == 0


# --- 4. the ACID transfer, after cut-over ------------------------------------------------------------

def _transfer(dsn: str, params: dict, attempts: int = 20) -> int:
    """The README's transfer: one SERIALIZABLE transaction, retried on a serialization failure (QLDB's OCC)."""
    for attempt in range(1, attempts + 1):
        with psycopg.connect(dsn) as conn:
            conn.isolation_level = psycopg.IsolationLevel.SERIALIZABLE
            try:
                with conn.transaction():
                    moved = conn.execute(TRANSFER[0], params).rowcount
                    if moved != 1:
                        raise ValueError("insufficient funds or no such account")
                    assert conn.execute(TRANSFER[1], params).rowcount == 1
                    conn.execute(TRANSFER[2], params)
                return attempt
            except (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected):
                continue  # SQLSTATE 40001 / 40P01: nothing was committed; run the whole transaction again
    raise AssertionError("no attempt committed")


def test_acid_transfer_at_serializable_with_retry(sample_factory, tmp_path: Path, pg_dsn: str) -> None:
    export = sample_factory(tmp_path, revisions=300, exports=1, seed=91)
    assert run_cli("migrate", export, "--dsn", pg_dsn, "--no-check").returncode == 0
    proc = run_cli("cutover", "--dsn", pg_dsn)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    balance = "SELECT (data->>'balance')::numeric FROM ledger.accounts WHERE data->>'accountId' = %s"
    with psycopg.connect(pg_dsn) as conn:
        before = {a: conn.execute(balance, (a,)).fetchone()[0] for a in ("ACC-001", "ACC-002")}
    assert all(v is not None for v in before.values())
    attempts: list[int] = []
    threads = [threading.Thread(target=lambda i=i: attempts.append(_transfer(pg_dsn, {
        "from": "ACC-001" if i % 2 else "ACC-002", "to": "ACC-002" if i % 2 else "ACC-001",
        "amount": Decimal("0.01"), "id": f"TXN-NEW-{i}"}))) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(attempts) == 4
    with psycopg.connect(pg_dsn) as conn:
        after = {a: conn.execute(balance, (a,)).fetchone()[0] for a in ("ACC-001", "ACC-002")}
        assert sum(after.values()) == sum(before.values()) and after == before  # 2 each way
        # each transfer: three revisions with one txId (one QLDB transaction)
        tx = conn.execute("SELECT h.metadata->>'txId', count(*) FROM qldb.history('Transactions') h "
                          "WHERE h.data->>'transactionId' LIKE 'TXN-NEW-%' GROUP BY 1").fetchall()
        for tx_id, _n in tx:
            n = conn.execute("SELECT count(*) FROM qldb.history('Accounts') h WHERE h.metadata->>'txId' = %s",
                             (tx_id,)).fetchone()[0]
            assert n == 2
    assert len(tx) == 4
    # a table made after cut-over gets its committed view too
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("SELECT qldb.create_ledger_table('vehicle-registration', 'LoyaltyCards')")
        conn.execute("INSERT INTO ledger.loyalty_cards (data) VALUES ('{\"card\": \"L-1\"}')")
        conn.commit()
        row = conn.execute('SELECT "blockAddress", data, metadata FROM ledger.loyalty_cards_committed').fetchone()
        assert row[0] is None and row[1] == {"card": "L-1"} and row[2]["version"] == 0  # not sealed yet
        assert conn.execute("SELECT count(*) FROM qldb.history('LoyaltyCards')").fetchone()[0] == 1


def test_index_names_stay_apart_for_fields_that_differ_only_in_case() -> None:
    from qldb_migrate.pg.schemasync import index_name

    assert index_name("accounts", "accountId") == "accounts_qldb_accountid"
    names = {index_name("accounts", f, plain_ok=False) for f in ("accountId", "AccountId")}
    assert len(names) == 2 and all(len(n) <= 63 for n in names)
    assert len(index_name("t" * 63, "f").encode()) <= 63 and index_name("a", 'we"ird').startswith("a_qldb_")
