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


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_migrate_says_so_and_publishes_nothing(sig: int, sample_factory, tmp_path: Path,
                                                          pg_dsn: str) -> None:
    export = sample_factory(tmp_path, revisions=3000, exports=1, seed=62)
    proc = subprocess.Popen([sys.executable, "-m", "qldb_migrate", "migrate", str(export), "--dsn", pg_dsn],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:  # wait until the run is loading
        for _ in range(200):
            if conn.execute("SELECT to_regclass('qldb.migration_run')").fetchone()[0] and conn.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").fetchone()[0]:
                break
            time.sleep(0.05)
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
    with psycopg.connect(pg_admin, autocommit=True) as admin:
        for _ in range(300):
            killed = admin.execute(
                "SELECT count(pg_terminate_backend(l.pid)) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                "WHERE l.locktype = 'advisory' AND a.datname = %s", (dbname,)).fetchone()[0]
            if killed or proc.poll() is not None:
                break
            time.sleep(0.05)
    out, err = proc.communicate(timeout=120)
    if not killed:
        pytest.skip("the run finished before its session could be terminated")
    assert proc.returncode == 3, out + err
    assert "lost the connection" in err and "nothing from this run was published" in err
    assert "Traceback" not in err
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM qldb.block").fetchone()[0] == 0
    assert run_cli("migrate", export, "--dsn", pg_dsn).returncode == 0
