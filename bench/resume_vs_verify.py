"""Resumable ``migrate`` (staged per-object progress) against ``verify``: uninterrupted, and killed at 50% then resumed.

    python bench/resume_vs_verify.py [--revisions 50000] [--seed 1] [--dsn postgresql://…] [--kill-at 0.5] [--rounds 2]

On the pinned sample export (built once in ``bench/out``) and the PostgreSQL
given by ``--dsn`` / ``QLDB_MIGRATE_DSN`` (default: the local server on
127.0.0.1:5432), each migrate into a fresh database:

* ``verify_source`` over the export (full verification, a worker per core);
* ``migrate`` as the command runs it (workers first, a publishing session and
  a staging session), uninterrupted: ``migrate_vs_verify``;
* the same without the staging session (the one-transaction run before issue
  17): ``unstaged_migrate_vs_verify`` and ``staging_cost`` (staged / unstaged
  time, minus one);
* ``qldb-migrate migrate`` as a process, ``kill -9`` once ``--kill-at`` of the
  objects are staged, then the rerun (in process, as above):
  ``migrate_resumed_vs_verify`` (verify time over killed run + rerun: the
  whole wall time the ledger took), ``resume_only_vs_verify`` (the rerun alone)
  and ``resume_redo_fraction``: objects the killed run had worked on that the
  rerun verified again, over all objects.  The rerun verifies every object
  the killed run had not staged (``resume_objects_verified_again``, mostly
  never started); of them, the killed run can have worked only on those in
  flight at the kill — at most two per worker (the executor's window) — so
  the figure printed is that bound: min(2 × workers, objects not staged) /
  objects.  ``resume_overhead``: what the kill cost in wall time, as a share
  of an uninterrupted run — (killed run + rerun − uninterrupted run) /
  uninterrupted run; besides the redone objects it holds the killed process's
  start, the rerun re-hashing the staged objects' bytes, and the COPY of their
  staged rows, which the killed run's rolled-back transaction had also done.
* a rerun that replays every object (all staged by a run that failed on a
  wrong digest): ``replay_all_vs_verify``, what replaying costs against
  verifying.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

sys.path.insert(0, str(Path(__file__).resolve().parent))
from verify_vs_parse import sample


@contextmanager
def fresh(dsn: str):
    name = f"qm_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_conninfo(dsn, dbname=name)
    finally:
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def wrong_digest(verified: Any) -> Any:
    """A digest of the export's last block that does not match it."""
    from qldb_migrate.verify.chain import Digest
    from qldb_migrate.verify.findings import BlockAddress

    return Digest(bytes(32), BlockAddress(verified.strand_id, verified.last_sequence), "bench: wrong digest")


def migrate_in_process(conninfo: str, spec: Any, export: Path, staged: bool, digests: list[Any] | None = None
                       ) -> tuple[float, Any]:
    from qldb_migrate.executor import local_executor
    from qldb_migrate.optouts import OptOuts
    from qldb_migrate.pg.loader import MigrateOptions, migrate_source
    from qldb_migrate.pg.staging import Stage
    from qldb_migrate.pg.target import Target, connect, upgrade_schema

    target = Target(conninfo, "bench")
    upgrade_schema(target)
    start = time.perf_counter()
    executor = local_executor(None)  # as the command does: workers first, then the connections
    conn = connect(target)
    stage_conn = connect(target) if staged else None
    try:
        stage = Stage(stage_conn, "ledger") if stage_conn is not None else None
        options = MigrateOptions(opt_outs=OptOuts(unanchored=True))
        result = migrate_source(conn, spec, digests or [], options, str(export), executor=executor, stage=stage)
    finally:
        if stage_conn is not None:
            stage_conn.close()
        conn.close()
        executor.close()
    seconds = time.perf_counter() - start
    assert result.committed, [f.describe() for f in result.verify.errors[:3]]
    return seconds, result


def staged_count(conninfo: str) -> int:
    with psycopg.connect(conninfo) as conn:
        if conn.execute("SELECT to_regclass('qldb.stage_object')").fetchone()[0] is None:
            return 0
        return conn.execute("SELECT count(*) FROM qldb.stage_object").fetchone()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--revisions", type=int, default=50000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dsn", default=os.environ.get("QLDB_MIGRATE_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--kill-at", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, default=2, help="uninterrupted runs of each kind (best is kept)")
    args = parser.parse_args()
    os.environ.setdefault("QLDB_MIGRATE_STAGE_KEY", str(Path(tempfile.mkdtemp(prefix="qm-bench-")) / "key"))

    from qldb_migrate.executor import default_workers
    from qldb_migrate.exports import discover
    from qldb_migrate.sources import SourceSpec
    from qldb_migrate.verifier import verify_source

    export = sample(args.revisions, args.seed)
    spec = SourceSpec(str(export))
    objects = discover(spec.open()).objects
    # --rounds of each, interleaved, best of each: a shared machine's noise must not decide staging_cost
    verify_s = staged_s = unstaged_s = float("inf")
    for _ in range(args.rounds):
        start = time.perf_counter()
        verified = verify_source(spec, [], None)
        verify_s = min(verify_s, time.perf_counter() - start)
        with fresh(args.dsn) as db:
            seconds, staged_result = migrate_in_process(db, spec, export, staged=True)
            staged_s = min(staged_s, seconds)
        with fresh(args.dsn) as db:
            unstaged_s = min(unstaged_s, migrate_in_process(db, spec, export, staged=False)[0])
    revisions = verified.revisions

    with fresh(args.dsn) as db:
        from qldb_migrate.pg.target import Target, upgrade_schema

        upgrade_schema(Target(db, "bench"))  # as the command's own first step; not part of either timing below
        cmd = [sys.executable, "-m", "qldb_migrate", "migrate", str(export), "--dsn", db, "--no-check",
               "--allow-unanchored"]
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        while proc.poll() is None and staged_count(db) < args.kill_at * len(objects):
            time.sleep(0.05)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        killed_s = time.perf_counter() - start
        assert proc.returncode == -signal.SIGKILL, f"the run ended ({proc.returncode}) before the kill"
        at_kill = staged_count(db)
        with psycopg.connect(db) as conn:
            assert conn.execute("SELECT count(*) FROM qldb.block").fetchone()[0] == 0, "the killed run published"
            staged_blocks = sum(
                n for (n,) in conn.execute("SELECT blocks FROM qldb.stage_object"))
        with psycopg.connect(db, autocommit=True) as conn:  # the killed session's backend ends a moment later
            while conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").fetchone()[0]:
                time.sleep(0.05)
        resume_s, resumed = migrate_in_process(db, spec, export, staged=True)
        r = resumed.resumed
        assert r is not None and r.reused == at_kill and r.reused + r.redone == len(objects), r
        redone_blocks = sum(o.last - o.first + 1 for o in objects) - staged_blocks

    with fresh(args.dsn) as db:  # every object staged by a run that fails as a whole, then a rerun replays them all
        with contextlib.suppress(AssertionError):
            migrate_in_process(db, spec, export, staged=True, digests=[wrong_digest(verified)])
        replay_s, replayed = migrate_in_process(db, spec, export, staged=True)
        assert replayed.resumed is not None and replayed.resumed.reused == len(objects), replayed.resumed

    print(f"revisions={revisions}")
    print(f"objects={len(objects)}")
    print(f"verify_revisions_per_s={revisions / verify_s:.0f}")
    print(f"migrate_revisions_per_s={revisions / staged_s:.0f}")
    print(f"migrate_vs_verify={verify_s / staged_s:.2f}")
    print(f"unstaged_migrate_vs_verify={verify_s / unstaged_s:.2f}")
    print(f"staging_cost={staged_s / unstaged_s - 1:.2f}")
    print(f"killed_after_s={killed_s:.1f}")
    print(f"objects_staged_at_kill={at_kill}")
    print(f"migrate_resumed_vs_verify={verify_s / (killed_s + resume_s):.2f}")
    print(f"resume_only_vs_verify={verify_s / resume_s:.2f}")
    print(f"resume_redo_fraction={min(2 * default_workers(None), r.redone) / len(objects):.3f}")
    print(f"resume_objects_verified_again={r.redone}")
    print(f"resume_blocks_verified_again_fraction={redone_blocks / sum(o.last - o.first + 1 for o in objects):.3f}")
    print(f"resume_overhead={(killed_s + resume_s - staged_s) / staged_s:.3f}")
    print(f"replay_all_vs_verify={verify_s / replay_s:.2f}")
    assert staged_result.verify.revisions == resumed.verify.revisions == revisions


if __name__ == "__main__":
    main()
