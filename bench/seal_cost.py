"""The sealer's own cost per revision, in CPU time, on a fixed backlog: what a change to the sealer saves.

    python bench/seal_cost.py [--seconds 5] [--runs 3] [--profile FILE] [--reference] [--dsn …]

``bench/ledger_writes.py`` measures rates on a shared, noisy machine; this
measures CPU time, which noise moves much less.  On the PostgreSQL given by
``--dsn`` / ``QLDB_MIGRATE_DSN``: a small sample ledger migrated and cut over,
``--writers`` connections writing the ledger_writes mix for ``--seconds`` with
no sealer, and that database kept as a template.  Each run seals a fresh copy
of it in this process, round after round (``seal_once``) until the queue is
empty, and prints per revision: the sealer's CPU (``time.process_time``), its
PostgreSQL backend's CPU (``/proc/<pid>/stat``, when the server runs on this
machine) and the wall time.  ``--reference`` seals with the Python path only
(``sealer.FAST_PATH = False``); ``--profile`` writes a cProfile of the last run.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import sys
import time
import uuid
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ledger_writes import cli, drop_database, fresh_database, write_mix
from verify_vs_parse import sample


def backend_cpu(pid: int) -> float | None:
    """utime + stime of a local backend in seconds, or None where the server is not on this machine."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def seal_copy(admin: str, template: str, profile: str | None) -> tuple[int, float, float | None, float]:
    """(revisions, sealer CPU s, backend CPU s, wall s) for sealing a fresh copy of ``template``."""
    from qldb_migrate.live.sealer import next_limit, seal_once

    name = f"qm_sealcopy_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    dsn = make_conninfo(admin, dbname=name)
    try:
        with psycopg.connect(dsn) as conn:
            strand = conn.execute("SELECT strand_id FROM qldb.ledger WHERE state = 'live'").fetchone()[0]
            pid = conn.info.backend_pid
            conn.rollback()
            profiler = cProfile.Profile() if profile else None
            cpu0, back0, wall0 = time.process_time(), backend_cpu(pid), time.perf_counter()
            if profiler:
                profiler.enable()
            revisions, stats = 0, None
            while True:
                stats = seal_once(conn, strand, next_limit(stats))  # as `seal` does
                revisions += stats.revisions
                if stats.blocks == 0:
                    break
            if profiler:
                profiler.disable()
                profiler.dump_stats(profile)
            cpu, back, wall = time.process_time() - cpu0, backend_cpu(pid), time.perf_counter() - wall0
        return revisions, cpu, None if back is None or back0 is None else back - back0, wall
    finally:
        drop_database(admin, dsn)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--template", help="reuse this database as the backlog (made by an earlier --keep)")
    parser.add_argument("--keep", action="store_true", help="keep the backlog database and print its name")
    parser.add_argument("--reference", action="store_true", help="seal with the Python path only")
    parser.add_argument("--profile", help="write a cProfile of the last run here")
    parser.add_argument("--dsn", default=os.environ.get("QLDB_MIGRATE_DSN",
                                                        "postgresql://postgres@127.0.0.1:5432/postgres"))
    args = parser.parse_args()
    if args.reference:
        from qldb_migrate.live import sealer

        sealer.FAST_PATH = False
    template = args.template
    if template is None:
        dsn = fresh_database(args.dsn)
        cli("migrate", sample(2000, 3), "--dsn", dsn, "--no-check")
        cli("cutover", "--dsn", dsn)
        with psycopg.connect(dsn, autocommit=True) as conn:
            seed = [r[0] for r in conn.execute("SELECT document_id FROM ledger.accounts LIMIT 64")]
        write_mix(dsn, "ledger.accounts", args.writers, args.seconds, seed)
        template = conninfo_to_dict(dsn)["dbname"]
    try:
        for run in range(args.runs):
            revisions, cpu, back, wall = seal_copy(args.dsn, template, args.profile if run == args.runs - 1 else None)
            per = 1e6 / max(revisions, 1)
            backend = "n/a" if back is None else f"{back * per:.0f}"
            print(f"run {run}: {revisions} revisions; sealer_cpu_us_per_rev={cpu * per:.0f} "
                  f"backend_cpu_us_per_rev={backend} wall_us_per_rev={wall * per:.0f} "
                  f"({revisions / wall:,.0f} rev/s)", flush=True)
    finally:
        if args.keep or args.template:
            print(f"backlog database: {template}")
        else:
            drop_database(args.dsn, make_conninfo(args.dsn, dbname=template))


if __name__ == "__main__":
    main()
