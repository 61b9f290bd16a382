"""``--dask-scheduler``: the per-object work on a real Dask cluster (a scheduler and two workers on 127.0.0.1).

Every comparison is against the same command run locally: the cluster must
change where the work runs, never what it finds or loads.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

distributed = pytest.importorskip("distributed")  # the [test] extra installs it; CI runs these

from tests.conftest import S3_ENV, fresh_database, run_cli, upload  # noqa: E402
from tests.interrupt import run_until  # noqa: E402
from tests.test_migrate import _digest, _proven_snapshot  # noqa: E402

pytestmark = pytest.mark.timeout(240)  # a hung cluster run fails the test instead of stalling the suite

DASK = str(Path(sys.executable).parent / "dask")
VOLATILE = {"startedAt", "seconds", "revisionsPerSecond", "rowsPerSecond", "runId", "target"}


@dataclass
class Cluster:
    address: str
    client: Any
    scheduler: subprocess.Popen
    nannies: list[subprocess.Popen] = field(default_factory=list)

    def ready(self, workers: int = 2, timeout: float = 90) -> None:
        """Wait until ``workers`` workers are connected (a killed one comes back through its nanny)."""
        self.client.wait_for_workers(workers, timeout=timeout)

    def worker_pids(self) -> dict[str, int]:
        return self.client.run(os.getpid)

    def processing(self) -> dict[str, int]:
        """Tasks each worker is running or has queued now, by worker address."""
        return self.client.run_on_scheduler(
            lambda dask_scheduler: {a: len(ws.processing) for a, ws in dask_scheduler.workers.items()})


def _stop(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@contextlib.contextmanager
def dask_cluster(base: Path, workers: int = 2) -> Iterator[Cluster]:
    """``dask scheduler`` and ``workers`` ``dask worker`` (one process, one thread each) on 127.0.0.1, free ports.

    The workers get S3 credentials in their environment (as an EC2 role or
    a pod's service account would give them) and nothing else from the tests.
    Should pytest itself be killed (its hard timeout skips teardown), the
    scheduler closes after two idle minutes and the workers a little after it.
    """
    base.mkdir(parents=True, exist_ok=True)
    scheduler_file = base / "scheduler.json"
    env = {**os.environ, **S3_ENV}
    env.pop("QLDB_MIGRATE_DASK_SCHEDULER", None)
    logs = []

    def start(args: list[str], name: str) -> subprocess.Popen:
        log = open(base / f"{name}.log", "wb")  # noqa: SIM115 (closed at teardown)
        logs.append(log)
        return subprocess.Popen([DASK, *args], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=base,
                                start_new_session=True)

    scheduler = start(["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--idle-timeout", "120s",
                       "--scheduler-file", str(scheduler_file)], "scheduler")
    nannies: list[subprocess.Popen] = []
    client = None
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() or not scheduler_file.read_text().strip():
            assert scheduler.poll() is None, (base / "scheduler.log").read_text()
            assert time.monotonic() < deadline, "the Dask scheduler did not start"
            time.sleep(0.1)
        address = json.loads(scheduler_file.read_text())["address"]
        for i in range(workers):
            nannies.append(start(["worker", address, "--nthreads", "1", "--nworkers", "1", "--no-dashboard",
                                  "--death-timeout", "30s", "--host", "127.0.0.1", "--name", f"w{i}",
                                  "--local-directory", str(base / f"w{i}")], f"worker{i}"))
        client = distributed.Client(address, set_as_default=False, timeout=30)
        found = Cluster(address, client, scheduler, nannies)
        found.ready(workers)
        yield found
    finally:
        if client is not None:
            with contextlib.suppress(Exception):
                client.close(timeout=10)
        for proc in [*nannies, scheduler]:
            _stop(proc)
        for log in logs:
            log.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The cluster most tests share: a scheduler and two workers."""
    with dask_cluster(tmp_path_factory.mktemp("dask")) as found:
        yield found


@pytest.fixture(scope="session")
def sample(tmp_path_factory: pytest.TempPathFactory):
    """Like ``sample_factory``, with objects of 20 blocks: many tasks from small ledgers, as real exports have."""
    import shutil
    from unittest import mock

    from qldb_migrate.sample import export as sample_export

    cache: dict[tuple[int, str, int, int], Path] = {}

    def make(tmp: Path, revisions: int, fmt: str = "ion_text", exports: int = 2, seed: int = 5) -> Path:
        key = (revisions, fmt, exports, seed)
        if key not in cache:
            path = tmp_path_factory.mktemp(f"dask-sample-{fmt}-{seed}") / "export"
            with mock.patch.object(sample_export, "BLOCKS_PER_OBJECT", 20):
                sample_export.write_sample_export(path, revisions, fmt, exports, seed)
            cache[key] = path
        copy = tmp / f"export-{fmt}-{exports}-{seed}"
        shutil.copytree(cache[key], copy)
        return copy

    return make


def _comparable(report: Any) -> Any:
    """A JSON report without what differs from run to run (times, rates, run ids, the target's name)."""
    if isinstance(report, dict):
        return {k: _comparable(v) for k, v in report.items() if k not in VOLATILE}
    if isinstance(report, list):
        return [_comparable(v) for v in report]
    if isinstance(report, str):
        return re.sub(r"[\d,.-]+ (rows|revisions)/s", "RATE", report)
    return report


def _report(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def _tamper(export: Path) -> None:
    """A forged transactionId (in no hash) whose revisions' txId then disagree: a content error (exit 1)."""
    from qldb_migrate.ionwrite import dumps_text
    from qldb_migrate.verify.ionparse import loads

    last = sorted(export.rglob("*.ion"), key=lambda p: int(p.name.split(".")[1].split("-")[0]))[-1]
    lines = last.read_text().splitlines()
    block = loads(lines[-3])
    block["transactionId"] = "forged"
    rev = next((r for r in block.get("revisions", []) if "data" in r and "metadata" in r), None)
    if rev is not None:
        rev["metadata"]["txId"] = "forged-too"
    lines[-3] = dumps_text(block)
    last.write_text("\n".join(lines) + "\n")


# --- (a) verify -----------------------------------------------------------------------------------------------


def test_verify_on_the_cluster_reports_exactly_what_a_local_run_reports(
    cluster: Cluster, sample, tmp_path: Path
) -> None:
    cluster.ready()
    export = sample(tmp_path, revisions=500, exports=2, seed=61)  # ION_BINARY: the migrate tests
    local = run_cli("verify", export, "--digest", _digest(export), "--workers", "2", "--report", tmp_path / "l.json")
    remote = run_cli("verify", export, "--digest", _digest(export), "--dask-scheduler", cluster.address,
                     "--report", tmp_path / "d.json")
    assert local.returncode == 0, local.stdout + local.stderr
    assert remote.returncode == 0, remote.stdout + remote.stderr
    a, b = _report(tmp_path / "l.json"), _report(tmp_path / "d.json")
    assert a["verdict"] == "verified" and len(a["objects"]) > 4  # several objects, spread over both workers
    assert all(o["sha256"] for o in b["objects"])
    assert _comparable(a) == _comparable(b)
    assert remote.stdout.splitlines()[-1] == local.stdout.splitlines()[-1]  # the verdict line (no time in it)


def test_verify_from_s3_on_the_cluster_uses_the_workers_own_credentials(
    cluster: Cluster, sample, tmp_path: Path, s3_server: str, s3_env
) -> None:
    cluster.ready()
    export = sample(tmp_path, revisions=400, exports=2, seed=62)
    upload(s3_server, export, "dask-bucket", "exports/")
    url = "s3://dask-bucket/exports/"
    common = ("verify", url, "--endpoint-url", s3_server, "--digest", _digest(export))
    local = run_cli(*common, "--workers", "2", "--report", tmp_path / "l.json")
    remote = run_cli(*common, "--report", tmp_path / "d.json", env={"QLDB_MIGRATE_DASK_SCHEDULER": cluster.address})
    assert local.returncode == 0, local.stdout + local.stderr
    assert remote.returncode == 0, remote.stdout + remote.stderr
    assert _comparable(_report(tmp_path / "l.json")) == _comparable(_report(tmp_path / "d.json"))


# --- (b) migrate ----------------------------------------------------------------------------------------------


def test_migrate_on_the_cluster_loads_the_rows_a_local_run_loads(
    cluster: Cluster, sample, tmp_path: Path, pg_admin: str
) -> None:
    cluster.ready()
    export = sample(tmp_path, revisions=500, fmt="ion_binary", exports=2, seed=63)
    snapshots, reports = [], []
    for where in (("--workers", "2"), ("--dask-scheduler", cluster.address)):
        with fresh_database(pg_admin) as dsn:
            report = tmp_path / f"{where[0]}.json"
            proc = run_cli("migrate", export, "--dsn", dsn, "--digest", _digest(export), *where, "--report", report)
            assert proc.returncode == 0, proc.stdout + proc.stderr
            assert "post-load check: VERIFIED" in proc.stdout
            # on the cluster the workers COPY the rows into the target themselves; locally this process does
            assert ("COPYed into the target by the cluster's 2 workers" in proc.stdout) == (where[0] != "--workers")
            snapshots.append(_proven_snapshot(dsn))
            reports.append(_report(report))
            assert _stage_rows(dsn) == (0, 0)  # the staged rows went with the publish
    assert snapshots[0] == snapshots[1]
    assert sum(len(rows) for rows in snapshots[0].values()) > 500
    local, remote = (_comparable(r) for r in reports)
    assert remote["check"]["verdict"] == "verified"
    assert local == remote


def _stage_rows(dsn: str) -> tuple[int, int]:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT (SELECT count(*) FROM qldb.stage_block), (SELECT count(*) FROM "
                            "qldb.stage_history)").fetchone()


def test_a_cluster_migrate_killed_at_half_resumes_on_the_cluster(
    cluster: Cluster, sample, tmp_path: Path, pg_admin: str
) -> None:
    """``kill -9`` of the client mid-run: what the workers staged (rows and results) is reused, nothing was
    published, and the resumed run's tables equal an uninterrupted local run's."""
    from tests.test_resume import _nothing_published, _staged

    cluster.ready()
    export = sample(tmp_path, revisions=3000, fmt="ion_binary", exports=2, seed=67)
    objects = len(list(export.rglob("*.ion")))
    with fresh_database(pg_admin) as dsn:
        base = [sys.executable, "-m", "qldb_migrate", "migrate", str(export), "--dsn", dsn, "--no-check",
                "--dask-scheduler", cluster.address]
        returncode = run_until(base, lambda: _staged(dsn) * 2 >= objects)
        if returncode == 0:
            pytest.skip("the run finished before the kill")
        assert returncode == -signal.SIGKILL
        staged = _staged(dsn)
        assert objects > staged >= objects // 2 > 0
        blocks, history = _stage_rows(dsn)
        assert blocks > 0 and history > 0  # the workers' own COPYs, committed before the client died
        _nothing_published(dsn)
        # a straggler: a task of the killed run that commits other rows for the same objects afterwards (the
        # object changed meanwhile, say); the resumed run must publish the rows its own results name, not these
        with psycopg.connect(dsn, autocommit=True) as conn:
            cols = [r[0] for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = 'qldb' AND "
                "table_name = 'stage_history' AND column_name NOT IN ('token', 'data') ORDER BY ordinal_position")]
            listed = ", ".join(cols)
            conn.execute(f"INSERT INTO qldb.stage_history ({listed}, token, data) SELECT {listed}, 'straggler', "
                         "'{\"forged\": true}' FROM qldb.stage_history")

        report = tmp_path / "resumed.json"
        resumed = run_cli(*base[3:], "--report", report)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert "COPYed into the target by the cluster's 2 workers" in resumed.stdout
        r = _report(report)["resumed"]
        assert (r["objects"], r["stagedBefore"], r["reused"], r["changed"]) == (objects, staged, staged, 0)
        assert r["redone"] == objects - staged
        assert _staged(dsn) == 0 and _stage_rows(dsn) == (0, 0)
        with fresh_database(pg_admin) as reference:
            straight = run_cli("migrate", export, "--dsn", reference, "--no-check", "--workers", "2")
            assert straight.returncode == 0, straight.stdout + straight.stderr
            assert _proven_snapshot(dsn) == _proven_snapshot(reference)
        assert run_cli("check", "--dsn", dsn).returncode == 0


SWAP_TWO_ROWS = """UPDATE qldb.stage_history h
    SET index_in_block = CASE WHEN h.index_in_block = p.lo THEN p.hi ELSE p.lo END
    FROM (SELECT table_id, block_sequence, min(index_in_block) lo, max(index_in_block) hi FROM qldb.stage_history
          WHERE object_key = %(key)s GROUP BY 1, 2 HAVING count(*) >= 2 ORDER BY 2 LIMIT 1) p
    WHERE h.object_key = %(key)s AND h.table_id = p.table_id AND h.block_sequence = p.block_sequence
      AND h.index_in_block IN (p.lo, p.hi)"""

STAGE_EDITS = {  # what someone with write access to the target might do to the stage between staging and publish
    "a history row removed": (
        "DELETE FROM qldb.stage_history WHERE ctid = (SELECT min(ctid) FROM qldb.stage_history "
        "WHERE object_key = %(key)s)"),
    "a block's time changed (in no hash)": (
        "UPDATE qldb.stage_block SET block_timestamp = '2030-01-01Z', block_timestamp_ion = '2030-01-01T00:00:00.000Z' "
        "WHERE sequence_no = (SELECT max(sequence_no) FROM qldb.stage_block WHERE object_key = %(key)s)"),
    "a block's source_object changed (in no hash)": (
        "UPDATE qldb.stage_block SET source_object = 'forged' WHERE sequence_no = (SELECT min(sequence_no) FROM "
        "qldb.stage_block WHERE object_key = %(key)s)"),
    "two revisions of a block swapped": SWAP_TWO_ROWS,
    "a jsonb document changed": (
        "UPDATE qldb.stage_history SET data = jsonb_set(data, '{forged}', 'true') WHERE ctid = (SELECT min(ctid) "
        "FROM qldb.stage_history WHERE object_key = %(key)s AND data IS NOT NULL)"),
}


def test_staged_rows_changed_before_the_publish_are_never_published(
    cluster: Cluster, sample, tmp_path: Path, pg_admin: str
) -> None:
    """Rows the workers staged, changed in the database before the publish (here: between a failed run and its
    reruns; each kind of change on an object of its own), even where no hash covers them: each rerun publishes
    nothing and names the first changed object (exit 1, one line), whose next run verifies it again; once all
    are redone, the run publishes exactly an uninterrupted local run's rows."""
    from tests.test_resume import _nothing_published

    cluster.ready()
    export = sample(tmp_path, revisions=800, fmt="ion_binary", exports=1, seed=68)
    good = _digest(export)
    bad = tmp_path / "wrong-digest.ion.txt"
    bad.write_text(re.sub(r'digest: "[^"]+"', 'digest: "' + "A" * 43 + '="', good.read_text()))
    with fresh_database(pg_admin) as dsn:
        base = ("migrate", export, "--dsn", dsn, "--dask-scheduler", cluster.address, "--digest")
        failed = run_cli(*base, bad)  # every object staged, then the digest does not match
        assert failed.returncode == 1, failed.stdout + failed.stderr
        with psycopg.connect(dsn, autocommit=True) as conn:
            keys = [k for (k,) in conn.execute("SELECT DISTINCT object_key FROM qldb.stage_block ORDER BY 1")]
            assert len(keys) >= len(STAGE_EDITS)
            for (edit, statement), key in zip(STAGE_EDITS.items(), keys, strict=False):
                assert conn.execute(statement, {"key": key}).rowcount > 0, edit
        named = []
        for _ in STAGE_EDITS:
            again = run_cli(*base, good)
            assert again.returncode == 1, again.stdout + again.stderr
            assert "differ now from what it staged and verified" in again.stderr, again.stderr
            assert "nothing from this run was published" in again.stderr, again.stderr
            assert again.stderr.count("\n") == 1, again.stderr
            named.append(next(k for k in keys if again.stderr.startswith(f"error: {k}:")))
            _nothing_published(dsn)
        assert sorted(named) == sorted(keys[:len(STAGE_EDITS)])  # each changed object caught, once
        last = run_cli(*base, good, "--report", tmp_path / "last.json")
        assert last.returncode == 0, last.stdout + last.stderr
        assert _report(tmp_path / "last.json")["resumed"]["redone"] == 1  # the last object caught
        with fresh_database(pg_admin) as reference:
            local = run_cli("migrate", export, "--dsn", reference, "--digest", good, "--workers", "2", "--no-check")
            assert local.returncode == 0, local.stdout + local.stderr
            assert _proven_snapshot(dsn) == _proven_snapshot(reference)


# --- (c) tampered ---------------------------------------------------------------------------------------------


def test_a_tampered_export_fails_on_the_cluster_as_it_fails_locally(
    cluster: Cluster, sample, tmp_path: Path, embedded_admin: str
) -> None:
    cluster.ready()
    export = sample(tmp_path, revisions=500, exports=1, seed=64)
    _tamper(export)
    local = run_cli("verify", export, "--workers", "2", "--report", tmp_path / "l.json")
    remote = run_cli("verify", export, "--dask-scheduler", cluster.address, "--report", tmp_path / "d.json")
    assert local.returncode == remote.returncode == 1, local.stderr + remote.stderr
    a, b = _report(tmp_path / "l.json"), _report(tmp_path / "d.json")
    assert a["verdict"] == "failed" and a["findings"]
    assert _comparable(a) == _comparable(b)
    with fresh_database(embedded_admin) as dsn:
        migrated = run_cli("migrate", export, "--dsn", dsn, "--dask-scheduler", cluster.address)
        assert migrated.returncode == 1, migrated.stdout + migrated.stderr
        assert "nothing was published" in migrated.stderr
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT count(*) FROM qldb.block").fetchone()[0] == 0
            assert conn.execute("SELECT verdict FROM qldb.migration_run").fetchall() == [("failed",)]


# --- (e) check --source ---------------------------------------------------------------------------------------


def test_check_source_on_the_cluster_equals_the_local_check(
    cluster: Cluster, sample, tmp_path: Path, embedded_admin: str
) -> None:
    cluster.ready()
    export = sample(tmp_path, revisions=500, exports=2, seed=65)
    with fresh_database(embedded_admin) as dsn:
        assert run_cli("migrate", export, "--dsn", dsn, "--digest", _digest(export), "--no-check").returncode == 0
        local = run_cli("check", "--dsn", dsn, "--source", export, "--workers", "2", "--report", tmp_path / "l.json")
        remote = run_cli("check", "--dsn", dsn, "--source", export, "--dask-scheduler", cluster.address,
                         "--report", tmp_path / "d.json")
    assert local.returncode == remote.returncode == 0, local.stdout + local.stderr + remote.stdout + remote.stderr
    a, b = _report(tmp_path / "l.json"), _report(tmp_path / "d.json")
    assert a["verdict"] == "verified" and "re-hashed" in a["detail"]
    assert _comparable(a) == _comparable(b)


# --- (d) a worker killed mid-run ------------------------------------------------------------------------------


@pytest.mark.parametrize("allowed_failures", [None, 0], ids=["dask-default", "no-retry"])
def test_a_worker_killed_mid_migrate_is_retried_or_the_run_fails_cleanly(
    cluster: Cluster, sample, tmp_path: Path, embedded_admin: str, allowed_failures: int | None
) -> None:
    """SIGKILL of a worker process while it holds tasks of a ``migrate``.

    With Dask's default (a task may outlive 3 dead workers) its tasks are
    rerun on the other worker.  Either outcome is acceptable there, and the
    one that happened is asserted exactly: the run succeeds and loads exactly
    what a local run loads, or it fails with one clear line (exit 3) and
    publishes nothing.  With ``allowed-failures`` 0 the scheduler gives up at
    the first death: that must be the clean failure.  Never a hang (the
    module's timeout), never a traceback.
    """
    cluster.ready()
    export = sample(tmp_path, revisions=1200, fmt="ion_binary", exports=1, seed=66)
    if allowed_failures is not None:
        before = cluster.client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.allowed_failures)
        _set_allowed_failures(cluster, allowed_failures)
    try:
        pids = cluster.worker_pids()
        with fresh_database(embedded_admin) as dsn:
            run = subprocess.Popen(
                [sys.executable, "-m", "qldb_migrate", "migrate", str(export), "--dsn", dsn, "--digest",
                 _digest(export), "--dask-scheduler", cluster.address],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            killed = None
            deadline = time.monotonic() + 120
            while killed is None and run.poll() is None and time.monotonic() < deadline:
                busy = [address for address, n in cluster.processing().items() if n]
                if busy:
                    killed = pids[busy[0]]
                    os.kill(killed, signal.SIGKILL)
                else:
                    time.sleep(0.02)
            stdout, stderr = run.communicate(timeout=180)
            assert killed is not None, "the run ended before any task ran: nothing was killed"
            print(f"worker pid {killed} killed mid-run; the run exited {run.returncode}", stderr)  # pytest -s
            assert "Traceback" not in stderr, stderr
            if allowed_failures == 0:
                assert run.returncode == 3, stdout + stderr
            if run.returncode == 0:
                assert "post-load check: VERIFIED" in stdout
                got = _proven_snapshot(dsn)
            else:  # Dask gave up: one line, exit 3, nothing published
                assert run.returncode == 3, stdout + stderr
                assert stderr.count("\n") == 1, stderr
                assert "died while running it" in stderr, stderr
                assert "nothing from this run was published" in stderr, stderr
                with psycopg.connect(dsn) as conn:
                    assert conn.execute("SELECT count(*) FROM qldb.block").fetchone()[0] == 0
                    assert conn.execute("SELECT count(*) FROM qldb.migration_run").fetchone()[0] == 0
                return
        with fresh_database(embedded_admin) as reference:
            proc = run_cli("migrate", export, "--dsn", reference, "--digest", _digest(export), "--workers", "2",
                           "--no-check")
            assert proc.returncode == 0, proc.stdout + proc.stderr
            assert got == _proven_snapshot(reference)
    finally:
        if allowed_failures is not None:
            _set_allowed_failures(cluster, before)
        cluster.ready()  # the nanny brings the killed worker back for the tests after this one


def _set_allowed_failures(cluster: Cluster, n: int) -> None:
    """The scheduler's ``distributed.scheduler.allowed-failures``, changed in place (a lambda: pickled by value)."""
    cluster.client.run_on_scheduler(lambda dask_scheduler: setattr(dask_scheduler, "allowed_failures", n))


def test_ctrl_c_on_a_cluster_run_stops_at_once_and_leaves_no_task_behind(cluster: Cluster, sample,
                                                                        tmp_path: Path) -> None:
    cluster.ready()
    export = sample(tmp_path, revisions=1200, fmt="ion_binary", exports=1, seed=66)
    run = subprocess.Popen([sys.executable, "-m", "qldb_migrate", "verify", str(export), "--dask-scheduler",
                            cluster.address], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while run.poll() is None and not any(cluster.processing().values()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert run.poll() is None, "the run ended before any task ran"
    run.send_signal(signal.SIGINT)
    sent = time.monotonic()
    _stdout, stderr = run.communicate(timeout=60)
    assert run.returncode == 130, stderr
    assert time.monotonic() - sent < 15, "the interrupted run did not stop promptly"
    assert "interrupted" in stderr and "Traceback" not in stderr, stderr
    deadline = time.monotonic() + 30  # the scheduler forgets a departed client's tasks
    while cluster.client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks)) and \
            time.monotonic() < deadline:
        time.sleep(0.1)
    assert cluster.client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks)) == 0


def test_the_scheduler_killed_mid_migrate_fails_cleanly_and_publishes_nothing(
    sample, tmp_path: Path, embedded_admin: str
) -> None:
    """A cluster of its own (its scheduler is killed): exit 3 in one line, no hang, nothing published."""
    export = sample(tmp_path, revisions=1200, fmt="ion_binary", exports=1, seed=66)
    with dask_cluster(tmp_path / "own", workers=1) as own, fresh_database(embedded_admin) as dsn:
        run = subprocess.Popen(
            [sys.executable, "-m", "qldb_migrate", "migrate", str(export), "--dsn", dsn, "--dask-scheduler",
             own.address], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while run.poll() is None and not any(own.processing().values()) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert run.poll() is None, "the run ended before any task ran"
        own.client.close()
        os.killpg(own.scheduler.pid, signal.SIGKILL)
        stdout, stderr = run.communicate(timeout=120)
        assert run.returncode == 3, stdout + stderr
        assert stderr.count("\n") == 1 and "Traceback" not in stderr, stderr
        assert f"lost the Dask cluster at {own.address}" in stderr
        assert "nothing from this run was published" in stderr
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT count(*) FROM qldb.block").fetchone()[0] == 0
            assert conn.execute("SELECT count(*) FROM qldb.migration_run").fetchone()[0] == 0


def test_map_ordered_keeps_plan_order_and_its_in_flight_bound(cluster: Cluster) -> None:
    """Results come back in the items' order whatever order tasks finish in, and no more than ``window``
    tasks are on the cluster at once (a result is released once handed over)."""
    import random

    from qldb_migrate.dask_executor import DaskExecutor

    cluster.ready()
    delays = [random.Random(7).choice((0.0, 0.05, 0.2)) for _ in range(24)]
    executor = DaskExecutor(cluster.address)
    try:
        seen = []
        got = []
        sleep_then = lambda index, delay: (time.sleep(delay), index)[1]  # a lambda travels by value
        for result in executor.map_ordered(sleep_then, ((i, d) for i, d in enumerate(delays)), window=3):
            got.append(result)
            seen.append(cluster.client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks)))
        assert got == list(range(24))
        assert max(seen) <= 3 and max(seen) >= 2, seen  # bounded, and the window was used
    finally:
        executor.close()


def test_a_source_error_raised_on_a_worker_says_so(cluster: Cluster, tmp_path: Path) -> None:
    """A task's own exception comes back as a local run raises it (the CLI maps it to its exit code)."""
    from qldb_migrate.dask_executor import DaskExecutor
    from qldb_migrate.sources import LocalSource, SourceUnreachable

    cluster.ready()
    executor = DaskExecutor(cluster.address)
    try:
        with pytest.raises(SourceUnreachable, match=r"no such directory \(on a Dask worker\)"):
            list(executor.map_ordered(LocalSource, [(tmp_path / "gone",)]))
    finally:
        executor.close()


# --- what the cluster needs, and what is refused --------------------------------------------------------------


def test_usage_errors_exit_2_with_one_line(cluster: Cluster, sample, tmp_path: Path) -> None:
    export = sample(tmp_path, revisions=100, exports=1, seed=67)
    relative = os.path.relpath(export)
    cases = {
        "relative path": (("verify", relative, "--dask-scheduler", cluster.address), "relative path"),
        "with --workers": (("verify", export, "--dask-scheduler", cluster.address, "--workers", "2"), "--workers"),
        "bad address": (("verify", export, "--dask-scheduler", "nonsense://x"), "not a Dask scheduler address"),
        "check without --source": (("check", "--dask-scheduler", cluster.address, "--dsn", "host=127.0.0.1 port=1"),
                                   "goes with --source"),
    }
    for name, (args, said) in cases.items():
        proc = run_cli(*args, timeout=60)
        assert proc.returncode == 2, (name, proc.stdout, proc.stderr)
        assert said in proc.stderr and proc.stderr.count("\n") == 1, (name, proc.stderr)


def test_without_dask_installed_the_option_is_a_usage_error(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['distributed'] = None\n"  # as if the [dask] extra were not installed
            "from qldb_migrate.cli import main\n"
            f"sys.argv = ['qldb-migrate', 'verify', {str(tmp_path)!r}, '--dask-scheduler', 'tcp://127.0.0.1:1']\n"
            "main()\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "pip install 'qldb-migrate[dask]'" in proc.stderr and proc.stderr.count("\n") == 1


def test_an_unreachable_scheduler_is_exit_3_in_one_line(sample, tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    export = sample(tmp_path, revisions=100, exports=1, seed=67)
    started = time.monotonic()
    proc = run_cli("verify", export, "--dask-scheduler", f"tcp://127.0.0.1:{port}",
                   env={"DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "2s"}, timeout=60)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}" in proc.stderr
    assert proc.stderr.count("\n") == 1 and time.monotonic() - started < 30


def test_workers_that_cannot_read_the_source_are_refused_before_any_task(cluster: Cluster, tmp_path: Path) -> None:
    """A path not mounted on the workers: exit 3 naming the worker, before the client reads anything."""
    cluster.ready()
    proc = run_cli("verify", tmp_path / "not-mounted", "--dask-scheduler", cluster.address, timeout=120)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "Dask worker tcp://127.0.0.1:" in proc.stderr and "cannot read the source" in proc.stderr
    assert "no such directory" in proc.stderr and proc.stderr.count("\n") == 1


def test_workers_running_other_code_are_refused(cluster: Cluster, monkeypatch: pytest.MonkeyPatch,
                                                sample, tmp_path: Path) -> None:
    """A worker image built from another commit could judge differently: refused before any task."""
    from qldb_migrate import dask_executor
    from qldb_migrate.sources import SourceSpec

    cluster.ready()
    export = sample(tmp_path, revisions=100, exports=1, seed=67)
    executor = dask_executor.DaskExecutor(cluster.address)
    try:
        assert len(executor.check_workers(SourceSpec(str(export)))) == 2
        monkeypatch.setattr(dask_executor, "code_fingerprint", lambda: "0123456789abcdef")  # this client only
        with pytest.raises(dask_executor.ClusterError, match="runs other qldb-migrate code"):
            executor.check_workers(SourceSpec(str(export)))
    finally:
        executor.close()


def test_a_result_made_by_other_code_is_refused_naming_its_worker(cluster: Cluster, tmp_path: Path) -> None:
    """check_workers asks the workers there are; one that joins later (an adaptive cluster scaling up, a pod
    replaced by another build) is never asked.  So every result carries the code fingerprint of the worker that made
    it, and one made by other code than this client's is refused (ClusterError, exit 3), never joined."""
    from qldb_migrate.dask_executor import ClusterError, DaskExecutor, code_fingerprint
    from qldb_migrate.sources import LocalSource

    cluster.ready()
    executor = DaskExecutor(cluster.address)
    try:
        assert executor.code == code_fingerprint()
        assert list(executor.map_ordered(pow, [(2, 3), (3, 2)])) == [8, 9]  # made by this code: joined
        executor.code = "0123456789abcdef"  # the workers now differ from this client, as a late joiner would
        other = r"Dask worker tcp://127\.0\.0\.1:\d+ runs other qldb-migrate code \(code [0-9a-f]{16}\) than this"
        with pytest.raises(ClusterError, match=r"^item 0[^\n]*: " + other):
            list(executor.map_ordered(pow, [(2, 3)]))
        # a failure made by other code is not that code's word either: a SourceError would be exit 1, "wrong content"
        with pytest.raises(ClusterError, match=r": " + other):
            list(executor.map_ordered(LocalSource, [(tmp_path / "gone",)]))
    finally:
        executor.close()


def test_a_worker_without_qldb_migrate_is_refused(cluster: Cluster, sample, tmp_path: Path) -> None:
    """A third worker that cannot import the package joins; the run is refused naming it, before any task."""
    cluster.ready()
    export = sample(tmp_path, revisions=100, exports=1, seed=67)
    code = ("import sys; sys.modules['qldb_migrate'] = None\n"
            "from distributed.cli.dask_worker import main\n"
            f"sys.argv = ['dask-worker', {cluster.address!r}, '--nthreads', '1', '--no-nanny', '--no-dashboard',\n"
            f"            '--host', '127.0.0.1', '--local-directory', {str(tmp_path / 'bare')!r}]\n"
            "main()\n")
    bare = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        cluster.ready(3)
        proc = run_cli("verify", export, "--dask-scheduler", cluster.address, timeout=120)
        assert proc.returncode == 3, proc.stdout + proc.stderr
        assert "cannot run qldb-migrate" in proc.stderr and "install qldb-migrate" in proc.stderr
    finally:
        _stop(bare)
    deadline = time.monotonic() + 60
    while len(cluster.client.nthreads()) > 2 and time.monotonic() < deadline:
        time.sleep(0.1)
