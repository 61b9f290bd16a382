"""What a Dask cluster run costs, per object and per block, for the README's scale-out estimate.

    dask scheduler --host 127.0.0.1 --port 8786 --no-dashboard &
    dask worker tcp://127.0.0.1:8786 --nthreads 1 --nworkers 2 --no-dashboard &
    python bench/dask_costs.py --scheduler tcp://127.0.0.1:8786 [--revisions 20000] [--seed 1] \\
        [--dsn postgresql://…|embedded:DIR]

On the pinned sample export (``bench/out``, as the other benchmarks), for
``verify`` (re-hash only) and ``migrate`` (re-hash and encode the COPY rows):

* per object, locally: ``check_object`` in this process, wall and CPU seconds;
* per object, on the cluster: the same task through ``DaskExecutor``, its
  compute seconds as the worker measured them (CPU and wall), and the whole
  map's wall time;
* bytes per result: the pickled ``ObjectResult`` that comes back; and the
  client's cost to fetch and unpickle one, once every task has finished;
* ``migrate`` end to end on the cluster, twice each way, side by side: rows
  forwarded by the client (the local path) and rows COPYed into the target by
  the workers (``workerload``) → ``worker_load_client_cpu_ratio`` (client CPU,
  workers / client) and ``worker_load_wall_ratio``;
* the client's sequential part: ``verify_source`` and ``migrate_source``
  replayed over results computed beforehand (nothing left to wait for), so
  what is timed is discovery, the chain join, the digest roots and, for
  migrate, the sink and COPY into PostgreSQL; then the post-load ``check``.

Prints ``name=value`` lines, then the estimate for 10^9 revisions on 8, 64 and
256 workers (``--target-revisions``, ``--workers-list``).
"""

from __future__ import annotations

import argparse
import gc
import os
import pickle
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from verify_vs_parse import sample


def timed_check(spec: Any, obj: Any, with_rows: bool) -> tuple[Any, float, float]:
    """On a worker (shipped by value: this is ``__main__``): the task, with its own wall and CPU seconds."""
    from qldb_migrate.verifier import check_object

    wall, cpu = time.perf_counter(), time.thread_time()
    result = check_object(spec, obj, with_rows)
    return result, time.perf_counter() - wall, time.thread_time() - cpu


class Replay:
    """An executor that hands back results computed beforehand: what remains is the client's own work."""

    def __init__(self, blobs: list[bytes]) -> None:
        self.results = [pickle.loads(b) for b in blobs]  # unpickled before the clock starts

    def map_ordered(self, fn: Callable[..., Any], items: Iterable[tuple[Any, ...]], window: int | None = None
                    ) -> Iterator[Any]:
        for _args, result in zip(items, self.results, strict=True):
            yield result

    def close(self) -> None:
        return None


def cluster_migrate(executor: Any, spec: Any, export: Path, admin_dsn: str, workers_load: bool
                    ) -> tuple[float, float, int]:
    """One ``migrate`` on the cluster into a fresh database: (wall s, this process's CPU s, revisions)."""
    import psycopg
    from psycopg.conninfo import make_conninfo
    from qldb_migrate.optouts import OptOuts
    from qldb_migrate.pg.loader import MigrateOptions, migrate_source
    from qldb_migrate.pg.staging import Stage
    from qldb_migrate.pg.target import Target, connect, upgrade_schema
    from qldb_migrate.pg.workerload import WorkerLoad, cluster_load

    name = f"qm_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    target = Target(make_conninfo(admin_dsn, dbname=name), name)
    try:
        upgrade_schema(target)
        load = None
        if workers_load:
            load, how = cluster_load(executor, WorkerLoad(target.conninfo, "ledger"))
            assert load is not None, how
        conn, stage_conn = connect(target), connect(target)
        start, cpu = time.perf_counter(), time.process_time()
        migrated = migrate_source(conn, spec, [], MigrateOptions(opt_outs=OptOuts(unanchored=True)), str(export),
                                  executor=executor, stage=Stage(stage_conn, "ledger", load))
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        assert migrated.committed
        conn.close()
        stage_conn.close()
        return wall, cpu, migrated.verify.revisions
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scheduler", required=True)
    parser.add_argument("--revisions", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dsn", default=os.environ.get("QLDB_MIGRATE_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"),
                        help="superuser DSN (a database is created and dropped), or embedded:DIR")
    parser.add_argument("--target-revisions", type=float, default=1e9)
    parser.add_argument("--workers-list", default="8,64,256")
    args = parser.parse_args()

    import psycopg
    from psycopg.conninfo import make_conninfo
    from qldb_migrate.dask_executor import DaskExecutor
    from qldb_migrate.exports import discover
    from qldb_migrate.optouts import OptOuts
    from qldb_migrate.pg.checker import run_check
    from qldb_migrate.pg.loader import MigrateOptions, migrate_source
    from qldb_migrate.pg.target import Target, connect, upgrade_schema
    from qldb_migrate.sources import SourceSpec
    from qldb_migrate.verifier import check_object, verify_source

    if args.dsn.startswith("embedded:"):  # a private embedded PostgreSQL 18, stopped when this process exits
        from qldb_migrate.pg.target import embedded

        args.dsn = embedded(Path(args.dsn.split(":", 1)[1])).conninfo
    export = sample(args.revisions, args.seed)
    from qldb_migrate.executor import ProcessExecutor

    local_pool = ProcessExecutor(2)  # forked now, before the Dask client starts its threads
    spec = SourceSpec(str(export))
    plan = discover(spec.open())
    objects = plan.objects
    out: dict[str, float] = {}

    # --- local, in this process, tuned as a local worker is (executor._worker_setup) -----------------------
    gc.freeze()
    gc.set_threshold(70_000, 10, 10)
    blobs: dict[str, list[bytes]] = {}
    blocks = revisions = 0
    for mode, with_rows in (("verify", False), ("migrate", True)):
        walls, cpus, sizes, results = [], [], [], []
        for obj in objects:
            wall, cpu = time.perf_counter(), time.process_time()
            result = check_object(spec, obj, with_rows)
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
            blob = pickle.dumps(result, protocol=5)
            sizes.append(len(blob))
            results.append(blob)
            if mode == "verify":
                blocks += len(result.blocks)
                revisions += sum(len(b.statuses) for b in result.blocks)
        blobs[mode] = results
        start = time.process_time()
        for blob in results:
            pickle.loads(blob)
        out[f"{mode}_unpickle_cpu_s_per_object"] = (time.process_time() - start) / len(results)
        out[f"{mode}_local_s_per_object"] = statistics.mean(walls)
        out[f"{mode}_local_cpu_s_per_object"] = statistics.mean(cpus)
        out[f"{mode}_result_bytes_per_object"] = statistics.mean(sizes)
    n = len(objects)
    out["objects"], out["blocks"], out["revisions_all"] = n, blocks, revisions

    # --- the cluster ----------------------------------------------------------------------------------------
    executor = DaskExecutor(args.scheduler)
    executor.check_workers(spec)
    out["cluster_worker_threads"] = executor.workers
    client = executor.client
    for mode, with_rows in (("verify", False), ("migrate", True)):
        start = time.perf_counter()
        timed = list(executor.map_ordered(timed_check, ((spec, obj, with_rows) for obj in objects)))
        out[f"{mode}_cluster_map_wall_s"] = time.perf_counter() - start
        out[f"{mode}_cluster_s_per_object"] = statistics.mean(t[1] for t in timed)
        out[f"{mode}_cluster_cpu_s_per_object"] = statistics.mean(t[2] for t in timed)
        assert [pickle.dumps(t[0].findings) for t in timed] == [pickle.dumps(pickle.loads(b).findings)
                                                                for b in blobs[mode]]
        # fetch cost alone: every task done first, then each result fetched and unpickled by the client
        futures = [client.submit(check_object, spec, obj, with_rows, pure=False) for obj in objects]
        while not all(f.done() for f in futures):
            time.sleep(0.05)
        start = time.perf_counter()
        for future in futures:
            future.result()
        out[f"{mode}_client_fetch_s_per_object"] = (time.perf_counter() - start) / n
        del futures
    start = time.perf_counter()
    end_to_end = verify_source(spec, [], executor=executor)
    out["verify_end_to_end_cluster_s"] = time.perf_counter() - start
    assert not end_to_end.errors
    # the same run on local worker processes (as many as the cluster has worker threads here), side by side
    start = time.perf_counter()
    locally = verify_source(spec, [], executor=local_pool)
    out["verify_end_to_end_local_s"] = time.perf_counter() - start
    local_pool.close()
    assert (locally.revisions, dict(locally.statuses), locally.last_sequence) == \
        (end_to_end.revisions, dict(end_to_end.statuses), end_to_end.last_sequence)
    out["dask_vs_local_verify"] = out["verify_end_to_end_local_s"] / out["verify_end_to_end_cluster_s"]
    # migrate end to end on the cluster: rows forwarded by this client, against rows COPYed by the workers
    for how in ("client", "workers", "client", "workers"):
        wall, cpu, revs = cluster_migrate(executor, spec, export, args.dsn, how == "workers")
        out[f"cluster_migrate_{how}_wall_s"] = min(wall, out.get(f"cluster_migrate_{how}_wall_s", wall))
        out[f"cluster_migrate_{how}_client_cpu_s"] = min(cpu, out.get(f"cluster_migrate_{how}_client_cpu_s", cpu))
        out["cluster_migrate_revisions"] = revs
    out["worker_load_client_cpu_ratio"] = (out["cluster_migrate_workers_client_cpu_s"]
                                           / out["cluster_migrate_client_client_cpu_s"])
    out["worker_load_wall_ratio"] = out["cluster_migrate_client_wall_s"] / out["cluster_migrate_workers_wall_s"]
    local_map = {}
    for mode, with_rows in (("verify", False), ("migrate", True)):
        start = time.perf_counter()
        for obj in objects:
            check_object(spec, obj, with_rows)
        local_map[mode] = time.perf_counter() - start
    executor.close()

    # --- the client's sequential part -----------------------------------------------------------------------
    digests: list[Any] = []
    replay = Replay(blobs["verify"])
    start, cpu = time.perf_counter(), time.process_time()
    verified = verify_source(spec, digests, executor=replay)
    out["verify_client_s"] = time.perf_counter() - start
    out["verify_client_cpu_s"] = time.process_time() - cpu
    assert not verified.errors, [f.describe() for f in verified.errors[:3]]
    user_revisions = verified.revisions
    out["user_revisions"] = user_revisions

    name = f"qm_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    target = Target(make_conninfo(args.dsn, dbname=name), name)
    try:
        upgrade_schema(target)
        replay = Replay(blobs["migrate"])
        conn = connect(target)
        start, cpu = time.perf_counter(), time.process_time()
        migrated = migrate_source(conn, spec, [], MigrateOptions(opt_outs=OptOuts(unanchored=True)),
                                  str(export), executor=replay)
        out["migrate_client_s"] = time.perf_counter() - start
        out["migrate_client_cpu_s"] = time.process_time() - cpu
        assert migrated.committed, ([f.describe() for f in migrated.verify.errors[:3]], migrated.refused_states,
                                   [f.describe() for f in migrated.findings[:3]])
        conn.close()
        with psycopg.connect(target.conninfo) as conn:
            start, cpu = time.perf_counter(), time.process_time()
            checked = run_check(conn, [])
            out["check_s"] = time.perf_counter() - start
            out["check_client_cpu_s"] = time.process_time() - cpu
            assert not checked.errors
            history_rows = checked.rows
    finally:
        with psycopg.connect(args.dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    for key, value in out.items():
        print(f"{key}={value:.6g}" if isinstance(value, float) else f"{key}={value}")
    print(f"verify_local_map_wall_s={local_map['verify']:.3f}")
    print(f"migrate_local_map_wall_s={local_map['migrate']:.3f}")

    # --- per unit ------------------------------------------------------------------------------------------
    us = 1e6 / user_revisions
    per_rev: dict[str, float] = {}
    for mode in ("verify", "migrate"):
        per_rev[f"{mode}_worker_cpu_us"] = out[f"{mode}_cluster_cpu_s_per_object"] * n * us
        per_rev[f"{mode}_worker_wall_us"] = out[f"{mode}_cluster_s_per_object"] * n * us
        per_rev[f"{mode}_local_cpu_us"] = out[f"{mode}_local_cpu_s_per_object"] * n * us
        per_rev[f"{mode}_fetch_wall_us"] = out[f"{mode}_client_fetch_s_per_object"] * n * us
        per_rev[f"{mode}_unpickle_cpu_us"] = out[f"{mode}_unpickle_cpu_s_per_object"] * n * us
        per_rev[f"{mode}_result_bytes"] = out[f"{mode}_result_bytes_per_object"] * n / user_revisions
        per_rev[f"{mode}_client_wall_us"] = out[f"{mode}_client_s"] * us
        per_rev[f"{mode}_client_cpu_us"] = out[f"{mode}_client_cpu_s"] * us
    per_rev["check_wall_us"] = out["check_s"] * us
    revs = out["cluster_migrate_revisions"]
    per_rev["migrate_workers_load_client_cpu_us"] = out["cluster_migrate_workers_client_cpu_s"] * 1e6 / revs
    per_rev["migrate_client_load_client_cpu_us"] = out["cluster_migrate_client_client_cpu_s"] * 1e6 / revs
    per_rev["check_client_cpu_us"] = out["check_client_cpu_s"] * us
    for key, value in per_rev.items():
        print(f"per_revision_{key}={value:.2f}")
    print(f"blocks_per_user_revision={blocks / user_revisions:.3f}")
    print(f"revisions_per_object={user_revisions / n:.0f}")
    print(f"history_rows={history_rows}")
    print(f"client_migrate_revisions_per_s={user_revisions / out['migrate_client_s']:.0f}")
    print(f"check_revisions_per_s={user_revisions / out['check_s']:.0f}")

    # --- the estimate --------------------------------------------------------------------------------------
    # Workers: one task per core, CPU-bound: the worker CPU per revision (wall on an idle core; this machine's
    # wall figures include other processes). Client: sequential, its own wall per revision (the sink, COPY,
    # chain) plus unpickling each result; fetch latency overlaps it (prefetch).
    total = args.target_revisions
    print(f"# estimate for {total:.0e} revisions, hours")
    for workers in (int(w) for w in args.workers_list.split(",")):
        for mode in ("verify", "migrate"):
            parallel = per_rev[f"{mode}_worker_cpu_us"] * 1e-6 * total / workers
            serial = (per_rev[f"{mode}_client_wall_us"] + per_rev[f"{mode}_unpickle_cpu_us"]) * 1e-6 * total
            wall = max(parallel, serial)
            line = (f"{mode}_N{workers}: workers {parallel / 3600:.1f} h, client {serial / 3600:.1f} h "
                    f"-> {wall / 3600:.1f} h ({'client' if serial > parallel else 'workers'}-bound)")
            if mode == "migrate":
                line += f"; then post-load check {per_rev['check_wall_us'] * 1e-6 * total / 3600:.1f} h (serial)"
            print(line)
        # rows COPYed by the workers: the client keeps its CPU per revision (chain, results, publish statements);
        # the database ingests at its own rate R, not measurable here (it shares this machine's two cores)
        client = per_rev["migrate_workers_load_client_cpu_us"] * 1e-6 * total
        parallel = per_rev["migrate_worker_cpu_us"] * 1e-6 * total / workers
        print(f"migrate_workers_load_N{workers}: workers {parallel / 3600:.1f} h, client CPU {client / 3600:.1f} h "
              f"-> {max(parallel, client) / 3600:.1f} h or 10^9/R of the database (rows staged, then INSERT ... "
              "SELECT), whichever is longer")


if __name__ == "__main__":
    main()
