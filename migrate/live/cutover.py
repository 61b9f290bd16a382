"""``cutover``: a migrated ledger becomes a live one, once its stored chain re-proves.

In one transaction, under the migration lock: every table pair of the ledger
gets the write trigger and the append-only guards (``qldb.make_live_table``),
the block-hash Merkle tree is stored as perfect-subtree roots (digests and
proofs then cost O(log n)), the ledger is marked live, and the application
role, if one is named, gets exactly what an application needs: write the
current tables, read everything, nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from ..pg.checker import run_check
from ..pg.ledgers import find_ledger
from ..pg.target import LOCK_KEY, MIGRATION_BUSY, LedgerConflict, MigrationRefused
from .merkle import Appender
from .stored_tree import to_store


class CutoverRefused(Exception):
    """The stored chain does not re-prove: nothing was changed (exit 1)."""


@dataclass
class CutoverResult:
    strand_id: str
    ledger_name: str | None
    schema: str
    tables: int
    blocks: int
    tip: int
    merkle_nodes: int
    app_role: str | None


def cutover(conn: psycopg.Connection, ledger: str | None, app_role: str | None) -> CutoverResult:
    if ledger is None:
        names = [r[0] for r in conn.execute("SELECT strand_id FROM qldb.ledger")]
        if len(names) != 1:
            raise LedgerConflict(f"the database holds {len(names)} ledgers: name one with --ledger")
        ledger = names[0]
    strand, name, schema, state = find_ledger(conn, ledger)
    conn.rollback()
    if state == "live":
        raise LedgerConflict(f"ledger {name or strand} is already live (cut over)")
    if app_role is not None and not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (app_role,)).fetchone():
        raise LedgerConflict(f"--app-role {app_role}: no such role (CREATE ROLE {app_role} LOGIN; first)")
    checked = run_check(conn, [], only=strand)
    if checked.error_count:
        first = checked.errors[0].describe() if checked.errors else ""
        raise CutoverRefused(f"the stored chain of ledger {name or strand} does not re-prove ({checked.error_count} "
                             f"problem(s); first: {first}): run `qldb-migrate check` and fix it first; nothing changed")
    if not conn.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", LOCK_KEY).fetchone()[0]:
        conn.rollback()
        raise MigrationRefused(MIGRATION_BUSY)
    ledger_row = conn.execute("SELECT state FROM qldb.ledger WHERE strand_id = %s FOR UPDATE", (strand,)).fetchone()
    now_tip = conn.execute("SELECT max(sequence_no) FROM qldb.block WHERE strand_id = %s", (strand,)).fetchone()[0]
    checked_tip = next((x.last for x in checked.ledgers if x.strand_id == strand), None)
    if ledger_row is None or ledger_row[0] == "live" or now_tip != checked_tip:
        conn.rollback()
        raise LedgerConflict(f"ledger {name or strand} changed meanwhile")
    tables = conn.execute("SELECT table_id, current_name, history_name FROM qldb.ledger_table WHERE strand_id = %s",
                          (strand,)).fetchall()
    for table_id, _current, _history in tables:
        conn.execute("SELECT qldb.make_live_table(%s, %s)", (strand, table_id))
    # the sealer's cursor (schema 0010): a transaction that writes after this one is at or above this snapshot's
    # xmax (the cursor's horizon), or was running (waiting)
    conn.execute("INSERT INTO qldb.seal_cursor (strand_id, horizon, waiting, cluster) SELECT %s, pg_snapshot_xmax(s), "
                 "ARRAY(SELECT pg_snapshot_xip(s)), (pg_control_system()).system_identifier::text "
                 "FROM pg_current_snapshot() s", (strand,))
    blocks, tip, nodes = _store_merkle_tree(conn, strand)
    conn.execute("UPDATE qldb.ledger SET state = 'live', live_since = clock_timestamp(), app_role = %s "
                 "WHERE strand_id = %s", (app_role, strand))
    if app_role is not None:
        grant_application(conn, app_role, schema, tables)
    conn.commit()
    return CutoverResult(strand, name, schema, len(tables), blocks, tip, nodes, app_role)


def _store_merkle_tree(conn: psycopg.Connection, strand: str) -> tuple[int, int, int]:
    """(blocks, tip, nodes stored): the tree over the stored chain, if it starts at block 0 (else no digest can
    cover it, and none is stored)."""
    first, tip, count = conn.execute("SELECT min(sequence_no), max(sequence_no), count(*) FROM qldb.block "
                                     "WHERE strand_id = %s", (strand,)).fetchone()
    if first != 0:
        return count, tip, 0
    appender = Appender(0, [])
    nodes = 0
    conn.execute("DELETE FROM qldb.merkle_node WHERE strand_id = %s", (strand,))  # not live yet: no guard
    with conn.cursor(name="cutover_blocks") as read:
        read.execute("SELECT block_hash FROM qldb.block WHERE strand_id = %s ORDER BY sequence_no", (strand,))
        while batch := read.fetchmany(10000):
            rows = [(strand, level, idx, h) for (block_hash,) in batch
                    for level, idx, h in to_store(appender.append(bytes(block_hash)))]
            # a COPY cannot run while the named cursor is open on the same connection: a batch at a time
            with conn.cursor() as write, write.copy("COPY qldb.merkle_node (strand_id, level, idx, hash) FROM STDIN"
                                                   ) as copy:
                for row in rows:
                    copy.write_row(row)
            nodes += len(rows)
    return count, tip, nodes


def grant_application(conn: psycopg.Connection, role: str, schema: str, tables: list[tuple[str, str, str]]) -> None:
    """Write the current tables, read everything of the ledger and the qldb schema; nothing else."""
    ident = sql.Identifier(role)
    conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {}, qldb TO {}").format(sql.Identifier(schema), ident))
    for _table_id, current, history in tables:
        conn.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON {} TO {}").format(
            sql.Identifier(schema, current), ident))
        conn.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(sql.Identifier(schema, history), ident))
    for (view,) in conn.execute("SELECT committed_name FROM qldb.ledger_table WHERE pg_schema = %s "
                                "AND committed_name IS NOT NULL", (schema,)).fetchall():
        conn.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(sql.Identifier(schema, view), ident))
    conn.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA qldb TO {}").format(ident))


__all__ = ["CutoverRefused", "CutoverResult", "cutover", "grant_application"]
