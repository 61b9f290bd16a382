"""Resumable ``migrate`` (issue 17 §1): killed runs resume from their staged objects, still publish all or nothing.

Real PostgreSQL, real processes, ``kill -9``; no mocks.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import fresh_database, run_cli
from tests.interrupt import run_until
from tests.test_migrate import _snapshot


@pytest.fixture(autouse=True)
def stage_key(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """One signing key for every run of a test (as on one machine), never the user's own."""
    path = tmp_path_factory.getbasetemp() / "stage-signing-key"
    monkeypatch.setenv("QLDB_MIGRATE_STAGE_KEY", str(path))
    return path


def _count(dsn: str, query: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query).fetchone()[0]


def _staged(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        if conn.execute("SELECT to_regclass('qldb.stage_object')").fetchone()[0] is None:
            return 0
        return conn.execute("SELECT count(*) FROM qldb.stage_object").fetchone()[0]


def _nothing_published(dsn: str) -> None:
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM qldb.block").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM qldb.ledger_table").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM qldb.migration_run WHERE verdict = 'loaded'").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                            "WHERE n.nspname = 'ledger'").fetchone()[0] == 0


def _migrate(dsn: str, export: Path, report: Path, *extra: object) -> tuple[subprocess.CompletedProcess[str],
                                                                            dict[str, Any]]:
    proc = run_cli("migrate", export, "--dsn", dsn, "--report", report, *extra)
    return proc, json.loads(report.read_text())


def test_kill_9_at_half_then_rerun_resumes_and_equals_an_uninterrupted_run(sample_factory, tmp_path: Path,
                                                                           pg_dsn: str, pg_admin: str) -> None:
    export = sample_factory(tmp_path, revisions=3000, exports=2, seed=71)
    cmd = [sys.executable, "-m", "qldb_migrate", "migrate", str(export), "--dsn", pg_dsn, "--no-check",
           "--workers", "1"]  # one object in flight at a time
    objects = len(list(export.rglob("*.ion")))
    seen = [0]

    def half_staged() -> bool:
        seen[0] = _staged(pg_dsn)
        return seen[0] * 2 >= objects

    returncode = run_until(cmd, half_staged)
    if returncode == 0:
        pytest.skip("the run finished before the kill")
    assert returncode == -signal.SIGKILL
    staged_at_kill = seen[0]
    staged = _staged(pg_dsn)
    assert objects > staged >= staged_at_kill >= objects // 2 > 0
    _nothing_published(pg_dsn)  # readers see nothing of the killed run, whatever it had staged

    resumed, report = _migrate(pg_dsn, export, tmp_path / "resumed.json", "--no-check")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    r = report["resumed"]
    assert (r["objects"], r["stagedBefore"], r["reused"], r["changed"]) == (objects, staged, staged, 0)
    assert r["redone"] == objects - staged  # at most the objects not staged when it died
    assert "resumed: " in resumed.stdout and report["published"] is True
    assert _staged(pg_dsn) == 0  # the stage went with the publish

    with fresh_database(pg_admin) as reference:
        straight, straight_report = _migrate(reference, export, tmp_path / "straight.json", "--no-check")
        assert straight.returncode == 0, straight.stdout + straight.stderr
        assert straight_report["resumed"]["reused"] == 0
        assert _snapshot(pg_dsn) == _snapshot(reference)
    assert run_cli("check", "--dsn", pg_dsn).returncode == 0


def _forge(export: Path, index: int) -> Path:
    """Alter one block of the ``index``-th data object (its transactionId and a revision's txId)."""
    from qldb_migrate.ionwrite import dumps_text
    from qldb_migrate.verify.ionparse import loads

    target = sorted(export.rglob("*.ion"))[index]
    lines = target.read_text().splitlines()
    block = loads(lines[1])
    block["transactionId"] = "forged"
    rev = next((r for r in block.get("revisions", []) if "data" in r and "metadata" in r), None)
    if rev is not None:
        rev["metadata"]["txId"] = "forged-too"
    lines[1] = dumps_text(block)
    target.write_text("\n".join(lines) + "\n")
    return target


def test_changed_objects_are_redone_never_trusted_and_restart_forgets(sample_factory, tmp_path: Path,
                                                                      pg_dsn: str) -> None:
    export = sample_factory(tmp_path, revisions=1500, exports=2, seed=72)
    objects = len(list(export.rglob("*.ion")))
    pristine = tmp_path / "pristine"
    shutil.copytree(export, pristine)
    # A digest that does not match: every object verifies (and is staged), the run fails as a whole.
    good = json.loads(next((export / "digests").glob("digest-tip-*.json")).read_text())
    wrong = tmp_path / "wrong-digest.json"
    wrong.write_text(json.dumps({**good, "Digest": "A" * 43 + "="}))

    failed, report = _migrate(pg_dsn, export, tmp_path / "1.json", "--digest", wrong)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert report["resumed"]["redone"] == objects and _staged(pg_dsn) == objects
    _nothing_published(pg_dsn)

    # Between runs: one object's bytes change in the source, another's staged result in the database.
    forged = _forge(export, 1)
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("UPDATE qldb.stage_object SET result = result || '\\x00'::bytea WHERE object_key = "
                     "(SELECT object_key FROM qldb.stage_object ORDER BY object_key DESC LIMIT 1)")
    caught, report = _migrate(pg_dsn, export, tmp_path / "2.json")
    assert caught.returncode == 1, caught.stdout + caught.stderr
    r = report["resumed"]
    assert (r["reused"], r["redone"], r["changed"], r["rejected"]) == (objects - 2, 2, 1, 1), r
    assert "nothing was published" in caught.stderr and "Traceback" not in caught.stderr
    _nothing_published(pg_dsn)
    with psycopg.connect(pg_dsn) as conn:  # the forged object's stale result is gone; the other re-staged
        keys = {k for (k,) in conn.execute("SELECT object_key FROM qldb.stage_object")}
    assert len(keys) == objects - 1 and not any(forged.name in k for k in keys)

    # --restart forgets every staged object (the digest is still wrong: it stages them all again) ...
    shutil.copy2(pristine / forged.relative_to(export), forged)
    restarted, report = _migrate(pg_dsn, export, tmp_path / "3.json", "--digest", wrong, "--restart")
    assert restarted.returncode == 1
    r = report["resumed"]
    assert (r["restarted"], r["stagedBefore"], r["reused"], r["redone"]) == (True, 0, 0, objects), r
    # ... and a run with nothing wrong replays them all, publishes, passes its post-load check, clears the stage.
    done, report = _migrate(pg_dsn, export, tmp_path / "4.json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (report["resumed"]["reused"], report["resumed"]["redone"]) == (objects, 0)
    assert report["check"] is not None and report["published"] is True
    assert _staged(pg_dsn) == 0
    assert _count(pg_dsn, "SELECT count(*) FROM qldb.block") == report["blocks"]
