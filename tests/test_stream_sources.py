"""Stream archives as sources of ``verify`` and ``migrate``, alone or joined to exports, through the command line."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import psycopg
import pytest
from qldb_migrate.sample.export import iter_ledger_blocks
from qldb_migrate.sample.stream import write_sample_stream_archive, write_stream_archive

from tests.conftest import run_cli
from tests.test_migrate import _snapshot

REVISIONS, SEED = 600, 44


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from qldb_migrate.sample.export import write_sample_export

    base = tmp_path_factory.mktemp("stream-ledger")
    summary = write_sample_export(base / "export", REVISIONS, "ion_text", 2, SEED)
    write_sample_stream_archive(base / "archive", REVISIONS, SEED)
    return {"export": base / "export", "firehose": base / "archive" / "firehose",
            "get-records": base / "archive" / "get-records", "digest": summary.digests[-1], "base": base}


def _copy(src: Path, tmp: Path) -> Path:
    dest = tmp / src.name
    shutil.copytree(src, dest)
    return dest


@pytest.mark.parametrize("layout", ["firehose", "get-records"])
def test_a_stream_archive_verifies_like_its_export(layout: str, ledger: dict[str, Path], tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    proc = run_cli("verify", ledger[layout], "--digest", ledger["digest"], "--report", report)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(report.read_text())
    exported = tmp_path / "e.json"
    assert run_cli("verify", ledger["export"], "--digest", ledger["digest"], "--report", exported).returncode == 0
    export = json.loads(exported.read_text())
    assert data["chain"]["blocks"] == export["chain"]["blocks"] and data["chain"]["last"] == export["chain"]["last"]
    assert data["revisions"]["total"] == export["revisions"]["total"] >= REVISIONS
    assert data["verdict"] == "verified" and data["streamArchives"][0]["records"] > 0
    assert all(len(o["sha256"]) == 64 for o in data["streamArchives"][0]["objects"])


def test_a_firehose_archive_migrates_to_the_same_tables_as_its_export(ledger: dict[str, Path], pg_admin: str,
                                                                      tmp_path: Path) -> None:
    from tests.conftest import fresh_database

    snapshots = []
    for source in (ledger["firehose"], ledger["export"]):
        with fresh_database(pg_admin) as dsn:
            proc = run_cli("migrate", source, "--dsn", dsn, "--digest", ledger["digest"])
            assert proc.returncode == 0, proc.stdout + proc.stderr
            assert "post-load check: VERIFIED" in proc.stdout
            snapshot = _snapshot(dsn)
            snapshot["block"] = [row[:-1] for row in snapshot["block"]]  # source_object differs, nothing else
            snapshots.append(snapshot)
    assert snapshots[0] == snapshots[1]


def _archive_from(base: Path, first: int, name: str) -> Path:
    """The stream of blocks ``first``.. (a stream started after the last export)."""
    blocks = (b for b in iter_ledger_blocks(REVISIONS, SEED, as_committed=True)
              if int(b["blockAddress"]["sequenceNo"]) >= first)
    out = base / name
    if not out.exists():
        write_stream_archive(out, blocks, seed=SEED, duplicate_fraction=0.02, reorder_window=20)
    return out


def _first_export(export: Path, dest: Path) -> tuple[Path, int]:
    from tests.test_reservations import _older_export

    older = _older_export(export, dest)
    last = max(int(re.search(r"-(\d+)\.ion$", p.name).group(1)) for p in older.rglob("*.ion"))
    return older, last


def test_an_export_and_a_later_stream_join_into_one_chain(ledger: dict[str, Path], tmp_path: Path,
                                                          pg_dsn: str) -> None:
    older, last = _first_export(ledger["export"], tmp_path / "older")
    archive = _archive_from(ledger["base"], last - 10, f"archive-from-{last - 10}")
    joined = tmp_path / "joined.json"
    proc = run_cli("verify", older, archive, "--digest", ledger["digest"], "--report", joined)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(joined.read_text())
    assert data["chain"]["first"] == 0 and data["chain"]["duplicateBlocks"] >= 11
    assert data["chain"]["anchoredThrough"] == data["chain"]["last"]
    alone = run_cli("verify", archive)
    assert alone.returncode == 0 and "partial" in alone.stdout  # on its own it starts after block 0
    # migrate the export, then the archive: only the new blocks load
    assert run_cli("migrate", older, "--dsn", pg_dsn).returncode == 0
    with psycopg.connect(pg_dsn) as conn:
        before = conn.execute("SELECT count(*) FROM qldb.block").fetchone()[0]
    after_run = run_cli("migrate", archive, "--dsn", pg_dsn, "--digest", ledger["digest"])
    assert after_run.returncode == 0, after_run.stdout + after_run.stderr
    with psycopg.connect(pg_dsn) as conn:
        total = conn.execute("SELECT count(*) FROM qldb.block").fetchone()[0]
    assert total == data["chain"]["last"] + 1
    assert f"published {total - before} new blocks" in after_run.stdout


def _tampered(ledger: dict[str, Path], tmp_path: Path, transform: Any) -> Path:
    out = tmp_path / "tampered"
    write_stream_archive(out, iter_ledger_blocks(REVISIONS, SEED, as_committed=True), seed=SEED, transform=transform)
    return out


def _user_seq() -> int:
    for block in iter_ledger_blocks(REVISIONS, SEED, as_committed=True):
        if int(block["blockAddress"]["sequenceNo"]) > 30 and any("data" in r for r in block.get("revisions", [])):
            return int(block["blockAddress"]["sequenceNo"])
    raise AssertionError


def test_stream_tampers_fail_naming_object_record_and_block(ledger: dict[str, Path], tmp_path: Path) -> None:
    seq = _user_seq()

    def change_value(record: Any) -> Any:
        payload = record["payload"]
        if record["recordType"] == "REVISION_DETAILS" and payload["revision"]["blockAddress"]["sequenceNo"] == seq \
                and "data" in payload["revision"]:
            data = payload["revision"]["data"]
            data[next(iter(data.keys()))] = "tampered"
        return record

    def drop_summary(record: Any) -> Any:
        payload = record["payload"]
        if record["recordType"] == "BLOCK_SUMMARY" and payload["blockAddress"]["sequenceNo"] == seq:
            return None
        return record

    for name, transform, code in (("changed value", change_value, "revision-hash-mismatch"),
                                  ("dropped summary", drop_summary, "stream-summary-missing")):
        out = _tampered(ledger, tmp_path / name.replace(" ", "-"), transform)
        report = tmp_path / f"{name}.json"
        proc = run_cli("verify", out, "--digest", ledger["digest"], "--report", report)
        assert proc.returncode == 1, (name, proc.stdout + proc.stderr)
        findings = json.loads(report.read_text())["findings"]
        bad = next(f for f in findings if f["code"] == code)
        assert "record #" in bad["where"].get("object", "") + bad["message"], bad
        assert f"sequenceNo:{seq}" in proc.stderr or f"blocks {seq}..{seq}" in proc.stderr, proc.stderr
