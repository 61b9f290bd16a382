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

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from ..exports import DataObject
from ..sources import SourceSpec
from ..verifier import ObjectResult, check_object
from .copybinary import NULL, copy_tuples
from .rows import BLOCK_COLUMNS, BLOCK_TYPES, HISTORY_COLUMNS, HISTORY_TYPES
from .target import MigrationRefused, Target, first_line, sanitize


@dataclass(frozen=True)
class WorkerLoad:
    """What a worker needs to stage rows: where the target is, and the run's schema (its stage's owner)."""

    conninfo: str = field(repr=False)  # may hold a password: never in a task's repr or a log line
    schema: str = ""


def probe_target(load: WorkerLoad) -> str | None:
    """Runs on each worker before the run: None if it can stage rows in the target, else why not (one line)."""
    try:
        with psycopg.connect(load.conninfo, connect_timeout=15) as conn:
            found = conn.execute("SELECT to_regclass('qldb.stage_history') IS NOT NULL AND "
                                 "has_table_privilege('qldb.stage_history', 'INSERT')").fetchone()[0]
    except psycopg.Error as exc:
        return f"{type(exc).__name__}: {first_line(exc)}"
    return None if found else "qldb.stage_history is missing or not writable for the DSN's user"


def cluster_load(executor: Any, load: WorkerLoad) -> tuple[WorkerLoad | None, str]:
    """(``load``, how) when every worker of ``executor``'s cluster can stage rows, else (None, why not).

    All workers or none: a run whose rows arrive partly through the client and partly staged would be correct,
    but its cost could not be told from its report."""
    answers = executor.run_on_workers(probe_target, load)
    for worker, answer in sorted(answers.items()):
        if answer is not None:
            return None, (f"rows go through this client: Dask worker {worker} cannot write to the target "
                          f"({sanitize(str(answer), Target(load.conninfo, ''))})")
    return load, f"rows: COPYed into the target by the cluster's {len(answers)} workers, published in one transaction"


# --- what binds the staged rows to the signed result ---------------------------------------------------------
#
# The client signs each object's result (``staging``); the rows are in the database, outside that signature.  So
# the worker, in its staging transaction (nothing of it is visible to anyone else yet), has PostgreSQL digest the
# rows it just COPYed — per block: its ``qldb.block`` row, and per QLDB table its history rows in index order —
# and the digests travel in the signed result.  The publish digests the rows it actually inserts, the same way,
# and refuses on any difference: a staged row altered, reordered, added or removed in between is never published
# (the post-load check could not see every such change: ``block_timestamp`` and ``source_object`` are in no hash).
#
# The digest is of each value's binary send form (a length before each, NULL marked), never of text output, which
# depends on session settings (TimeZone, DateStyle, bytea_output) that a worker and the client may not share.

_SEND = {
    "text": "convert_to({}, 'UTF8')",
    "text[]": "convert_to(to_jsonb({})::text, 'UTF8')",
    "jsonb": "convert_to({}::text, 'UTF8')",
    "bytea": "{}",
    "bytea[]": "array_send({})",
    "int4": "int4send({})",
    "int8": "int8send({})",
    "bool": "boolsend({})",
    "timestamptz": "timestamptz_send({})",
}


def _row_bytes(columns: Sequence[str], types: Sequence[str]) -> sql.Composable:
    """An SQL bytea expression unique to a row's values of ``columns`` (see above)."""
    parts = []
    for column, kind in zip(columns, types, strict=True):
        value = sql.SQL(_SEND[kind]).format(sql.Identifier(column))
        parts.append(sql.SQL("coalesce(int4send(octet_length({v})) || {v}, '\\xffffffff'::bytea)").format(v=value))
    return sql.SQL(" || ").join(parts)


_BLOCK_DIGEST = sql.SQL("sha256({})").format(_row_bytes(BLOCK_COLUMNS[:-1], BLOCK_TYPES[:-1]))  # not run_id
_HISTORY_DIGEST = sql.SQL("sha256(string_agg({}, ''::bytea ORDER BY index_in_block))").format(
    _row_bytes(HISTORY_COLUMNS, HISTORY_TYPES))


class StagingFailed(MigrationRefused):
    """A worker could not stage an object's rows in the target (exit 3): said in one line, naming the object."""


def stage_rows(conn: psycopg.Connection, load: WorkerLoad, result: ObjectResult) -> None:
    """COPY the object's rows into the stage under a new token, digest them (above), commit, and strip them from
    ``result``: its row bytes now live in the database, and the result carries the token and the digests.

    A token per attempt, never a replacement of what is staged: a task still running for a killed run (Dask
    cannot stop a running task) may commit after a later run's attempt at the same object, and must not
    change the rows that later run publishes (the object may have changed in between)."""
    key = result.obj.key
    token = uuid.uuid4().hex
    mine = (load.schema, key, token)
    conn.execute("SELECT set_config('qldb_migrate.stage_schema', %s, true), "
                 "set_config('qldb_migrate.stage_object', %s, true), "
                 "set_config('qldb_migrate.stage_token', %s, true)", mine)
    blocks = [rows.block_copy + NULL for rows in result.rows.values()]  # run_id: the publish sets it
    if blocks:
        copy_tuples(conn, sql.Identifier("qldb", "stage_block"), BLOCK_COLUMNS, blocks)
    by_table: dict[str, list[bytes]] = {}
    for rows in result.rows.values():
        for table_id, table_rows in rows.tables.items():
            by_table.setdefault(table_id, []).append(table_rows.copy_data)
    for table_id, chunks in by_table.items():
        conn.execute("SELECT set_config('qldb_migrate.stage_table', %s, true)", (table_id,))
        copy_tuples(conn, sql.Identifier("qldb", "stage_history"), HISTORY_COLUMNS, chunks)
    block_digests = dict(conn.execute(sql.SQL(
        "SELECT sequence_no, {} FROM qldb.stage_block WHERE pg_schema = %s AND object_key = %s AND token = %s"
    ).format(_BLOCK_DIGEST), mine).fetchall())
    history_digests = {(table_id, seq): (bytes(digest), n) for table_id, seq, digest, n in conn.execute(sql.SQL(
        "SELECT table_id, block_sequence, {}, count(*) FROM qldb.stage_history WHERE pg_schema = %s AND "
        "object_key = %s AND token = %s GROUP BY table_id, block_sequence").format(_HISTORY_DIGEST), mine)}
    conn.commit()
    for seq, rows in result.rows.items():
        rows.block_copy = b""
        rows.stage_token = token
        rows.stage_digest = bytes(block_digests[seq])
        for table_id, table_rows in rows.tables.items():
            table_rows.copy_data = b""
            table_rows.stage_digest, count = history_digests[(table_id, seq)]
            if count != len(table_rows.documents):
                raise StagingFailed(f"{key}: block {seq} has {len(table_rows.documents)} rows of table {table_id} "
                                    f"but {count} were staged")


def check_and_stage(load: WorkerLoad, spec: SourceSpec, obj: DataObject, with_rows: bool, reference: bool
                    ) -> ObjectResult:
    """Worker: ``check_object``, then, for an object that verified, its rows staged in the target by this worker.

    An object with an error finding is not staged (the run will publish nothing); its rows travel to the client
    as they do locally, which discards them.  One connection per object: nothing idles in the target between
    runs, and a connection a failover broke is never reused."""
    result = check_object(spec, obj, with_rows, reference)
    if with_rows and result.rows and result.unreadable is None and not any(f.is_error for f in result.findings):
        try:
            with psycopg.connect(load.conninfo, application_name="qldb-migrate worker", connect_timeout=30) as conn:
                stage_rows(conn, load, result)
        except psycopg.Error as exc:
            raise StagingFailed(
                f"{obj.key}: a Dask worker could not stage its rows in the target ({type(exc).__name__}: "
                f"{sanitize(first_line(exc), Target(load.conninfo, ''))}); nothing from this run was published"
            ) from None
    return result


# --- the publishing transaction's side ---------------------------------------------------------------------------

_BLOCK_SELECT = sql.SQL(", ").join(map(sql.Identifier, BLOCK_COLUMNS[:-1]))


class StagedRowsChanged(MigrationRefused):
    """The rows the publish would insert are not those the worker staged (and the signed result digests):
    altered, reordered, added or removed in the database since.  Nothing is published; exit 1 (content)."""

    exit_code = 1


def _changed(key: str, what: str, expected: dict[int, Any], found: dict[int, Any]) -> StagedRowsChanged:
    differ = sorted(set(expected) ^ set(found) | {s for s in expected if s in found and found[s] != expected[s]})
    return StagedRowsChanged(
        f"{key}: the {what} its Dask worker staged differ now from what it staged and verified (block "
        f"{differ[0] if differ else '?'}{f' and {len(differ) - 1} more' if len(differ) > 1 else ''}): changed in "
        "the database since; nothing from this run was published. Run it again: the object is verified and "
        "staged again")


def publish_blocks(conn: psycopg.Connection, key: str, schema: str, token: str, expected: dict[int, bytes],
                   run_id: int) -> None:
    """The ``qldb.block`` rows of ``key``'s accepted blocks staged under ``token``, with this run's id — exactly
    the rows whose digests the worker reported (``expected``, by sequence number), or nothing."""
    found = {seq: bytes(digest) for seq, digest in conn.execute(sql.SQL(
        "WITH ins AS (INSERT INTO qldb.block ({cols}, run_id) SELECT {cols}, %s FROM qldb.stage_block "
        "WHERE pg_schema = %s AND object_key = %s AND token = %s AND sequence_no = ANY(%s) ORDER BY sequence_no "
        "RETURNING *) SELECT sequence_no, {digest} FROM ins").format(cols=_BLOCK_SELECT, digest=_BLOCK_DIGEST),
        (run_id, schema, key, token, list(expected))).fetchall()}
    if found != expected:
        raise _changed(key, "qldb.block rows", expected, found)


def publish_history(conn: psycopg.Connection, key: str, schema: str, token: str, table_id: str,
                    history: sql.Composable, expected: dict[int, tuple[bytes, int]]) -> None:
    """The history rows of one QLDB table for ``key``'s accepted blocks staged under ``token``, into its history
    table — exactly those the worker digested (``expected``: by block, digest and row count), or nothing."""
    cols = sql.SQL(", ").join(map(sql.Identifier, HISTORY_COLUMNS))
    found = {seq: (bytes(digest), n) for seq, digest, n in conn.execute(sql.SQL(
        "WITH ins AS (INSERT INTO {history} ({cols}) SELECT {cols} FROM qldb.stage_history WHERE pg_schema = %s "
        "AND object_key = %s AND token = %s AND table_id = %s AND block_sequence = ANY(%s) "
        "ORDER BY block_sequence, index_in_block RETURNING *) "
        "SELECT block_sequence, {digest}, count(*) FROM ins GROUP BY block_sequence"
    ).format(history=history, cols=cols, digest=_HISTORY_DIGEST),
        (schema, key, token, table_id, list(expected))).fetchall()}
    if found != expected:
        raise _changed(key, f"history rows of table {table_id}", expected, found)


def forget_rows(conn: psycopg.Connection, schema: str, key: str | None = None) -> None:
    """Staged rows of one object (its new result carries its rows itself), or of the whole schema (publish,
    ``--restart``)."""
    where, params = ("pg_schema = %s", (schema,)) if key is None else (
        "pg_schema = %s AND object_key = %s", (schema, key))
    for table in ("stage_block", "stage_history"):
        conn.execute(sql.SQL("DELETE FROM {} WHERE ").format(sql.Identifier("qldb", table)) + sql.SQL(where), params)


__all__ = ["StagedRowsChanged", "StagingFailed", "WorkerLoad", "check_and_stage", "cluster_load", "forget_rows",
           "probe_target", "publish_blocks", "publish_history", "stage_rows"]
