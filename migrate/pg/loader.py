"""``migrate``: verify an export and load it into PostgreSQL in the same streaming pass.

Publishing: the whole run is **one transaction**.  Rows are COPYed straight
into the final tables; until the commit, PostgreSQL's MVCC keeps them
invisible to every other session, so the transaction *is* the staging area
and the commit is the atomic publish.  Nothing is written twice (no staging
table to copy from, no rename or partition attach, which would cost the same
write plus exclusive catalog locks); on two cores the single write is the
cheapest publish there is.  The commit happens only after the last chain
link and digest have been checked and the run's opt-outs allow its states;
anything else rolls back, and a killed run leaves nothing behind.  A rerun
therefore redoes the run from its start and ends with exactly the rows an
uninterrupted run gives; blocks an earlier run committed are not loaded again
but compared, by hash, with the export (a later export adds only what is new).
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from ..verifier import BlockSink, BlockSummary, ObjectResult, VerifyResult, verify_source
from ..verify.chain import ChainChecker, Digest
from ..verify.findings import BlockAddress, Finding, Kind, Location, Severity
from .copybinary import SIGNATURE, TRAILER
from .names import table_names
from .rows import BLOCK_COLUMNS, HISTORY_COLUMNS, BlockRows, TableRows, run_id_field
from .target import LOCK_KEY, MIGRATION_BUSY, MigrationRefused


def copy_tuples(conn: psycopg.Connection, table: sql.Composable, columns: tuple[str, ...],
                chunks: Iterable[bytes]) -> None:
    """Binary COPY of tuples the workers already encoded (``copybinary``): this process only forwards bytes."""
    cols = sql.SQL(", ").join(map(sql.Identifier, columns))
    with conn.cursor() as cur, cur.copy(sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(table, cols)) as copy:
        copy.write(b"".join([SIGNATURE, *chunks, TRAILER]))


@dataclass
class TableStats:
    qldb_name: str
    history: str
    current: str
    read: int = 0
    loaded: int = 0
    deleted: int = 0
    redacted: int = 0
    current_rows: int = 0


@dataclass
class MigrateOptions:
    schema: str = "ledger"
    allow_partial: bool = False
    allow_unanchored: bool = False
    allow_unverifiable: bool = False
    workers: int | None = None

    def opt_outs(self) -> list[str]:
        return [name for name, on in (("allow-partial", self.allow_partial), ("allow-unanchored",
                self.allow_unanchored), ("allow-unverifiable", self.allow_unverifiable)) if on]

    def refused_states(self, states: list[str]) -> list[str]:
        allowed = {"partial": self.allow_partial, "unanchored": self.allow_unanchored,
                   "unverifiable": self.allow_unverifiable}
        return [s for s in states if not allowed[s]]


@dataclass
class MigrateResult:
    verify: VerifyResult
    run_id: int | None
    committed: bool
    refused_states: list[str]
    tables: dict[str, TableStats]
    new_blocks: int
    known_blocks: int
    redactions_applied: int
    seconds: float
    findings: list[Finding] = field(default_factory=list)


class PgSink(BlockSink):
    def __init__(self, conn: psycopg.Connection, run_id: int, schema: str) -> None:
        self.conn = conn
        self.run_id = run_id
        self.schema = schema
        self.run_field = run_id_field(run_id)
        self.pending_blocks: list[bytes] = []
        self.pending_history: dict[tuple[str, str], list[TableRows]] = defaultdict(list)
        self.known: list[tuple[BlockSummary, Any]] = []
        self.tables: dict[tuple[str, str], TableStats] = {}
        self.strand: str | None = None
        self.stored_last: int | None = None
        self.new_blocks = 0
        self.known_blocks = 0
        self.redactions: list[tuple[str, str, str, int]] = []  # strand, table id, document id, version
        self.redactions_applied = 0
        self.touched: dict[tuple[str, str], set[str]] = defaultdict(set)
        self.extra_findings: list[Finding] = []

    # --- chain priming: a later export joins the stored chain -------------------------------
    def prime(self, chain: ChainChecker) -> None:
        from ..verify.block import BlockCheck

        # One ledger per run; the strand comes from the first stored block if the database has one ledger.
        strands = [r[0] for r in self.conn.execute("SELECT DISTINCT strand_id FROM qldb.block")]
        if len(strands) != 1:
            return  # nothing stored, or several ledgers: the export must then stand on its own
        self.strand = strands[0]
        with self.conn.cursor(name="prime") as cur:
            cur.itersize = 10000
            cur.execute(
                "SELECT sequence_no, block_hash, previous_block_hash, transaction_id, source_object "
                "FROM qldb.block WHERE strand_id = %s ORDER BY sequence_no",
                (self.strand,),
            )
            for seq, block_hash, previous, tx_id, source in cur:
                chain.add(BlockCheck(BlockAddress(self.strand, seq), f"(stored) {source}", None, bytes(block_hash),
                                     bytes(previous), None, tx_id))
                self.stored_last = seq

    # --- blocks -------------------------------------------------------------------------------
    def new_block(self, block: BlockSummary, rows: BlockRows | None) -> list[Finding]:
        if rows is None or block.address is None:
            return []  # the block failed its checks: the run will not commit
        strand = block.address.strand_id
        self.pending_blocks.append(rows.block_copy + self.run_field)
        for table_id, table_rows in rows.tables.items():
            self.pending_history[(strand, table_id)].append(table_rows)
        if rows.redaction is not None:
            self.redactions.append((strand, *rows.redaction))
        self.new_blocks += 1
        return []

    def is_stored(self, sequence_no: int) -> bool:
        return self.stored_last is not None and sequence_no <= self.stored_last

    def known_block(self, block: BlockSummary, rows: Any) -> list[Finding]:
        self.known.append((block, rows))
        self.known_blocks += 1
        return []

    def object_done(self, result: ObjectResult) -> None:
        self._flush_known(result)
        if self.pending_blocks:
            copy_tuples(self.conn, sql.Identifier("qldb", "block"), BLOCK_COLUMNS, self.pending_blocks)
            self.pending_blocks.clear()
        for (strand, table_id), parts in self.pending_history.items():
            stats = self._table(strand, table_id, parts[0].table_name)
            copy_tuples(self.conn, sql.Identifier(self.schema, stats.history), HISTORY_COLUMNS,
                        [p.copy_data for p in parts])
            loaded = sum(len(p.documents) for p in parts)
            stats.read += loaded
            stats.loaded += loaded
            stats.deleted += sum(p.deleted for p in parts)
            stats.redacted += sum(len(p.redacted) for p in parts)
            touched = self.touched[(strand, table_id)]
            for p in parts:
                touched.update(p.documents)
        self.pending_history.clear()

    def _flush_known(self, result: ObjectResult) -> None:
        """Blocks seen before: compare stored hashes; carry redactions into stored rows."""
        if not self.known:
            return
        by_seq = {b.address.sequence_no: (b, rows) for b, rows in self.known if b.address is not None}
        self.known.clear()
        strand = next(iter(by_seq.values()))[0].address.strand_id  # type: ignore[union-attr]
        stored = dict(
            self.conn.execute(
                "SELECT sequence_no, block_hash FROM qldb.block WHERE strand_id = %s AND sequence_no = ANY(%s)",
                (strand, list(by_seq)),
            ).fetchall()
        )
        for seq, (block, rows) in by_seq.items():
            if seq in stored and bytes(stored[seq]) != block.computed_block_hash:
                self.extra_findings.append(
                    Finding("stored-block-conflict", Kind.HASH, Severity.ERROR,
                            "block differs from the block already stored in qldb.block",
                            Location(block.object_key, block.address), bytes(stored[seq]), block.computed_block_hash)
                )
                continue
            if rows is None:
                continue
            for table_id, table_rows in rows.tables.items():
                for document_id, version in table_rows.redacted:
                    self.redactions.append((strand, table_id, document_id, version))

    def _table(self, strand: str, table_id: str, name: str) -> TableStats:
        key = (strand, table_id)
        stats = self.tables.get(key)
        if stats is not None:
            return stats
        found = self.conn.execute(
            "SELECT history_name, current_name FROM qldb.ledger_table WHERE strand_id = %s AND table_id = %s",
            key,
        ).fetchone()
        if found is None:
            taken = {r[0] for r in self.conn.execute(
                "SELECT current_name FROM qldb.ledger_table WHERE pg_schema = %s UNION ALL "
                "SELECT history_name FROM qldb.ledger_table WHERE pg_schema = %s", (self.schema, self.schema))}
            current, history = table_names(name, taken)
            self._create_tables(current, history)
            self.conn.execute(
                "INSERT INTO qldb.ledger_table (strand_id, table_id, table_name, pg_schema, current_name, "
                "history_name) VALUES (%s, %s, %s, %s, %s, %s)",
                (strand, table_id, name, self.schema, current, history),
            )
        else:
            history, current = found
        stats = self.tables[key] = TableStats(name, history, current)
        return stats

    def _create_tables(self, current: str, history: str) -> None:
        schema = sql.Identifier(self.schema)
        self.conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))
        self.conn.execute(
            sql.SQL(
                """CREATE TABLE {} (
                    document_id    text    NOT NULL,
                    version        integer NOT NULL,
                    data           jsonb,
                    data_ion       bytea,
                    metadata_ion   bytea   NOT NULL,
                    revision_hash  bytea   NOT NULL,
                    data_hash      bytea,
                    operation      text    NOT NULL CHECK (operation IN ('insert', 'update', 'delete')),
                    redacted       boolean NOT NULL DEFAULT false,
                    tx_id          text,
                    tx_time        timestamptz,
                    tx_time_ion    text,
                    block_sequence bigint  NOT NULL,
                    index_in_block integer NOT NULL,
                    PRIMARY KEY (document_id, version)
                )"""
            ).format(sql.Identifier(self.schema, history))
        )
        self.conn.execute(
            sql.SQL(
                """CREATE TABLE {} (
                    document_id    text    PRIMARY KEY,
                    version        integer NOT NULL,
                    data           jsonb,
                    data_ion       bytea,
                    revision_hash  bytea   NOT NULL,
                    tx_time        timestamptz,
                    block_sequence bigint  NOT NULL
                )"""
            ).format(sql.Identifier(self.schema, current))
        )

    # --- end of run -----------------------------------------------------------------------------
    def finish(self) -> None:
        """Apply redactions, then refresh the current tables for the documents this run touched."""
        for strand, table_id, doc_id, version in self.redactions:
            found = self.conn.execute(
                "SELECT history_name FROM qldb.ledger_table WHERE strand_id = %s AND table_id = %s",
                (strand, table_id),
            ).fetchone()
            if found is None:
                continue
            cur = self.conn.execute(
                sql.SQL(
                    "UPDATE {} SET data = NULL, data_ion = NULL, redacted = true "
                    "WHERE document_id = %s AND version = %s AND NOT redacted"
                ).format(sql.Identifier(self.schema, found[0])),
                (doc_id, version),
            )
            self.redactions_applied += cur.rowcount
            if cur.rowcount:
                self._table(strand, table_id, "").redacted += cur.rowcount
            self.touched[(strand, table_id)].add(doc_id)
        for (strand, table_id), docs in self.touched.items():
            stats = self._table(strand, table_id, "")
            history = sql.Identifier(self.schema, stats.history)
            current = sql.Identifier(self.schema, stats.current)
            doc_list = list(docs)
            self.conn.execute(sql.SQL("DELETE FROM {} WHERE document_id = ANY(%s)").format(current), (doc_list,))
            self.conn.execute(
                sql.SQL(
                    """INSERT INTO {current} (document_id, version, data, data_ion, revision_hash, tx_time,
                                              block_sequence)
                       SELECT document_id, version, data, data_ion, revision_hash, tx_time, block_sequence
                       FROM (SELECT DISTINCT ON (document_id) * FROM {history}
                             WHERE document_id = ANY(%s) ORDER BY document_id, version DESC) latest
                       WHERE operation <> 'delete'"""
                ).format(current=current, history=history),
                (doc_list,),
            )
            stats.current_rows = self.conn.execute(sql.SQL("SELECT count(*) FROM {}").format(current)).fetchone()[0]


def migrate_source(
    conn: psycopg.Connection,
    spec: Any,
    digests: list[Digest],
    options: MigrateOptions,
    source_description: str,
    progress: Any = None,
) -> MigrateResult:
    """Run one migration on ``conn`` (not in a transaction yet); commits only a run that passed."""
    started = time.perf_counter()
    if not conn.execute("SELECT pg_try_advisory_lock(%s, %s)", LOCK_KEY).fetchone()[0]:
        conn.rollback()
        raise MigrationRefused(MIGRATION_BUSY)
    conn.commit()  # the session-level lock outlives this transaction
    try:
        run_id = conn.execute(
            "INSERT INTO qldb.migration_run (source, opt_outs) VALUES (%s, %s) RETURNING run_id",
            (source_description, options.opt_outs()),
        ).fetchone()[0]
        sink = PgSink(conn, run_id, options.schema)
        result = verify_source(spec, digests, options.workers, progress, sink)
        result.findings.extend(sink.extra_findings)
        refused = options.refused_states(result.states())
        ok = not result.errors and not refused
        if ok:
            sink.finish()
        counts = {
            "blocks": result.blocks, "newBlocks": sink.new_blocks, "knownBlocks": sink.known_blocks,
            "revisions": result.revisions, "redactionsApplied": sink.redactions_applied,
            "tables": {s.qldb_name: {"loaded": s.loaded, "current": s.current_rows, "deleted": s.deleted,
                                     "redacted": s.redacted} for s in sink.tables.values()},
        }
        strand = result.plan.objects[0].strand_id if result.plan.objects else None
        if ok:
            _record_digests(conn, run_id, result)
            conn.execute(
                "UPDATE qldb.migration_run SET strand_id = %s, finished_at = now(), verdict = %s, states = %s, "
                "counts = %s WHERE run_id = %s",
                (strand, "loaded" if sink.new_blocks or sink.redactions_applied else "unchanged",
                 result.states(), psycopg.types.json.Jsonb(counts), run_id),
            )
            conn.commit()
        else:
            conn.rollback()
            run_id = conn.execute(
                "INSERT INTO qldb.migration_run (strand_id, source, opt_outs, finished_at, verdict, states, counts) "
                "VALUES (%s, %s, %s, now(), %s, %s, %s) RETURNING run_id",
                (strand, source_description, options.opt_outs(), "refused" if not result.errors else "failed",
                 result.states(), psycopg.types.json.Jsonb(counts)),
            ).fetchone()[0]
            conn.commit()
        tables = {s.qldb_name: s for s in sink.tables.values()}
        return MigrateResult(result, run_id, ok, refused, tables, sink.new_blocks, sink.known_blocks,
                             sink.redactions_applied, time.perf_counter() - started)
    except BaseException:
        with contextlib.suppress(psycopg.Error):
            conn.rollback()
        raise
    finally:
        # On a lost connection the server already dropped the lock with the session.
        with contextlib.suppress(psycopg.Error):
            conn.execute("SELECT pg_advisory_unlock(%s, %s)", LOCK_KEY)
            conn.commit()


def _record_digests(conn: psycopg.Connection, run_id: int, result: VerifyResult) -> None:
    for outcome in result.digests:
        if not outcome.matched:
            continue
        d = outcome.digest
        conn.execute(
            "INSERT INTO qldb.digest (strand_id, tip_sequence_no, digest, source, reached_by, proof, run_id) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (d.tip.strand_id, d.tip.sequence_no, d.digest, d.source, "; ".join(outcome.methods),
             list(d.proof) if d.proof else None, run_id),
        )


__all__ = ["MigrateOptions", "MigrateResult", "MigrationRefused", "migrate_source"]
