"""The ledger's tables and indexes as its DDL made them: a pure state machine over journal blocks.

``LedgerSchema.apply_block`` applies one block's statements (``migrate.ddl``)
in statement order and learns table ids from the block's
``transactionInfo.documents``.  It is built on what the journal does and does
not say:

* **Table ids are seen only in written documents.**  ``CREATE TABLE`` records
  a name; its id appears when a document of that table is written (each
  ``documents`` entry has ``tableName`` and ``tableId``).  A table is a record
  with ``table_id`` None until then, and one known only from ``UNDROP TABLE
  "id"`` has ``name`` None until its documents show the name.  QLDB allows one
  active table per name (CREATE TABLE and UNDROP TABLE pages), so an id is
  bound to the active table of that name at the statement that wrote the
  document (the entry's ``statements`` indices); a name reused after a drop is
  a new record, and the old one keeps its id.
* **Index ids are never in the journal.**  ``CREATE INDEX ON t (f)`` has no
  id and ``DROP INDEX "id" ON t`` names no field.  A DROP INDEX is matched
  to an index only (1) by an id already known (``set_index_id``, e.g. from a
  saved ``information_schema.user_tables``), or (2) by elimination, when the
  table was created within the blocks seen (so all its indexes are known),
  every statement so far parsed, and exactly one live index of it has an
  unknown id and no earlier unmatched drop against it.  Otherwise the drop is
  kept as an ``IndexDrop`` on the table and each index it may have dropped
  lists its id in ``possibly_dropped_by``: "index id unknown", never guessed.
* **The blocks seen may not start at block 0.**  A table first met in a
  statement or a document is taken as created before them (``created`` None).

Every such inference, and every contradiction (the journal says QLDB accepted
a statement this model would refuse), is returned as a ``Finding``.  The state
round-trips through ``to_json``/``from_json`` so it can be kept between runs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .ddl import (
    CreateIndex,
    CreateTable,
    DdlStatement,
    DropIndex,
    DropTable,
    NotDdl,
    UndropTable,
    Unparseable,
    parse_statement,
)
from .iontext import timestamp_text
from .verify.ionvalue import field_or_none, is_null

STATE_VERSION = 1
ACTIVE, DROPPED = "active", "dropped"


@dataclass(frozen=True)
class At:
    """Where something happened: a block, a statement in it (None: known from documents only), its time."""

    sequence_no: int
    statement: int | None
    time: str | None  # the block's timestamp as Ion text

    def order(self) -> tuple[int, int]:
        return self.sequence_no, -1 if self.statement is None else self.statement


@dataclass
class Index:
    field: str
    index_id: str | None = None
    created: At | None = None  # None: created before the blocks seen
    dropped: At | None = None
    possibly_dropped_by: list[str] = field(default_factory=list)  # ids of unmatched DROP INDEX statements


@dataclass
class IndexDrop:
    """A DROP INDEX whose index could not be told (index ids are not in the journal)."""

    index_id: str
    at: At


@dataclass
class Table:
    name: str | None  # None: known only from UNDROP TABLE "id" so far
    table_id: str | None  # None: no document of it seen yet
    status: str  # ACTIVE or DROPPED
    seen: At  # where this model first met it
    created: At | None = None  # None: created before the blocks seen
    changed: At | None = None  # the last CREATE/DROP/UNDROP; None: not seen
    tags: dict[str, str] | None = None
    indexes: list[Index] = field(default_factory=list)  # in creation order, dropped ones kept
    unmatched_index_drops: list[IndexDrop] = field(default_factory=list)

    def live_indexes(self) -> list[Index]:
        return [ix for ix in self.indexes if ix.dropped is None]


@dataclass(frozen=True)
class Finding:
    code: str  # "unparseable", "assumed", "conflict", "index-id-unknown", "index-id-deduced", "ambiguous"
    message: str
    at: At


@dataclass(frozen=True)
class DocumentRef:
    """One ``transactionInfo.documents`` entry: the table a written document belongs to."""

    table_name: str
    table_id: str
    statements: tuple[int, ...]  # indices into transactionInfo.statements that wrote it


_RESHAPING = (CreateTable, DropTable, UndropTable, Unparseable)  # change which table a name means


class LedgerSchema:
    """Tables and indexes of one ledger (one strand), as of the last block applied."""

    def __init__(self) -> None:
        self.tables: list[Table] = []
        self.last_sequence_no: int | None = None
        self.all_parsed = True  # no DDL-like statement was ever unparseable (index deductions rely on it)

    # --- look-ups ---

    def active(self, name: str) -> Table | None:
        return next((t for t in self.tables if t.status == ACTIVE and t.name == name), None)

    def by_id(self, table_id: str) -> Table | None:
        return next((t for t in self.tables if t.table_id == table_id), None)

    # --- applying blocks ---

    def apply_block(self, block: Any) -> list[Finding]:
        """A parsed journal block (an Ion struct): its statements and documents, in order."""
        sequence_no = int(field_or_none(field_or_none(block, "blockAddress"), "sequenceNo"))
        stamp = field_or_none(block, "blockTimestamp")
        time = None if is_null(stamp) else timestamp_text(stamp)
        info = field_or_none(block, "transactionInfo")
        statements = [str(field_or_none(s, "statement")) for s in field_or_none(info, "statements") or []]
        documents = []
        entries = field_or_none(info, "documents")
        for _doc_id, entry in ([] if is_null(entries) else entries.items()):
            name, table_id = field_or_none(entry, "tableName"), field_or_none(entry, "tableId")
            if isinstance(name, str) and isinstance(table_id, str) and name and table_id:  # else it names no table
                indices = field_or_none(entry, "statements")
                documents.append(DocumentRef(name, table_id, tuple(int(i) for i in (indices or []))))
        return self.apply(sequence_no, time, statements, documents)

    def apply(self, sequence_no: int, time: str | None, statements: Sequence[str],
              documents: Sequence[DocumentRef] = ()) -> list[Finding]:
        """One block: each statement in order; each document's table bound right after the statement that wrote it.

        Blocks must come in increasing sequence order (a block at or below the last one applied is an error:
        the caller skips blocks an earlier run applied).
        """
        if self.last_sequence_no is not None and sequence_no <= self.last_sequence_no:
            raise ValueError(f"block {sequence_no} is not after block {self.last_sequence_no}, the last applied")
        findings: list[Finding] = []
        parsed = [parse_statement(text) for text in statements]
        reshaping = any(isinstance(p, _RESHAPING) for p in parsed)
        bind_after: dict[int, list[DocumentRef]] = {}
        at_end: list[DocumentRef] = []
        for doc in documents:
            if doc.statements and all(0 <= i < len(statements) for i in doc.statements):
                bind_after.setdefault(min(doc.statements), []).append(doc)
            elif not reshaping:  # no statement in the block changes what a name means: the position does not matter
                at_end.append(doc)
            else:
                findings.append(Finding("ambiguous", f"documents of table {doc.table_name!r} (id {doc.table_id}) "
                                        f"name no valid statement {list(doc.statements)} in a block that creates, "
                                        "drops or undrops tables: the id is not bound", At(sequence_no, None, time)))
        for i, result in enumerate(parsed):
            at = At(sequence_no, i, time)
            if isinstance(result, Unparseable):
                self.all_parsed = False
                findings.append(Finding("unparseable", f"{result.reason}: {statements[i]!r}", at))
            elif not isinstance(result, NotDdl):
                self._apply_ddl(result, at, findings)
            for doc in bind_after.get(i, []):
                self._observe(doc, at, findings)
        for doc in at_end:
            self._observe(doc, At(sequence_no, None, time), findings)
        self.last_sequence_no = sequence_no
        return findings

    def _apply_ddl(self, stmt: DdlStatement, at: At, findings: list[Finding]) -> None:
        if isinstance(stmt, CreateTable):
            old = self.active(stmt.name)
            if old is not None:
                old.status, old.changed = DROPPED, None
                findings.append(Finding("conflict", f"CREATE TABLE {stmt.name!r} while this model holds it active "
                                        f"(id {old.table_id}): its DROP TABLE was not seen; marked dropped", at))
            self.tables.append(Table(stmt.name, None, ACTIVE, at, at, at, stmt.tags))
        elif isinstance(stmt, DropTable):
            table = self._active_or_assumed(stmt.name, at, findings)
            table.status, table.changed = DROPPED, at
        elif isinstance(stmt, UndropTable):
            self._undrop(stmt.table_id, at, findings)
        elif isinstance(stmt, CreateIndex):
            self._active_or_assumed(stmt.table, at, findings).indexes.append(Index(stmt.field, None, at))
        else:
            self._drop_index(stmt, at, findings)

    def _active_or_assumed(self, name: str, at: At, findings: list[Finding]) -> Table:
        table = self.active(name)
        if table is None:
            table = Table(name, None, ACTIVE, at)
            self.tables.append(table)
            findings.append(Finding("assumed", f"table {name!r} is not active in this model: taken as created "
                                    "before the blocks seen", at))
        return table

    def _undrop(self, table_id: str, at: At, findings: list[Finding]) -> None:
        table = self.by_id(table_id)
        if table is None:
            self.tables.append(Table(None, table_id, ACTIVE, at, None, at))
            findings.append(Finding("assumed", f"UNDROP TABLE {table_id!r}: no table with that id is known (ids "
                                    "show only in written documents); its name stays unknown until its documents "
                                    "show it", at))
            return
        if table.status == ACTIVE:
            findings.append(Finding("conflict", f"UNDROP TABLE {table_id!r}: the table is active in this model", at))
        elif table.name is not None and self.active(table.name) is not None:
            findings.append(Finding("conflict", f"UNDROP TABLE {table_id!r}: another table {table.name!r} is "
                                    "active in this model", at))
        table.status, table.changed = ACTIVE, at

    def _drop_index(self, stmt: DropIndex, at: At, findings: list[Finding]) -> None:
        table = self._active_or_assumed(stmt.table, at, findings)
        live = table.live_indexes()
        known = next((ix for ix in live if ix.index_id == stmt.index_id), None)
        if known is not None:
            known.dropped = at
            return
        unknown = [ix for ix in live if ix.index_id is None]
        complete = table.created is not None and self.all_parsed
        if complete and len(unknown) == 1 and not unknown[0].possibly_dropped_by:
            unknown[0].index_id, unknown[0].dropped = stmt.index_id, at
            findings.append(Finding("index-id-deduced", f"DROP INDEX {stmt.index_id!r} ON {stmt.table!r}: the only "
                                    f"index of the table whose id was unknown, on {unknown[0].field!r}", at))
            return
        if complete and not unknown:
            findings.append(Finding("conflict", f"DROP INDEX {stmt.index_id!r} ON {stmt.table!r}: every index of "
                                    "the table this model knows has another id", at))
        else:
            fields = ", ".join(repr(ix.field) for ix in unknown) or "none known"
            findings.append(Finding("index-id-unknown", f"DROP INDEX {stmt.index_id!r} ON {stmt.table!r}: index "
                                    f"ids are not in the journal; it dropped one of: {fields}", at))
        for ix in unknown:
            ix.possibly_dropped_by.append(stmt.index_id)
        table.unmatched_index_drops.append(IndexDrop(stmt.index_id, at))

    def _observe(self, doc: DocumentRef, at: At, findings: list[Finding]) -> None:
        """A document of ``doc.table_name`` with id ``doc.table_id`` was written at ``at``."""
        table = self.by_id(doc.table_id)
        named = self.active(doc.table_name)
        if table is None:
            if named is None:
                self.tables.append(Table(doc.table_name, doc.table_id, ACTIVE, at))
                findings.append(Finding("assumed", f"table {doc.table_name!r} (id {doc.table_id}) first seen in "
                                        "documents: taken as created before the blocks seen", at))
            elif named.table_id is None:
                named.table_id = doc.table_id
            else:
                findings.append(Finding("conflict", f"a document of table {doc.table_name!r} has table id "
                                        f"{doc.table_id}, but the active table of that name has id {named.table_id}",
                                        at))
            return
        if table.name is None:  # known from UNDROP TABLE by id: the documents name it
            if named is not None and named.table_id is None and table.changed is not None \
                    and named.seen.order() > table.changed.order():
                self._merge(named, into=table)  # met by name after the UNDROP: the same active table
            elif named is not None:
                findings.append(Finding("conflict", f"table id {doc.table_id} is {doc.table_name!r} by its "
                                        "documents, but another active table of that name is known", at))
            table.name = doc.table_name
        elif table.name != doc.table_name:
            findings.append(Finding("conflict", f"table id {doc.table_id} is {table.name!r} in this model but "
                                    f"{doc.table_name!r} in documents (QLDB does not rename tables)", at))
        if table.status != ACTIVE:
            findings.append(Finding("conflict", f"a document was written to table {doc.table_name!r} (id "
                                    f"{doc.table_id}), which is dropped in this model", at))

    def _merge(self, other: Table, into: Table) -> None:
        into.indexes = other.indexes + into.indexes
        into.unmatched_index_drops = other.unmatched_index_drops + into.unmatched_index_drops
        into.tags = into.tags if into.tags is not None else other.tags
        if other.changed is not None and (into.changed is None or other.changed.order() > into.changed.order()):
            into.changed = other.changed
        self.tables.remove(other)

    # --- facts from outside the journal ---

    def set_index_id(self, table_id: str, field_name: str, index_id: str) -> bool:
        """Record an index id known from outside the journal (e.g. a saved ``information_schema.user_tables``).

        Binds it to the live index on that field whose id is unknown; if an unmatched DROP INDEX had that id,
        the index is marked dropped there.  False when no such index is known.
        """
        table = self.by_id(table_id)
        candidates = [] if table is None else [
            ix for ix in table.live_indexes() if ix.field == field_name and ix.index_id is None]
        if table is None or len(candidates) != 1:
            return False
        index = candidates[0]
        index.index_id = index_id
        drop = next((d for d in table.unmatched_index_drops if d.index_id == index_id), None)
        if drop is not None:
            index.dropped = drop.at
            table.unmatched_index_drops.remove(drop)
            for ix in table.indexes:
                if index_id in ix.possibly_dropped_by:
                    ix.possibly_dropped_by.remove(index_id)
        return True

    # --- persistence ---

    def to_json(self) -> str:
        return json.dumps({"version": STATE_VERSION, "last_sequence_no": self.last_sequence_no,
                           "all_parsed": self.all_parsed, "tables": [asdict(t) for t in self.tables]},
                          sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> LedgerSchema:
        data = json.loads(text)
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"ledger schema state version {data.get('version')!r}, expected {STATE_VERSION}")
        schema = cls()
        schema.last_sequence_no = data["last_sequence_no"]
        schema.all_parsed = data["all_parsed"]
        schema.tables = [_table(t) for t in data["tables"]]
        return schema


def _at(data: dict[str, Any] | None) -> At | None:
    return None if data is None else At(data["sequence_no"], data["statement"], data["time"])


def _at_known(data: dict[str, Any]) -> At:
    return At(data["sequence_no"], data["statement"], data["time"])


def _table(data: dict[str, Any]) -> Table:
    return Table(
        name=data["name"], table_id=data["table_id"], status=data["status"], seen=_at_known(data["seen"]),
        created=_at(data["created"]), changed=_at(data["changed"]), tags=data["tags"],
        indexes=[Index(ix["field"], ix["index_id"], _at(ix["created"]), _at(ix["dropped"]),
                       list(ix["possibly_dropped_by"])) for ix in data["indexes"]],
        unmatched_index_drops=[IndexDrop(d["index_id"], _at_known(d["at"])) for d in data["unmatched_index_drops"]],
    )


__all__ = ["ACTIVE", "DROPPED", "At", "DocumentRef", "Finding", "Index", "IndexDrop", "LedgerSchema", "Table"]
