"""Rows loaded by the workers themselves: with ``--dask-scheduler`` the database, not the client, is the limit.

Locally the main process forwards the workers' COPY tuples into the one
publishing transaction; that costs it little on one machine.  On a cluster it
would make the client the bottleneck (every row's bytes through one process)
— so a cluster's worker, after verifying an object, COPYs that object's rows
into ``qldb.stage_block`` / ``qldb.stage_history`` (schema 0009) on its own
connection and commits, and hands the client the object's result without the
row bytes.  The publishing transaction then copies the rows of the blocks the
chain accepted into ``qldb.block`` and the history tables inside the database
(``INSERT … SELECT``), and deletes the staged rows with the rest of the
stage.  All or nothing still holds: nothing staged is visible in a ledger
table before that one commit.

What is trusted, said plainly: the staged rows are written by this run's
workers, from the bytes they just verified, and read back only by the
publishing transaction; anyone able to alter them in between can as well alter
the published tables afterwards.  Both are caught the same way: the post-load
check (on unless ``--no-check``) and ``check --digest`` re-prove every row.

The staged rows are also the durable progress of the object (``staging``): a
resumed run replays the object's result and publishes the rows already staged.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from ..exports import DataObject
from ..sources import SourceSpec
from ..verifier import ObjectResult, check_object
from .copybinary import NULL, SIGNATURE, TRAILER
from .rows import BLOCK_COLUMNS, HISTORY_COLUMNS
from .target import MigrationRefused


class StagedRowsMissing(MigrationRefused):
    """The publish found other staged rows than the workers reported: removed or added since.  Exit 3."""


@dataclass(frozen=True)
class WorkerLoad:
    """What a worker needs to stage rows: where the target is, and the run's schema (its stage's owner)."""

    conninfo: str = field(repr=False)  # may hold a password: never in a task's repr or a log line
    schema: str = ""


_local = threading.local()  # a Dask worker may run tasks in several threads: one connection each


def _connection(conninfo: str) -> psycopg.Connection:
    conn = getattr(_local, "conn", None)
    if conn is not None and (conn.closed or conn.broken or getattr(_local, "conninfo", None) != conninfo):
        conn.close()
        conn = None
    if conn is None:
        conn = psycopg.connect(conninfo, application_name="qldb-migrate worker")
        _local.conn, _local.conninfo = conn, conninfo
    return conn


def probe_target(load: WorkerLoad) -> str | None:
    """Runs on each worker before the run: None if it can stage rows in the target, else why not (one line)."""
    try:
        with psycopg.connect(load.conninfo, connect_timeout=15) as conn:
            found = conn.execute("SELECT to_regclass('qldb.stage_history') IS NOT NULL AND "
                                 "has_table_privilege('qldb.stage_history', 'INSERT')").fetchone()[0]
    except psycopg.Error as exc:
        text = str(exc).strip()
        return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"
    return None if found else "qldb.stage_history is missing or not writable for the DSN's user"


def cluster_load(executor: Any, load: WorkerLoad) -> tuple[WorkerLoad | None, str]:
    """(``load``, how) when every worker of ``executor``'s cluster can stage rows, else (None, why not).

    All workers or none: a run whose rows arrive partly through the client and partly staged would be correct,
    but its cost could not be told from its report."""
    answers = executor.run_on_workers(probe_target, load)
    for worker, answer in sorted(answers.items()):
        if answer is not None:
            return None, (f"rows go through this client: Dask worker {worker} cannot write to the target "
                          f"({_sanitized(str(answer), load.conninfo)})")
    return load, f"rows: COPYed into the target by the cluster's {len(answers)} workers, published in one transaction"


def _sanitized(text: str, conninfo: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    password = conninfo_to_dict(conninfo).get("password")
    return text.replace(str(password), "***") if password else text


def stage_rows(conn: psycopg.Connection, load: WorkerLoad, result: ObjectResult) -> None:
    """COPY the object's rows into the stage under a new token, commit, and strip them from ``result``: its row
    bytes now live in the database, and the client is told only the token under which they do.

    A token per attempt, never a replacement of what is staged: a task still running for a killed run (Dask
    cannot stop a running task) may commit after a later run's attempt at the same object, and must not
    change the rows that later run publishes (the object may have changed in between)."""
    key = result.obj.key
    token = uuid.uuid4().hex
    block_columns = sql.SQL(", ").join(map(sql.Identifier, BLOCK_COLUMNS))
    history_columns = sql.SQL(", ").join(map(sql.Identifier, HISTORY_COLUMNS))
    try:
        conn.execute("SELECT set_config('qldb_migrate.stage_schema', %s, true), "
                     "set_config('qldb_migrate.stage_object', %s, true), "
                     "set_config('qldb_migrate.stage_token', %s, true)", (load.schema, key, token))
        blocks = [rows.block_copy + NULL for rows in result.rows.values()]  # run_id: the publish sets it
        if blocks:
            _copy(conn, sql.SQL("COPY qldb.stage_block ({}) FROM STDIN (FORMAT BINARY)").format(block_columns),
                  blocks)
        by_table: dict[str, list[bytes]] = {}
        for rows in result.rows.values():
            for table_id, table_rows in rows.tables.items():
                by_table.setdefault(table_id, []).append(table_rows.copy_data)
        for table_id, chunks in by_table.items():
            conn.execute("SELECT set_config('qldb_migrate.stage_table', %s, true)", (table_id,))
            _copy(conn, sql.SQL("COPY qldb.stage_history ({}) FROM STDIN (FORMAT BINARY)").format(history_columns),
                  chunks)
        conn.commit()
    except BaseException:
        with contextlib.suppress(psycopg.Error):
            conn.rollback()  # a lost connection: the server rolled it back; the next task connects again
        raise
    for rows in result.rows.values():
        rows.block_copy = b""
        rows.stage_token = token
        for table_rows in rows.tables.values():
            table_rows.copy_data = b""


def _copy(conn: psycopg.Connection, statement: sql.Composable, chunks: list[bytes]) -> None:
    with conn.cursor() as cur, cur.copy(statement) as copy:
        copy.write(b"".join([SIGNATURE, *chunks, TRAILER]))


def check_and_stage(load: WorkerLoad, spec: SourceSpec, obj: DataObject, with_rows: bool, reference: bool
                    ) -> ObjectResult:
    """Worker: ``check_object``, then, for an object that verified, its rows staged in the target by this worker.

    An object with an error finding is not staged (the run will publish nothing); its rows travel to the client
    as they do locally, which discards them."""
    result = check_object(spec, obj, with_rows, reference)
    if with_rows and result.rows and result.unreadable is None and not any(f.is_error for f in result.findings):
        stage_rows(_connection(load.conninfo), load, result)
    return result


# --- the publishing transaction's side ---------------------------------------------------------------------------

_BLOCK_SELECT = sql.SQL(", ").join(map(sql.Identifier, BLOCK_COLUMNS[:-1]))


def publish_blocks(conn: psycopg.Connection, schema: str, key: str, token: str, sequences: Sequence[int],
                   run_id: int) -> None:
    """The ``qldb.block`` rows of ``key``'s accepted blocks staged under ``token``, with this run's id."""
    inserted = conn.execute(sql.SQL(
        "INSERT INTO qldb.block ({cols}, run_id) SELECT {cols}, %s FROM qldb.stage_block WHERE pg_schema = %s "
        "AND object_key = %s AND token = %s AND sequence_no = ANY(%s) ORDER BY sequence_no").format(
        cols=_BLOCK_SELECT), (run_id, schema, key, token, list(sequences))).rowcount
    if inserted != len(sequences):
        raise StagedRowsMissing(
            f"{key}: {len(sequences)} verified blocks were staged by the workers, but qldb.stage_block holds "
            f"{inserted} of them now (removed since?); nothing from this run was published: rerun the migrate")


def publish_history(conn: psycopg.Connection, schema: str, key: str, token: str, table_id: str,
                    history: sql.Composable, sequences: Sequence[int], expected_rows: int) -> None:
    """The history rows of one QLDB table for ``key``'s accepted blocks staged under ``token``, into its table."""
    cols = sql.SQL(", ").join(map(sql.Identifier, HISTORY_COLUMNS))
    inserted = conn.execute(sql.SQL(
        "INSERT INTO {history} ({cols}) SELECT {cols} FROM qldb.stage_history WHERE pg_schema = %s AND "
        "object_key = %s AND token = %s AND table_id = %s AND block_sequence = ANY(%s) "
        "ORDER BY block_sequence, index_in_block"
    ).format(history=history, cols=cols), (schema, key, token, table_id, list(sequences))).rowcount
    if inserted != expected_rows:
        raise StagedRowsMissing(
            f"{key}: the workers staged {expected_rows} history rows of table {table_id} for its verified blocks, "
            f"but qldb.stage_history holds {inserted} (removed or added since?); nothing from this run was "
            "published: rerun the migrate")


def forget_rows(conn: psycopg.Connection, schema: str, key: str | None = None) -> None:
    """Staged rows of one object (its new result carries its rows itself), or of the whole schema (publish,
    ``--restart``)."""
    where, params = ("pg_schema = %s", (schema,)) if key is None else (
        "pg_schema = %s AND object_key = %s", (schema, key))
    for table in ("stage_block", "stage_history"):
        conn.execute(sql.SQL("DELETE FROM {} WHERE ").format(sql.Identifier("qldb", table)) + sql.SQL(where), params)


def worker_load_tasks(load: WorkerLoad) -> Any:
    """The per-object task for a run whose workers stage rows: ``check_and_stage`` bound to the target."""
    import functools

    return functools.partial(check_and_stage, load)


__all__ = ["StagedRowsMissing", "WorkerLoad", "check_and_stage", "forget_rows", "probe_target", "publish_blocks",
           "publish_history", "stage_rows", "worker_load_tasks"]
