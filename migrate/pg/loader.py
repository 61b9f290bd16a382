"""``migrate``: verify an export and load it into PostgreSQL in the same streaming pass.

Publishing: the whole run is **one transaction**.  Rows are COPYed straight
into the final tables; until the commit, PostgreSQL's MVCC keeps them
invisible to every other session, so the transaction *is* the staging area
and the commit is the atomic publish.  Nothing is written twice (no staging
table to copy from, no rename or partition attach, which would cost the same
write plus exclusive catalog locks); on two cores the single write is the
cheapest publish there is.  The commit happens only after the last chain
link and digest have been checked and the run's opt-outs allow its states;
anything else rolls back, and a killed run leaves nothing in the ledger.  What
it leaves is its staged progress (``staging``, on a second session, committed
per object): a rerun replays the objects already verified instead of reading
them again, redoes the rest, and runs every sequential check and the COPY
again, so it ends with exactly the rows an uninterrupted run gives; blocks an
earlier run committed are not loaded again but compared, by hash, with the
export (a later export adds only what is new).
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from ..executor import Executor, InlineExecutor
from ..optouts import OptOuts
from ..verifier import BlockSink, BlockSummary, ObjectResult, VerifyResult, verify_sources
from ..verify.chain import ChainChecker, Digest
from ..verify.findings import BlockAddress, Finding, Kind, Location, Severity
from ..verify.ionparse import IonParseError, loads
from .copybinary import copy_tuples
from .names import table_names
from .rows import BLOCK_COLUMNS, HISTORY_COLUMNS, BlockRows, TableRows, run_id_field
from .schemasync import schema_findings, sync_schema
from .staging import ResumeStats, Stage
from .target import LOCK_KEY, MIGRATION_BUSY, LedgerConflict, MigrationRefused
from .workerload import StagedRowsChanged, publish_blocks, publish_history


@dataclass
class TableStats:
    table_id: str
    qldb_name: str
    history: str
    current: str
    loaded: int = 0  # history rows this run added
    deleted: int = 0  # of them, delete revisions
    redacted: int = 0  # revisions whose data is cleared (loaded redacted, or a redaction applied by this run)
    current_rows: int = 0  # documents in the current table after the run

    def to_json(self) -> dict[str, Any]:
        return {"tableId": self.table_id, "tableName": self.qldb_name, "historyTable": self.history,
                "currentTable": self.current, "loaded": self.loaded, "deleted": self.deleted,
                "redacted": self.redacted, "currentRows": self.current_rows}


@dataclass
class MigrateOptions:
    schema: str = "ledger"
    opt_outs: OptOuts = field(default_factory=OptOuts)
    workers: int | None = None
    source_format: str = "auto"
    work_dir: Path | None = None  # where stream archives spill (default: a temporary directory)


@dataclass
class MigrateResult:
    verify: VerifyResult
    run_id: int | None
    committed: bool
    refused_states: list[str]
    tables: dict[str, TableStats]  # by QLDB table id
    new_blocks: int
    known_blocks: int  # blocks of the source an earlier run already stored (each counted once)
    redactions_applied: int
    seconds: float
    findings: list[Finding] = field(default_factory=list)
    resumed: ResumeStats | None = None  # objects replayed from / added to the staged progress (``staging``)


def _stored_redactions(conn: psycopg.Connection, strand: str) -> set[tuple[str, str, int]]:
    """(table id, document id, version) every stored block's redactionInfo names (hash-bound: H is in its entries)."""
    out: set[tuple[str, str, int]] = set()
    for (ion,) in conn.execute("SELECT redaction_info_ion FROM qldb.block WHERE strand_id = %s "
                               "AND redaction_info_ion IS NOT NULL", (strand,)):
        with contextlib.suppress(IonParseError, KeyError, TypeError, ValueError):
            value = loads(bytes(ion))
            out.add((str(value["tableId"]), str(value["documentId"]), int(value["version"])))
    return out


class PgSink(BlockSink):
    wants_rows = True

    def __init__(self, conn: psycopg.Connection, run_id: int, schema: str, stage: Stage | None = None) -> None:
        self.conn = conn
        self.stage = stage
        self.run_id = run_id
        self.schema = schema
        self.run_field = run_id_field(run_id)
        self.pending_blocks: list[bytes] = []
        self.pending_history: dict[str, list[TableRows]] = defaultdict(list)
        # accepted blocks of this object whose rows its worker staged (workerload), by the staging attempt's token
        self.staged_blocks: dict[str, dict[int, bytes]] = defaultdict(dict)
        self.staged_history: dict[tuple[str, str], dict[int, TableRows]] = defaultdict(dict)
        self.known: list[tuple[BlockSummary, Any]] = []
        self.tables: dict[str, TableStats] = {}
        self.strand: str | None = None
        self.stored_last: int | None = None
        self.new_blocks = 0
        self.known_blocks = 0
        self.redactions: list[tuple[str, str, int]] = []  # table id, document id, version
        self.redactions_applied = 0
        self.touched: dict[str, set[str]] = defaultdict(set)
        self.reservations: list[tuple[str, str, int, str, int]] = []  # table id, doc, version, kind, block
        self.extra_findings: list[Finding] = []

    # --- the ledger and its schema ------------------------------------------------------------
    def prime(self, chain: ChainChecker, strand_id: str | None, ledger_name: str | None = None) -> None:
        """Claims the run's ledger and schema, then feeds the chain the ledger's stored blocks.

        One ledger per schema: a second ledger's tables mixed into the first's
        schema could not be told apart by name.  Refusals happen here, before
        any object is read.
        """
        from ..verify.block import BlockCheck

        if strand_id is None:
            return
        self.strand = strand_id
        row = self.conn.execute("SELECT pg_schema, state FROM qldb.ledger WHERE strand_id = %s", (strand_id,)
                                ).fetchone()
        if row is not None:
            schema, state = row
            if state == "live":
                raise LedgerConflict(f"ledger {ledger_name or strand_id} (strand {strand_id}) is live since its "
                                     "cut-over: its chain now continues in PostgreSQL and takes no more QLDB blocks")
            if schema != self.schema:
                raise LedgerConflict(f"ledger {ledger_name or strand_id} (strand {strand_id}) lives in schema "
                                     f"{schema}; give --schema {schema}")
        else:
            other = self.conn.execute("SELECT strand_id, ledger_name FROM qldb.ledger WHERE pg_schema = %s",
                                      (self.schema,)).fetchone()
            if other is not None:
                raise LedgerConflict(f"schema {self.schema} holds the tables of ledger {other[1] or other[0]} "
                                     f"(strand {other[0]}); give this ledger ({ledger_name or strand_id}, strand "
                                     f"{strand_id}) its own --schema")
            foreign = [r[0] for r in self.conn.execute(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relkind IN ('r', 'v', 'm', 'p', 'f') ORDER BY 1 LIMIT 5",
                (self.schema,))]
            if foreign:
                raise LedgerConflict(f"schema {self.schema} already holds {', '.join(foreign)}, which qldb-migrate "
                                     "did not create; choose another --schema")
            self.conn.execute("INSERT INTO qldb.ledger (strand_id, ledger_name, pg_schema) VALUES (%s, %s, %s)",
                              (strand_id, ledger_name, self.schema))
        with self.conn.cursor(name="prime") as cur:
            cur.itersize = 10000
            cur.execute(
                "SELECT sequence_no, block_hash, previous_block_hash, transaction_id, source_object "
                "FROM qldb.block WHERE strand_id = %s ORDER BY sequence_no",
                (strand_id,),
            )
            for seq, block_hash, previous, tx_id, source in cur:
                found = chain.add(BlockCheck(BlockAddress(strand_id, seq), f"(stored) {source}", None,
                                             bytes(block_hash), bytes(previous), None, tx_id))
                # a digest given now that reaches a stored block is a claim to prove on the stored chain: its
                # mismatch fails the run (the chain itself was proven when it was loaded; `check` re-proves it)
                self.extra_findings.extend(f for f in found if f.code.startswith("digest-"))
                self.stored_last = seq

    def unexplained_redactions(self, strand_id: str | None,
                               candidates: list[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
        if strand_id is None:
            return candidates
        stored = _stored_redactions(self.conn, strand_id)
        return [c for c in candidates if c not in stored]

    # --- objects: fresh, or replayed from the staged progress of an interrupted run ---------------
    def tasks(self, task: Any, items: Any) -> tuple[Any, Any]:
        return (task, items) if self.stage is None else self.stage.tasks(items)

    def received(self, result: Any) -> ObjectResult:
        return result if self.stage is None else self.stage.received(result)

    # --- blocks -------------------------------------------------------------------------------
    def new_block(self, block: BlockSummary, rows: BlockRows | None) -> list[Finding]:
        if rows is None or block.address is None:
            return []  # the block failed its checks: the run will not commit
        seq = block.address.sequence_no
        if rows.stage_token:
            self.staged_blocks[rows.stage_token][seq] = rows.stage_digest
        else:
            self.pending_blocks.append(rows.block_copy + self.run_field)
        for table_id, table_rows in rows.tables.items():
            if rows.stage_token:
                self.staged_history[(rows.stage_token, table_id)][seq] = table_rows
            else:
                self.pending_history[table_id].append(table_rows)
            self.reservations.extend((table_id, d, v, kind, seq) for d, v, kind in table_rows.reservations)
        self.reservations.extend((table_id, d, -1, "not-present", seq) for table_id, d in rows.not_present)
        if rows.redaction is not None:
            self.redactions.append(rows.redaction)
        self.new_blocks += 1
        return []

    def is_stored(self, sequence_no: int) -> bool:
        return self.stored_last is not None and sequence_no <= self.stored_last

    def known_block(self, block: BlockSummary, rows: Any, first: bool) -> list[Finding]:
        self.known.append((block, rows))
        self.known_blocks += first
        return []

    def object_done(self, result: ObjectResult) -> None:
        self._flush_known(result)
        if self.pending_blocks:
            copy_tuples(self.conn, sql.Identifier("qldb", "block"), BLOCK_COLUMNS, self.pending_blocks)
            self.pending_blocks.clear()
        for table_id, parts in self.pending_history.items():
            stats = self._table(table_id, parts[0].table_name)
            copy_tuples(self.conn, sql.Identifier(self.schema, stats.history), HISTORY_COLUMNS,
                        [p.copy_data for p in parts])
            self._count(table_id, stats, parts)
        self.pending_history.clear()
        try:
            for token, digests in self.staged_blocks.items():
                publish_blocks(self.conn, result.obj.key, self.schema, token, digests, self.run_id)
            for (token, table_id), by_seq in self.staged_history.items():
                parts = list(by_seq.values())
                stats = self._table(table_id, parts[0].table_name)
                publish_history(self.conn, result.obj.key, self.schema, token, table_id,
                                sql.Identifier(self.schema, stats.history),
                                {seq: (p.stage_digest, len(p.documents)) for seq, p in by_seq.items()})
                self._count(table_id, stats, parts)
        except StagedRowsChanged:
            if self.stage is not None:
                self.stage.forget(result.obj.key)  # a rerun verifies and stages the object again
            raise
        finally:
            self.staged_blocks.clear()
            self.staged_history.clear()

    def _count(self, table_id: str, stats: TableStats, parts: list[TableRows]) -> None:
        stats.loaded += sum(len(p.documents) for p in parts)
        stats.deleted += sum(p.deleted for p in parts)
        stats.redacted += sum(len(p.redacted) for p in parts)
        touched = self.touched[table_id]
        for p in parts:
            touched.update(p.documents)

    def _flush_known(self, result: ObjectResult) -> None:
        """Blocks seen before: compare stored hashes; carry redactions into stored rows."""
        if not self.known:
            return
        by_seq: dict[int, tuple[BlockSummary, Any]] = {}
        for b, rows in self.known:
            if b.address is not None and b.address.sequence_no not in by_seq:
                by_seq[b.address.sequence_no] = (b, rows)
        self.known.clear()
        stored = dict(
            self.conn.execute(
                "SELECT sequence_no, block_hash FROM qldb.block WHERE strand_id = %s AND sequence_no = ANY(%s)",
                (self.strand, list(by_seq)),
            ).fetchall()
        )
        for seq, (block, rows) in by_seq.items():
            if seq not in stored:
                continue  # an overlap inside this run's source (its first copy is new, not stored yet)
            if bytes(stored[seq]) != block.computed_block_hash:
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
                    self.redactions.append((table_id, document_id, version))
            if rows.redaction is not None:
                self.redactions.append(rows.redaction)

    def _table(self, table_id: str, name: str) -> TableStats:
        stats = self.tables.get(table_id)
        if stats is not None:
            return stats
        found = self.conn.execute(
            "SELECT table_name, history_name, current_name FROM qldb.ledger_table WHERE strand_id = %s "
            "AND table_id = %s", (self.strand, table_id),
        ).fetchone()
        if found is None:
            taken = {r[0] for r in self.conn.execute(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s "
                "UNION SELECT current_name FROM qldb.ledger_table WHERE pg_schema = %s UNION "
                "SELECT history_name FROM qldb.ledger_table WHERE pg_schema = %s", (self.schema,) * 3)}
            current, history = table_names(name, taken)
            self._create_tables(current, history)
            self.conn.execute(
                "INSERT INTO qldb.ledger_table (strand_id, table_id, table_name, pg_schema, current_name, "
                "history_name) VALUES (%s, %s, %s, %s, %s, %s)",
                (self.strand, table_id, name, self.schema, current, history),
            )
        else:
            name, history, current = found
        stats = self.tables[table_id] = TableStats(table_id, name, history, current)
        return stats

    def _create_tables(self, current: str, history: str) -> None:
        """The table pair, as ``qldb.create_table_pair`` defines it (the live ledger creates new ones the same way)."""
        self.conn.execute("SELECT qldb.create_table_pair(%s, %s, %s)", (self.schema, current, history))

    # --- end of run -----------------------------------------------------------------------------
    def finish(self, unexplained: list[tuple[str, str, int]]) -> None:
        """Apply redactions, record reservations, then refresh the current tables for the documents touched."""
        for table_id, doc_id, version in self.redactions:
            found = self.conn.execute(
                "SELECT history_name FROM qldb.ledger_table WHERE strand_id = %s AND table_id = %s",
                (self.strand, table_id),
            ).fetchone()
            self.conn.execute(
                "DELETE FROM qldb.reservation WHERE strand_id = %s AND table_id = %s AND document_id = %s "
                "AND version = %s AND kind = 'unexplained-redaction'", (self.strand, table_id, doc_id, version))
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
                self._table(table_id, "").redacted += cur.rowcount
            self.touched[table_id].add(doc_id)
        self.reservations.extend((t, d, v, "unexplained-redaction", None) for t, d, v in unexplained)
        if self.reservations:
            with self.conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO qldb.reservation (strand_id, table_id, document_id, version, kind, block_sequence, "
                    "run_id) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    [(self.strand, t, d, v, k, b, self.run_id) for t, d, v, k, b in self.reservations])
        for table_id, docs in self.touched.items():
            stats = self._table(table_id, "")
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
    spec: Any,  # a SourceSpec, or a list of them (exports and stream archives of one ledger, joined by hash)
    digests: list[Digest],
    options: MigrateOptions,
    source_description: str,
    progress: Any = None,
    executor: Executor | None = None,
    stage: Stage | None = None,
    restart: bool = False,
) -> MigrateResult:
    """Run one migration on ``conn`` (not in a transaction yet); commits only a run that passed.

    ``executor``: started before ``conn`` was opened (``executor.local_executor``), so that no worker
    process holds a copy of the connection; without one, verification runs in this process.
    ``stage``: durable per-object progress on a second session (``staging``): objects staged by an
    interrupted run are replayed, not verified again; ``restart`` forgets them first.
    """
    started = time.perf_counter()
    if not conn.execute("SELECT pg_try_advisory_lock(%s, %s)", LOCK_KEY).fetchone()[0]:
        conn.rollback()
        raise MigrationRefused(MIGRATION_BUSY)
    conn.commit()  # the session-level lock outlives this transaction
    try:
        run_id = conn.execute(
            "INSERT INTO qldb.migration_run (source, opt_outs, started_at) VALUES (%s, %s, clock_timestamp()) "
            "RETURNING run_id",
            (source_description, options.opt_outs.names()),
        ).fetchone()[0]
        if stage is not None:
            stage.begin(restart)
        sink = PgSink(conn, run_id, options.schema, stage)
        specs = spec if isinstance(spec, list) else [spec]
        result = verify_sources(specs, digests, options.workers, progress, sink, executor or InlineExecutor(),
                                options.source_format, options.work_dir)
        result.findings.extend(sink.extra_findings)
        refused = options.opt_outs.refused(result.states())
        ok = not result.error_count and not refused
        if ok:
            sink.finish(result.unexplained_redactions)
            if result.strand_id is not None:
                result.findings.extend(schema_findings(
                    sync_schema(conn, result.strand_id, options.schema, run_id), result.strand_id))
        counts = {
            "blocks": result.blocks, "newBlocks": sink.new_blocks, "knownBlocks": sink.known_blocks,
            "revisions": result.revisions, "systemRevisions": result.system_revisions,
            "redactionsApplied": sink.redactions_applied,
            "tables": {tid: s.to_json() for tid, s in sink.tables.items()},
        }
        if stage is not None:
            counts["resumed"] = stage.stats.to_json()
        strand = result.strand_id
        if ok:
            _record_digests(conn, run_id, result)
            conn.execute(
                "UPDATE qldb.migration_run SET strand_id = %s, finished_at = clock_timestamp(), verdict = %s, "
                "states = %s, counts = %s WHERE run_id = %s",
                (strand, "loaded" if sink.new_blocks or sink.redactions_applied else "unchanged",
                 result.states(), psycopg.types.json.Jsonb(counts), run_id),
            )
            if stage is not None:
                stage.clear(conn)  # the staged progress goes with the publish, in the same transaction
            conn.commit()
        else:
            conn.rollback()
            run_id = conn.execute(
                "INSERT INTO qldb.migration_run (strand_id, source, opt_outs, started_at, finished_at, verdict, "
                "states, counts) VALUES (%s, %s, %s, %s, clock_timestamp(), %s, %s, %s) RETURNING run_id",
                (strand, source_description, options.opt_outs.names(), _started_at(started),
                 "refused" if not result.error_count else "failed", result.states(),
                 psycopg.types.json.Jsonb(counts)),
            ).fetchone()[0]
            conn.commit()
        return MigrateResult(result, run_id, ok, refused, dict(sink.tables), sink.new_blocks, sink.known_blocks,
                             sink.redactions_applied, time.perf_counter() - started,
                             resumed=None if stage is None else stage.stats)
    except BaseException:
        with contextlib.suppress(psycopg.Error):
            conn.rollback()
        raise
    finally:
        # On a lost connection the server already dropped the lock with the session.
        with contextlib.suppress(psycopg.Error):
            conn.execute("SELECT pg_advisory_unlock(%s, %s)", LOCK_KEY)
            conn.commit()


def _started_at(perf_start: float) -> Any:
    import datetime as _dt

    return _dt.datetime.now(_dt.UTC) - _dt.timedelta(seconds=time.perf_counter() - perf_start)


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


__all__ = ["LedgerConflict", "MigrateOptions", "MigrateResult", "MigrationRefused", "migrate_source"]
