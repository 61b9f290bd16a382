"""After a load, in its transaction: the ledger's QLDB indexes and table status, recreated from its journal.

QLDB recorded every ``CREATE INDEX`` and ``DROP TABLE`` in the journal; the
loaded ``qldb.block.transaction_info`` holds them.  ``sync_schema`` feeds the
blocks this ledger has not applied yet into its ``LedgerSchema`` (kept in
``qldb.ledger.ddl_state``, so a later export continues it), then:

* each live QLDB index becomes an expression index on the current table,
  ``((data ->> 'field'))`` — what ``WHERE data->>'field' = $1``, QLDB's
  equality lookup, uses; an index QLDB dropped is dropped.  An index whose
  drop cannot be told (index ids are not in the journal) is kept: an extra
  index never changes a query's rows, and the finding says so;
* ``qldb.ledger_table.status`` / ``status_block`` / ``status_time`` take the
  table's state (active / dropped, and the CREATE / DROP / UNDROP that set it);
* what could not be decided — an unparseable statement among them — is
  recorded in ``qldb.ddl_finding`` and returned, never guessed.

Tables the journal created but never wrote to have no table id yet, hence no
PostgreSQL tables; their indexes are made when their first documents arrive.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from ..ddlfeed import MAY_BE_DDL_JSONPATH, feed
from ..ddlstate import Finding, LedgerSchema, Table
from ..verify.findings import BlockAddress, Kind, Location, Severity
from ..verify.findings import Finding as VerifyFinding
from .names import MAX_IDENTIFIER_BYTES

INDEX_COMMENT = "qldb-migrate: QLDB index on "


@dataclass
class SchemaSync:
    """What one sync did."""

    indexes_created: list[str] = field(default_factory=list)  # schema.index
    indexes_dropped: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    tables_without_id: list[str] = field(default_factory=list)  # created in the journal, no document yet


def index_name(current: str, field_name: str, plain_ok: bool = True) -> str:
    """``<current>_qldb_<field>`` within 63 bytes; a hash of the field where that would not fit, is unusual, or
    (``plain_ok`` False) would be the same for two fields (QLDB field names are case sensitive)."""
    plain = f"{current}_qldb_{field_name.lower()}"
    if plain_ok and len(plain.encode()) <= MAX_IDENTIFIER_BYTES and plain.replace("_", "").isalnum() \
            and plain.isascii():
        return plain
    tag = hashlib.sha256(field_name.encode()).hexdigest()[:10]
    room = MAX_IDENTIFIER_BYTES - len(f"_qldb_{tag}")
    return current.encode()[:room].decode("utf-8", errors="ignore") + f"_qldb_{tag}"


def _load_state(conn: psycopg.Connection, strand: str) -> tuple[LedgerSchema, int | None]:
    row = conn.execute("SELECT ddl_state FROM qldb.ledger WHERE strand_id = %s", (strand,)).fetchone()
    if row is None or row[0] is None:
        return LedgerSchema(), None
    state = row[0]
    return LedgerSchema.from_json(json.dumps(state["schema"])), state.get("through")


def _blocks(conn: psycopg.Connection, strand: str, after: int | None, known_ids: list[str]) -> Any:
    """(sequence_no, block timestamp Ion text, transaction_info) of the blocks that may change the schema.

    Those with a DDL-looking statement, and for each table id not known yet the first block that writes to it
    (where its id is bound to its name); later blocks of that id change nothing. Found in SQL, so a first sync of
    a large ledger reads a few blocks' JSON, not every block's.
    """
    start = -1 if after is None else after
    with conn.cursor(name="ddl_blocks") as cur:
        cur.itersize = 1000
        cur.execute(
            "WITH firsts AS ("
            "  SELECT min(b.sequence_no) AS seq FROM qldb.block b, "
            "       jsonb_path_query(b.transaction_info, '$.documents.*.tableId') t(id) "
            "  WHERE b.strand_id = %s AND b.sequence_no > %s AND b.transaction_info IS NOT NULL "
            "    AND NOT (t.id #>> '{}' = ANY(%s)) GROUP BY t.id #>> '{}') "
            "SELECT sequence_no, block_timestamp_ion, transaction_info FROM qldb.block b "
            "WHERE strand_id = %s AND sequence_no > %s AND transaction_info IS NOT NULL "
            "AND (jsonb_path_exists(transaction_info, %s::jsonpath) OR sequence_no IN (SELECT seq FROM firsts)) "
            "ORDER BY sequence_no",
            (strand, start, known_ids, strand, start, MAY_BE_DDL_JSONPATH))
        yield from cur


def sync_schema(conn: psycopg.Connection, strand: str, schema_name: str, run_id: int | None = None) -> SchemaSync:
    """Applies the ledger's new blocks to its schema state and brings indexes and table status in line."""
    out = SchemaSync()
    schema, through = _load_state(conn, strand)
    known = [t.table_id for t in schema.tables if t.table_id is not None]
    last = conn.execute("SELECT max(sequence_no) FROM qldb.block WHERE strand_id = %s", (strand,)).fetchone()[0]
    rows = list(_blocks(conn, strand, through, known))
    out.findings = feed(schema, rows)
    state = {"schema": json.loads(schema.to_json()), "through": last if last is not None else through}
    conn.execute("UPDATE qldb.ledger SET ddl_state = %s WHERE strand_id = %s",
                 (psycopg.types.json.Jsonb(state), strand))
    for f in out.findings:
        conn.execute("INSERT INTO qldb.ddl_finding (strand_id, sequence_no, statement, code, message, run_id) "
                     "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                     (strand, f.at.sequence_no, f.at.statement, f.code, f.message, run_id))
    tables = {r[0]: (r[1], r[2]) for r in conn.execute(
        "SELECT table_id, pg_schema, current_name FROM qldb.ledger_table WHERE strand_id = %s", (strand,))}
    for table in schema.tables:
        if table.table_id is None:
            out.tables_without_id.append(table.name or "?")
            continue
        if table.table_id in tables:
            pg_schema, current = tables[table.table_id]
            _status(conn, strand, table)
            _indexes(conn, pg_schema, current, table, out)
    return out


def schema_findings(sync: SchemaSync, strand: str) -> list[VerifyFinding]:
    """The sync's findings as the run reports them: notes (the verdict is about the hashes, not the DDL)."""
    return [VerifyFinding(f"ddl-{f.code}", Kind.CONSISTENCY, Severity.NOTE, f.message,
                          Location(block=BlockAddress(strand, f.at.sequence_no))) for f in sync.findings]


def _status(conn: psycopg.Connection, strand: str, table: Table) -> None:
    at = table.changed
    block = None if at is None else psycopg.types.json.Jsonb({"strandId": strand, "sequenceNo": at.sequence_no})
    conn.execute(
        "UPDATE qldb.ledger_table SET status = %s, status_block = %s, "
        "status_time = CASE WHEN %s::text IS NULL THEN NULL ELSE qldb.ion_timestamp(%s) END "
        "WHERE strand_id = %s AND table_id = %s",
        (table.status, block, at and at.time, at and at.time, strand, table.table_id))


def _existing(conn: psycopg.Connection, pg_schema: str, current: str) -> dict[str, str]:
    """Index name -> field (as JSON text), of the indexes this module made on the table (by their comment)."""
    out = {}
    for name, comment in conn.execute(
            "SELECT i.relname, obj_description(i.oid, 'pg_class') FROM pg_index x "
            "JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class c ON c.oid = x.indrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
            (pg_schema, current)):
        if comment and comment.startswith(INDEX_COMMENT):
            out[name] = comment[len(INDEX_COMMENT):]
    return out


def _indexes(conn: psycopg.Connection, pg_schema: str, current: str, table: Table, out: SchemaSync) -> None:
    fields = sorted({ix.field for ix in table.live_indexes()})
    folded = [f.lower() for f in fields]
    wanted = {index_name(current, f, folded.count(f.lower()) == 1): f for f in fields}
    existing = _existing(conn, pg_schema, current)
    for name, field_name in wanted.items():
        if name in existing:
            continue
        conn.execute(sql.SQL("CREATE INDEX {} ON {} ((data ->> {}))").format(
            sql.Identifier(name), sql.Identifier(pg_schema, current), sql.Literal(field_name)))
        conn.execute(sql.SQL("COMMENT ON INDEX {} IS {}").format(
            sql.Identifier(pg_schema, name), sql.Literal(INDEX_COMMENT + json.dumps(field_name))))
        out.indexes_created.append(f"{pg_schema}.{name}")
    for name in existing:
        if name not in wanted:
            conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(pg_schema, name)))
            out.indexes_dropped.append(f"{pg_schema}.{name}")


__all__ = ["INDEX_COMMENT", "SchemaSync", "index_name", "schema_findings", "sync_schema"]
