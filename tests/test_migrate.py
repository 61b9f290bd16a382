"""``qldb-migrate migrate`` against real PostgreSQL (embedded 18, and the server in QLDB_MIGRATE_TEST_DSN)."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from amazon.ion import simpleion
from amazon.ion.equivalence import ion_equals
from qldb_migrate.pg.target import LOCK_KEY
from qldb_migrate.verify.ionhash import ion_hash

from tests.conftest import run_cli


def _digest(export: Path) -> Path:
    return export / "digests" / "vehicle-registration-digest.ion.txt"


def _export_revisions(export: Path) -> dict[tuple[str, int], dict[str, Any]]:
    """Every user revision in the export, read straight with amazon-ion (not through our reader).

    Where exports overlap, a redacted copy wins over one with data (the newer export's form).
    """
    out: dict[tuple[str, int], dict[str, Any]] = {}
    redactions: list[tuple[str, int]] = []
    for path in export.rglob("*.ion"):
        with open(path, "rb") as fh:
            for block in simpleion.load(fh, single_value=False, text_buffer_size_limit=1 << 20):
                tables = {}
                if "transactionInfo" in block:
                    tables = {k: v["tableName"] for k, v in block["transactionInfo"]["documents"].items()}
                for index, rev in enumerate(block.get("revisions", []) if "revisions" in block else []):
                    if "metadata" not in rev:
                        continue
                    key = (str(rev["metadata"]["id"]), int(rev["metadata"]["version"]))
                    seq = int(block["blockAddress"]["sequenceNo"])
                    entry = {
                        "table": tables[key[0]], "hash": bytes(rev["hash"]), "seq": seq,
                        "index": index, "data": rev.get("data"),
                        "redacted": "dataHash" in rev,
                        "data_hash": bytes(rev["dataHash"]) if "dataHash" in rev else (
                            ion_hash(rev["data"]) if "data" in rev else None),
                    }
                    if key not in out or entry["redacted"]:
                        out[key] = entry
                if "redactionInfo" in block:
                    info = block["redactionInfo"]
                    redactions.append((str(info["documentId"]), int(info["version"])))
    for key in redactions:  # a later redaction clears the data whatever an older export held
        out[key]["redacted"] = True
        out[key]["data"] = None
    return out


def _history(dsn: str) -> dict[tuple[str, int], tuple]:
    rows = {}
    with psycopg.connect(dsn) as conn:
        for table, schema, history in conn.execute(
            "SELECT table_name, pg_schema, history_name FROM qldb.ledger_table"
        ).fetchall():
            for row in conn.execute(
                f'SELECT document_id, version, data_ion, revision_hash, data_hash, operation, redacted, '
                f'block_sequence, index_in_block, data::text FROM "{schema}"."{history}"'
            ):
                rows[(row[0], row[1])] = (table, *row[2:])
    return rows


def _snapshot(dsn: str) -> dict[str, list]:
    """Every published row (run ids aside), for comparing two databases."""
    out = {}
    with psycopg.connect(dsn) as conn:
        out["block"] = conn.execute(
            "SELECT strand_id, sequence_no, block_hash, previous_block_hash, revision_hashes, source_object "
            "FROM qldb.block ORDER BY 1, 2").fetchall()
        for schema, current, history in conn.execute(
            "SELECT pg_schema, current_name, history_name FROM qldb.ledger_table ORDER BY 2"
        ).fetchall():
            out[history] = conn.execute(f'SELECT * FROM "{schema}"."{history}" ORDER BY 1, 2').fetchall()
            out[current] = conn.execute(f'SELECT * FROM "{schema}"."{current}" ORDER BY 1').fetchall()
    return out


def test_history_and_current_match_the_export(sample_factory, tmp_path: Path, pg_dsn: str) -> None:
    export = sample_factory(tmp_path, revisions=600, exports=2, seed=21)
    proc = run_cli("migrate", export, "--dsn", pg_dsn, "--digest", _digest(export), "--report", tmp_path / "m.json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "LOADED" in proc.stdout and "post-load check" in proc.stdout
    expected = _export_revisions(export)
    history = _history(pg_dsn)
    assert set(history) == set(expected)
    ops = {"insert": 0, "update": 0, "delete": 0}
    redacted = 0
    for key, exp in expected.items():
        table, data_ion, rev_hash, data_hash, op, is_redacted, seq, index, data_json = history[key]
        assert table == exp["table"]
        assert bytes(rev_hash) == exp["hash"], key
        assert (seq, index) == (exp["seq"], exp["index"])
        assert is_redacted == exp["redacted"]
        ops[op] += 1
        if exp["redacted"]:
            redacted += 1
            assert data_ion is None and data_json is None and bytes(data_hash) == exp["data_hash"]
        elif exp["data"] is None:
            assert op == "delete" and data_ion is None
        else:
            assert ion_equals(simpleion.loads(bytes(data_ion)), exp["data"]), key
            assert bytes(data_hash) == exp["data_hash"]
    assert all(ops.values()) and redacted > 0  # inserts, updates, deletes and redactions all present
    # current tables: the latest non-deleted revision of each document
    latest: dict[str, tuple[int, Any]] = {}
    for (doc, version), exp in expected.items():
        if doc not in latest or version > latest[doc][0]:
            latest[doc] = (version, exp)
    live = {doc: v for doc, (v, exp) in latest.items() if exp["data"] is not None or exp["redacted"]}
    with psycopg.connect(pg_dsn) as conn:
        current = {}
        for schema, name in conn.execute("SELECT pg_schema, current_name FROM qldb.ledger_table"):
            current.update(dict(conn.execute(f'SELECT document_id, version FROM "{schema}"."{name}"').fetchall()))
        run = conn.execute("SELECT verdict, opt_outs FROM qldb.migration_run").fetchall()
    assert current == live
    assert run == [("loaded", [])]
    report = json.loads((tmp_path / "m.json").read_text())
    assert report["published"] is True and report["newBlocks"] > 0


def test_second_run_changes_nothing_and_says_so(sample_factory, tmp_path: Path, pg_dsn: str) -> None:
    export = sample_factory(tmp_path, revisions=300, exports=2, seed=22)
    assert run_cli("migrate", export, "--dsn", pg_dsn).returncode == 0
    before = _snapshot(pg_dsn)
    proc = run_cli("migrate", export, "--dsn", pg_dsn)
    assert proc.returncode == 0, proc.stderr
    assert "UNCHANGED" in proc.stdout
    assert _snapshot(pg_dsn) == before
    # a digest given now, for blocks already stored, is still a claim to prove: a wrong one fails the run
    wrong = tmp_path / "wrong-digest.ion.txt"
    wrong.write_text(re.sub(r'digest: "[^"]+"', 'digest: "' + "A" * 43 + '="', _digest(export).read_text()))
    proc = run_cli("migrate", export, "--dsn", pg_dsn, "--digest", wrong)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"digest {wrong} does not match" in proc.stderr and "(stored)" in proc.stderr, proc.stderr
    assert _snapshot(pg_dsn) == before
    assert run_cli("migrate", export, "--dsn", pg_dsn, "--digest", _digest(export)).returncode == 0


def test_later_export_adds_only_new_blocks_and_its_redactions_clear_old_data(
    sample_factory, tmp_path: Path, pg_dsn: str
) -> None:
    export = sample_factory(tmp_path, revisions=600, exports=2, seed=23)
    older = tmp_path / "older"
    older.mkdir()
    manifests = sorted(export.glob("*.completed.manifest"), key=lambda p: json.loads(p.read_text())["keys"][0])
    first = manifests[0]
    export_id = first.name.split(".")[0]
    for path in export.glob(f"{export_id}.*"):
        shutil.copy(path, older / path.name)
    for key in json.loads(first.read_text())["keys"]:
        rel = key.split("vehicle-registration/", 1)[1]
        (older / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(export / rel, older / rel)
    assert run_cli("migrate", older, "--dsn", pg_dsn).returncode == 0
    expected = _export_revisions(export)
    redacted_keys = [k for k, v in expected.items() if v["redacted"]]
    loaded_before = _history(pg_dsn)
    with_data = [k for k in redacted_keys if k in loaded_before and loaded_before[k][1] is not None]
    assert with_data, "the older export should hold data a later redaction removes"
    proc = run_cli("migrate", export, "--dsn", pg_dsn)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    after = _history(pg_dsn)
    for key in with_data:
        assert after[key][1] is None and after[key][5] is True and after[key][8] is None  # data_ion, redacted, data
    assert set(after) == set(expected)


def test_tampered_export_fails_and_publishes_nothing(sample_factory, tmp_path: Path, pg_dsn: str) -> None:
    from qldb_migrate.ionwrite import dumps_text
    from qldb_migrate.verify.ionparse import loads

    export = sample_factory(tmp_path, revisions=300, exports=1, seed=24)
    last_object = sorted(export.rglob("*.ion"), key=lambda p: int(p.name.split(".")[1].split("-")[0]))[-1]
    lines = last_object.read_text().splitlines()
    block = loads(lines[-3])
    block["transactionId"] = "forged"  # not hashed, but revisions' txId now disagree
    revisions = block.get("revisions", [])
    rev = next((r for r in revisions if "data" in r and "metadata" in r), None)
    if rev is not None:
        rev["metadata"]["txId"] = "forged-too"
    lines[-3] = dumps_text(block)
    last_object.write_text("\n".join(lines) + "\n")
    proc = run_cli("migrate", export, "--dsn", pg_dsn)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "nothing was published" in proc.stderr
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM qldb.block").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM qldb.ledger_table").fetchone()[0] == 0
        assert conn.execute("SELECT verdict FROM qldb.migration_run").fetchall() == [("failed",)]
        schemas = conn.execute("SELECT 1 FROM information_schema.schemata WHERE schema_name = 'ledger'").fetchall()
        assert schemas == []


def test_unanchored_export_refused_unless_allowed_and_recorded(sample_factory, tmp_path: Path, pg_dsn: str) -> None:
    export = sample_factory(tmp_path, revisions=200, exports=1, seed=25)
    for sidecar in export.glob("*.proofs.json"):
        sidecar.unlink()
    proc = run_cli("migrate", export, "--dsn", pg_dsn)
    assert proc.returncode == 1 and "REFUSED" in proc.stderr and "--allow-unanchored" in proc.stderr
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM qldb.block").fetchone()[0] == 0
    proc = run_cli("migrate", export, "--dsn", pg_dsn, "--allow-unanchored")
    assert proc.returncode == 0, proc.stderr
    with psycopg.connect(pg_dsn) as conn:
        runs = conn.execute("SELECT verdict, opt_outs, states FROM qldb.migration_run ORDER BY run_id").fetchall()
    assert runs == [("refused", [], ["unanchored"]), ("loaded", ["allow-unanchored"], ["unanchored"])]


def test_second_migrate_refuses_while_one_holds_the_lock(sample_factory, tmp_path: Path, pg_dsn: str) -> None:
    export = sample_factory(tmp_path, revisions=100, exports=1, seed=26)
    assert run_cli("migrate", export, "--dsn", pg_dsn).returncode == 0  # schema in place
    with psycopg.connect(pg_dsn, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s, %s)", LOCK_KEY)
        proc = run_cli("migrate", export, "--dsn", pg_dsn)
    assert proc.returncode == 3
    assert "another qldb-migrate run" in proc.stderr


def test_lock_is_taken_before_the_schema_is_created(sample_factory, tmp_path: Path, pg_dsn: str) -> None:
    """Two first runs on an empty database must not race to create the schema: the second refuses at once."""
    export = sample_factory(tmp_path, revisions=100, exports=1, seed=26)
    with psycopg.connect(pg_dsn, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s, %s)", LOCK_KEY)
        proc = run_cli("migrate", export, "--dsn", pg_dsn)
        assert holder.execute("SELECT to_regclass('qldb.block')").fetchone()[0] is None
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "another qldb-migrate run" in proc.stderr and "Traceback" not in proc.stderr
    assert run_cli("migrate", export, "--dsn", pg_dsn).returncode == 0  # the lock released, it runs


@pytest.mark.parametrize("delays", [(0.8, 1.6, 2.6)])
def test_killed_runs_then_rerun_equal_an_uninterrupted_run(
    sample_factory, tmp_path: Path, pg_dsn: str, pg_admin: str, delays: tuple[float, ...]
) -> None:
    export = sample_factory(tmp_path, revisions=1500, exports=2, seed=27)
    cmd = [sys.executable, "-m", "qldb_migrate", "migrate", str(export), "--dsn", pg_dsn, "--no-check"]
    for delay in delays:  # kill at several points of a run (schema creation, COPY, commit)
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(delay)
        if proc.poll() is None:
            import os

            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finished = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    # an uninterrupted run into a second database
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    name = conninfo_to_dict(pg_dsn)["dbname"] + "_ref"
    with psycopg.connect(pg_admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
        conn.execute(f'GRANT CONNECT, CREATE ON DATABASE "{name}" TO qldb_migrator')
    reference = make_conninfo(pg_dsn, dbname=name)
    try:
        assert run_cli("migrate", export, "--dsn", reference, "--no-check").returncode == 0
        assert _snapshot(pg_dsn) == _snapshot(reference)
    finally:
        with psycopg.connect(pg_admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _proven_snapshot(dsn: str) -> dict[str, list]:
    """Every published row and column, each Ion column as the Ion hash of what it holds (the two writers may
    order a struct's fields or symbols differently; the hash is what the ledger commits to)."""
    def ion(value: Any) -> bytes | None:
        return None if value is None else ion_hash(simpleion.loads(bytes(value)))

    out: dict[str, list] = {}
    with psycopg.connect(dsn) as conn:
        out["block"] = [
            (*row[:-2], ion(row[-2]), ion(row[-1])) for row in conn.execute(
                "SELECT strand_id, sequence_no, block_hash, entries_hash, previous_block_hash, entries_hash_list, "
                "revision_hashes, revision_documents, transaction_id, block_timestamp, block_timestamp_ion, "
                "transaction_info::text, source_object, transaction_info_ion, redaction_info_ion "
                "FROM qldb.block ORDER BY 1, 2")
        ]
        for schema, current, history in conn.execute(
            "SELECT pg_schema, current_name, history_name FROM qldb.ledger_table ORDER BY 2"
        ).fetchall():
            out[history] = [
                (*row[:-2], ion(row[-2]), ion(row[-1])) for row in conn.execute(
                    f'SELECT document_id, version, data::text, revision_hash, data_hash, operation, redacted, tx_id, '
                    f'tx_time, tx_time_ion, block_sequence, index_in_block, data_ion, metadata_ion '
                    f'FROM "{schema}"."{history}" ORDER BY 1, 2')
            ]
            out[current] = [
                (*row[:-1], ion(row[-1])) for row in conn.execute(
                    f'SELECT document_id, version, data::text, revision_hash, tx_time, block_sequence, data_ion '
                    f'FROM "{schema}"."{current}" ORDER BY 1')
            ]
    return out


def test_c_accelerated_and_pure_python_runs_land_identical_rows(sample_factory, tmp_path: Path, pg_admin: str) -> None:
    """The C writer/hasher is an accelerator only: with it switched off, the same rows and values land."""
    from tests.conftest import fresh_database

    export = sample_factory(tmp_path, revisions=400, fmt="ion_binary", exports=2, seed=23)
    snapshots = []
    for env in ({}, {"QLDB_MIGRATE_PURE_PYTHON": "1"}):
        with fresh_database(pg_admin) as dsn:
            proc = run_cli("migrate", export, "--dsn", dsn, "--digest", _digest(export), env=env)
            assert proc.returncode == 0, proc.stdout + proc.stderr
            snapshots.append(_proven_snapshot(dsn))
    assert snapshots[0] == snapshots[1]
    assert sum(len(rows) for rows in snapshots[0].values()) > 400
