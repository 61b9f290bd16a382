"""``migrate`` throughput against ``verify``, a row-by-row loader and a bare COPY, side by side.

    python bench/migrate_vs_verify.py [--revisions 200000] [--seed 1] [--dsn postgresql://…] [--sample-rows 50000]
                                      [--rss 20000,200000]

On the pinned sample export (built once in ``bench/out``) and the PostgreSQL
given by ``--dsn`` / ``QLDB_MIGRATE_DSN`` (default: the local server on
127.0.0.1:5432), in one run:

* ``verify_source`` over the export (full verification, a worker per core);
* ``migrate`` into a fresh database (verification + COPY + publish);
* the CPU seconds of both (this process and its workers; and the PostgreSQL
  server's, when it runs on this machine): on two cores shared with the
  server, ``migrate_vs_verify`` cannot exceed what these allow;
* with ``--reference``, ``verify --reference`` (the pure-Python hash, which
  ``verify`` used when the goal ``migrate_vs_verify`` ≥ 0.8 was set) →
  ``migrate_vs_verify_reference``;
* the same history rows, pre-rendered, loaded into an empty copy of the table
  (``--sample-rows`` of them; best of ``--loader-rounds``, interleaved) by ``executemany`` INSERT, by the loader's path
  (encode to COPY tuples as the workers do, then ``copy_tuples``), and by a
  bare COPY of the already-encoded tuples (``vs_raw_copy``'s yardstick).

Then ``check`` over the migrated database as ``qldb-migrate check`` runs it (a
worker per core re-proving the history rows), in a fresh process (its peak RSS
is the main process's).  With ``--rss 20000,200000``, first ``qldb-migrate
migrate`` and ``check`` of the sample at each size, each in a fresh process and
database: their peak RSS (main process, largest worker) and the ratio between
sizes (flat is the goal).  Prints revisions/s and ``migrate_vs_verify``,
``copy_vs_insert``, ``vs_raw_copy``, ``check_vs_verify``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

sys.path.insert(0, str(Path(__file__).resolve().parent))
from verify_vs_parse import sample

CHECK_SCRIPT = r"""
import json, sys, time
import psycopg
def vm_hwm_kib():
    # Peak RSS of this address space. getrusage's ru_maxrss is not: on Linux it keeps the peak of
    # the process this one was forked from across exec (the bench process that built a big sample).
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))

from qldb_migrate.executor import local_executor
from qldb_migrate.pg.checker import run_check
# what `qldb-migrate check` runs: a worker per core re-proving the history rows, started before the connection
executor = local_executor(None)
start = time.perf_counter()
with psycopg.connect(sys.argv[1]) as conn:
    result = run_check(conn, [], executor=executor, conninfo=sys.argv[1])
seconds = time.perf_counter() - start
executor.close()
print(json.dumps({"seconds": seconds, "errors": len(result.errors), "rows": result.rows,
                  "rss_kib": vm_hwm_kib()}))
"""


CLI_RSS_SCRIPT = r"""
import json, resource, sys
from qldb_migrate.cli import main
sys.argv = ["qldb-migrate", *sys.argv[1:]]
try:
    main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
with open("/proc/self/status") as fh:  # this address space's peak (ru_maxrss would keep the bench's own)
    main_kib = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
print(json.dumps({"code": code, "main_kib": main_kib,
                  "worker_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def command_rss(*args: str) -> dict:
    """Peak RSS of one ``qldb-migrate`` command run in a fresh process (main, and its largest worker)."""
    proc = subprocess.run([sys.executable, "-c", CLI_RSS_SCRIPT, *args], capture_output=True, text=True, check=True)
    run = json.loads(proc.stdout.strip().splitlines()[-1])
    assert run["code"] in (0, None), proc.stderr[-2000:]
    return run


def rss_by_size(dsn: str, sizes: list[int], seed: int) -> None:
    """``migrate`` and ``check`` of the sample at each size, each in a fresh process and a fresh database."""
    peaks: dict[str, dict[int, int]] = {"migrate": {}, "check": {}}
    for size in sizes:
        export = sample(size, seed)
        name = f"qm_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        db = make_conninfo(dsn, dbname=name)
        try:
            for command, args in (("migrate", ("migrate", str(export), "--dsn", db, "--no-check",
                                               "--allow-unanchored")),
                                  ("check", ("check", "--dsn", db))):
                run = command_rss(*args)
                peaks[command][size] = run["main_kib"] + run["worker_kib"]
                print(f"{command}_peak_rss_main_mib_{size}={run['main_kib'] / 1024:.0f}")
                print(f"{command}_peak_rss_worker_mib_{size}={run['worker_kib'] / 1024:.0f}")
        finally:
            with psycopg.connect(dsn, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    for command, by_size in peaks.items():
        if len(by_size) >= 2:
            lo, hi = min(by_size), max(by_size)
            print(f"{command}_peak_rss_ratio_{hi}_vs_{lo}={by_size[hi] / by_size[lo]:.2f}")


def cpu_now() -> float:
    """CPU seconds of this process and of its children already waited for (the local workers, once closed)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def server_cpu(conn: psycopg.Connection) -> float | None:
    """CPU seconds the PostgreSQL server has used so far (postmaster, its live children, and the children it has
    reaped: every backend that has exited), when it runs on this machine and /proc may be read; else None."""
    try:
        data_dir = conn.execute("SELECT current_setting('data_directory')").fetchone()[0]
        conn.rollback()
        pid = int(Path(data_dir, "postmaster.pid").read_text().split()[0])
        tick = os.sysconf("SC_CLK_TCK")

        def stat(p: int | str) -> list[str]:
            return Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()

        fields = stat(pid)
        total = sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime stime cutime cstime
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    child = stat(entry)
                except OSError:
                    continue
                if int(child[1]) == pid:  # ppid
                    total += int(child[11]) + int(child[12])
        return total / tick
    except (OSError, ValueError, IndexError, psycopg.Error):
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--revisions", type=int, default=200000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dsn", default=os.environ.get("QLDB_MIGRATE_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--sample-rows", type=int, default=50000)
    parser.add_argument("--loader-rounds", type=int, default=3)
    parser.add_argument("--reference", action="store_true",
                        help="also verify with the pure-Python hash (verify --reference) and compare migrate with it")
    parser.add_argument("--rss", default="", help="comma-separated sizes: peak RSS of migrate and check at each")
    args = parser.parse_args()
    if args.rss:
        rss_by_size(args.dsn, [int(n) for n in args.rss.split(",") if n], args.seed)

    from qldb_migrate.blockstream import StreamDigest, iter_blocks
    from qldb_migrate.executor import local_executor
    from qldb_migrate.exports import discover
    from qldb_migrate.native import prove
    from qldb_migrate.optouts import OptOuts
    from qldb_migrate.pg.copybinary import row_encoder
    from qldb_migrate.pg.loader import MigrateOptions, copy_tuples, migrate_source
    from qldb_migrate.pg.rows import HISTORY_COLUMNS, HISTORY_TYPES, block_rows
    from qldb_migrate.pg.target import Target, connect, upgrade_schema
    from qldb_migrate.sources import SourceSpec
    from qldb_migrate.verifier import verify_source, verify_sources
    from qldb_migrate.verify.block import check_block, document_tables

    export = sample(args.revisions, args.seed)
    spec = SourceSpec(str(export))
    name = f"qm_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    target = Target(make_conninfo(args.dsn, dbname=name), name)
    try:
        start, cpu = time.perf_counter(), cpu_now()
        verified = verify_source(spec, [], None)
        verify_s, verify_cpu = time.perf_counter() - start, cpu_now() - cpu
        revisions = verified.revisions
        if args.reference:  # the pure-Python hash verify used when the migrate_vs_verify goal was set
            start = time.perf_counter()
            verify_sources([spec], [], None, reference=True)
            reference_s = time.perf_counter() - start

        upgrade_schema(target)
        with psycopg.connect(target.conninfo) as probe:
            server_before = server_cpu(probe)
        start, cpu = time.perf_counter(), cpu_now()
        executor = local_executor(None)  # as the command does: workers first, then the connection
        conn = connect(target)
        result = migrate_source(conn, spec, [], MigrateOptions(opt_outs=OptOuts(unanchored=True)), str(export),
                                executor=executor)
        migrate_s = time.perf_counter() - start
        executor.close()
        migrate_cpu = cpu_now() - cpu
        server_after = server_cpu(conn)
        assert result.committed, [f.describe() for f in result.verify.errors[:3]]

        # pre-rendered rows of the first objects, built as the workers build them
        rows = []
        source = spec.open()
        for obj in discover(source).objects:
            for block in iter_blocks(lambda obj=obj: source.open(obj.key), obj.fmt, StreamDigest()):
                check = check_block(block, obj.key, True, prove)
                rows += [h.copy_values() for h in block_rows(block, check, document_tables(block))[1]]
            if len(rows) >= args.sample_rows:
                break
        rows = rows[: args.sample_rows]
        history_table = conn.execute("SELECT pg_schema, history_name FROM qldb.ledger_table LIMIT 1").fetchone()
        source_table = sql.Identifier(*history_table)
        cols = sql.SQL(", ").join(map(sql.Identifier, HISTORY_COLUMNS))

        def fresh(label: str) -> sql.Identifier:
            table = sql.Identifier(history_table[0], f"bench_{label}")
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
            conn.execute(sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING ALL)").format(table, source_table))
            conn.commit()
            return table

        encode = row_encoder(HISTORY_TYPES)
        tuples = [encode(row) for row in rows]
        placeholders = sql.SQL(", ").join(sql.Placeholder() * len(HISTORY_COLUMNS))

        def insert(table: sql.Identifier) -> None:
            with conn.cursor() as cur:
                cur.executemany(sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(table, cols, placeholders), rows)

        def copy(table: sql.Identifier) -> None:  # as the workers and the loader do: encode, then COPY
            copy_tuples(conn, table, HISTORY_COLUMNS, [encode(row) for row in rows])

        def raw(table: sql.Identifier) -> None:  # the already-encoded tuples only
            copy_tuples(conn, table, HISTORY_COLUMNS, tuples)

        # Each loader --loader-rounds times, interleaved, best of each: the server's background writes after
        # one load must not count against the next loader.
        best: dict[str, float] = {}
        for _ in range(args.loader_rounds):
            for label, load in (("insert", insert), ("copy", copy), ("raw", raw)):
                table = fresh(label)
                start = time.perf_counter()
                load(table)
                conn.commit()
                best[label] = min(best.get(label, float("inf")), time.perf_counter() - start)
        insert_s, copy_s, raw_copy_s = best["insert"], best["copy"], best["raw"]
        conn.close()

        migrate_rate = revisions / migrate_s
        raw_copy_rate = len(rows) / raw_copy_s
        print(f"revisions={revisions}")
        print(f"verify_revisions_per_s={revisions / verify_s:.0f}")
        print(f"migrate_revisions_per_s={migrate_rate:.0f}")
        print(f"migrate_vs_verify={verify_s / migrate_s:.2f}")
        # where migrate's extra time goes on a machine whose cores PostgreSQL shares: CPU seconds, side by side
        print(f"verify_cpu_s={verify_cpu:.2f}")
        print(f"migrate_cpu_client_and_workers_s={migrate_cpu:.2f}")
        if server_before is not None and server_after is not None:
            print(f"migrate_cpu_postgres_s={server_after - server_before:.2f}")
            print(f"migrate_cpu_vs_verify_cpu={(migrate_cpu + server_after - server_before) / verify_cpu:.2f}")
        if args.reference:
            print(f"verify_reference_revisions_per_s={revisions / reference_s:.0f}")
            print(f"migrate_vs_verify_reference={reference_s / migrate_s:.2f}")
        print(f"loader_sample_rows={len(rows)}")
        print(f"insert_rows_per_s={len(rows) / insert_s:.0f}")
        print(f"copy_rows_per_s={len(rows) / copy_s:.0f}")
        print(f"raw_copy_rows_per_s={raw_copy_rate:.0f}")
        print(f"copy_vs_insert={insert_s / copy_s:.2f}")
        print(f"vs_raw_copy={migrate_rate / raw_copy_rate:.2f}")
        check = json.loads(subprocess.run([sys.executable, "-c", CHECK_SCRIPT, target.conninfo], check=True,
                                          capture_output=True, text=True).stdout)
        assert check["errors"] == 0
        print(f"check_revisions_per_s={revisions / check['seconds']:.0f}")
        print(f"check_vs_verify={verify_s / check['seconds']:.2f}")
        print(f"check_peak_rss_mib={check['rss_kib'] / 1024:.0f}")
    finally:
        with psycopg.connect(args.dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
