"""One ledger's footprint in a shared database, and removing it without touching the others."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from .target import LOCK_KEY, MIGRATION_BUSY, LedgerConflict, MigrationRefused
from .workerload import forget_rows


class LedgerNotFound(LookupError):
    pass


@dataclass
class Footprint:
    strand_id: str
    ledger_name: str | None
    schema: str
    state: str
    blocks: int
    tables: list[tuple[str, str]]  # (current, history) names in ``schema``

    def describe(self) -> str:
        return (f"ledger {self.ledger_name or '?'} (strand {self.strand_id}): {self.blocks:,} blocks and "
                f"{len(self.tables)} QLDB tables ({2 * len(self.tables)} PostgreSQL tables) in schema {self.schema}")


def find_ledger(conn: psycopg.Connection, name: str) -> tuple[str, str | None, str, str]:
    """(strand, ledger name, schema, state) of the ledger ``name`` names (QLDB name, strand id or schema)."""
    rows = conn.execute("SELECT strand_id, ledger_name, pg_schema, state FROM qldb.ledger "
                        "WHERE %s IN (strand_id, ledger_name, pg_schema)", (name,)).fetchall()
    if len(rows) != 1:
        what = "no ledger" if not rows else f"{len(rows)} ledgers (give the strand id or the schema)"
        raise LedgerNotFound(f"{name}: {what} by that name; the database holds: {describe_ledgers(conn)}")
    return rows[0]


def describe_ledgers(conn: psycopg.Connection) -> str:
    """Every ledger as an operator tells them apart: name, strand, schema, state (names may repeat)."""
    return format_ledgers(conn.execute("SELECT ledger_name, strand_id, pg_schema, state FROM qldb.ledger "
                                       "ORDER BY coalesce(ledger_name, '?'), pg_schema").fetchall())


def format_ledgers(rows: list[tuple[str | None, str, str | None, str]]) -> str:
    """(name, strand, schema, state) rows as one line, the form every "which ledger?" message uses."""
    return "; ".join(f"{name or '?'} (strand {strand}, schema {schema}, {state})"
                     for name, strand, schema, state in rows) or "none"


def ledger_footprint(conn: psycopg.Connection, name: str) -> Footprint:
    if conn.execute("SELECT to_regclass('qldb.ledger')").fetchone()[0] is None:
        raise LedgerNotFound("the database holds no migrated ledger")
    strand, ledger_name, schema, state = find_ledger(conn, name)
    blocks = conn.execute("SELECT count(*) FROM qldb.block WHERE strand_id = %s", (strand,)).fetchone()[0]
    tables = conn.execute("SELECT current_name, history_name FROM qldb.ledger_table WHERE strand_id = %s "
                          "ORDER BY 1", (strand,)).fetchall()
    return Footprint(strand, ledger_name, schema, state, blocks, tables)


def drop_ledger(conn: psycopg.Connection, footprint: Footprint) -> None:
    """Everything of one ledger, in one transaction, under the migration lock; refused for a live ledger."""
    if footprint.state == "live":
        raise LedgerConflict(f"ledger {footprint.ledger_name or footprint.strand_id} is live (cut over): its chain "
                             "continues in PostgreSQL and is append-only; it cannot be dropped")
    if not conn.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", LOCK_KEY).fetchone()[0]:
        conn.rollback()
        raise MigrationRefused(MIGRATION_BUSY)
    strand = footprint.strand_id
    views = conn.execute("SELECT committed_name FROM qldb.ledger_table WHERE strand_id = %s "
                         "AND committed_name IS NOT NULL", (strand,)).fetchall()
    for (view,) in views:  # the committed views first: they depend on the tables
        conn.execute(sql.SQL("DROP VIEW IF EXISTS {}").format(sql.Identifier(footprint.schema, view)))
    for current, history in footprint.tables:
        for name in (current, history):
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(footprint.schema, name)))
    for table in ("block", "digest", "reservation", "ddl_finding", "ledger_table", "migration_run", "ledger"):
        conn.execute(sql.SQL("DELETE FROM {} WHERE strand_id = %s").format(sql.Identifier("qldb", table)), (strand,))
    # a run's staged progress for this schema (it would only ever be replayed into a ledger that is gone)
    conn.execute("DELETE FROM qldb.stage_object WHERE pg_schema = %s", (footprint.schema,))
    forget_rows(conn, footprint.schema)
    empty = conn.execute("SELECT NOT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                         "WHERE n.nspname = %s)", (footprint.schema,)).fetchone()[0]
    if empty:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {}").format(sql.Identifier(footprint.schema)))
    conn.commit()
