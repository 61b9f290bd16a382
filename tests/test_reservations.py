"""What cannot be re-hashed is a reservation, recorded and said — never VERIFIED, never an error on a real ledger.

Unexplained redactions, JSON data, a QLDB table name reused after a drop: documented paths that must land and
check clean, saying what could not be re-hashed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import psycopg
from qldb_migrate.ionwrite import dumps_text
from qldb_migrate.verify.ionhash import ion_hash
from qldb_migrate.verify.ionparse import loads

from tests.conftest import run_cli
from tests.ledgers import doc, revision, write_export


def _older_export(export: Path, dest: Path) -> Path:
    """The first of the sample's two exports alone (it ends before the redaction blocks of the second)."""
    dest.mkdir()
    manifests = sorted(export.glob("*.completed.manifest"), key=lambda p: json.loads(p.read_text())["keys"][0])
    export_id = manifests[0].name.split(".")[0]
    for path in export.glob(f"{export_id}.*"):
        shutil.copy(path, dest / path.name)
    for key in json.loads(manifests[0].read_text())["keys"]:
        rel = key.split("vehicle-registration/", 1)[1]
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(export / rel, dest / rel)
    return dest


def _redacted_later(export: Path) -> list[tuple[str, int, int]]:
    """(document id, version, block) of every revision a redactionInfo in the full export names."""
    named = []
    for path in export.rglob("*.ion"):
        for line in path.read_text().splitlines():
            block = loads(line)
            if "redactionInfo" in block:
                info = block["redactionInfo"]
                named.append((str(info["documentId"]), int(info["version"]), int(info["blockAddress"]["sequenceNo"])))
    return named


def _deliver_redacted(export: Path, document_id: str, version: int) -> None:
    """The revision as an export taken after its redaction shows it: dataHash in place of data."""
    for path in export.rglob("*.ion"):
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            block = loads(line)
            for rev in block.get("revisions", []):
                meta = rev.get("metadata", None)
                if meta is not None and str(meta["id"]) == document_id and int(meta["version"]) == version \
                        and "data" in rev:
                    rev["dataHash"] = loads("{{" + __import__("base64").b64encode(ion_hash(rev["data"])).decode()
                                            + "}}")
                    del rev["data"]
                    lines[i] = dumps_text(block)
                    path.write_text("\n".join(lines) + "\n")
                    return
    raise AssertionError("revision not found")


def test_unexplained_redaction_is_a_reservation_and_a_later_export_clears_it(sample_factory, tmp_path: Path,
                                                                             pg_dsn: str) -> None:
    export = sample_factory(tmp_path, revisions=600, exports=2, seed=23)
    older = _older_export(export, tmp_path / "older")
    stored_blocks = {int(p.name.split(".")[1].split("-")[0]) for p in older.rglob("*.ion")}
    doc_id, version, _seq = next(r for r in _redacted_later(export) if r[2] >= min(stored_blocks))
    _deliver_redacted(older, doc_id, version)
    report = tmp_path / "v.json"
    proc = run_cli("verify", older, "--report", report)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(report.read_text())
    assert "unverifiable" in data["states"] and data["revisions"]["notRehashed"]["unexplainedRedaction"] == 1
    assert "unexplained-redaction" in {f["code"] for f in data["findings"]}
    assert run_cli("verify", older, "--strict").returncode == 1
    assert run_cli("verify", older, "--strict", "--allow-unverifiable").returncode == 0
    refused = run_cli("migrate", older, "--dsn", pg_dsn)
    assert refused.returncode == 1 and "REFUSED" in refused.stderr and "--allow-unverifiable" in refused.stderr
    assert run_cli("migrate", older, "--dsn", pg_dsn, "--allow-unverifiable").returncode == 0
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT document_id, version, kind FROM qldb.reservation").fetchall() == [
            (doc_id, version, "unexplained-redaction")]
    check = run_cli("check", "--dsn", pg_dsn, "--source", older)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "VERIFIED WITH RESERVATIONS" in check.stdout and "redactionInfo" in check.stdout
    assert run_cli("check", "--dsn", pg_dsn, "--source", older, "--strict").returncode == 1
    # the later export holds the redaction: the reservation is cleared, the check clean
    assert run_cli("migrate", export, "--dsn", pg_dsn).returncode == 0
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM qldb.reservation").fetchone()[0] == 0
    final = run_cli("check", "--dsn", pg_dsn, "--digest", export / "digests" / "vehicle-registration-digest.ion.txt",
                    "--strict")
    assert final.returncode == 0, final.stdout + final.stderr
    assert "check: VERIFIED:" in final.stdout


def test_json_export_with_allow_unverifiable_lands_and_checks_clean(sample_factory, tmp_path: Path,
                                                                    pg_dsn: str) -> None:
    """Before: the run committed, then its post-load check reported hundreds of findings and every later check
    exited 1."""
    export = sample_factory(tmp_path, revisions=400, fmt="json", exports=1, seed=41)
    digest = export / "digests" / "vehicle-registration-digest.ion.txt"
    proc = run_cli("migrate", export, "--dsn", pg_dsn, "--digest", digest, "--allow-unverifiable",
                   "--report", tmp_path / "m.json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "LOADED" in proc.stdout and "post-load check: VERIFIED WITH RESERVATIONS" in proc.stdout
    assert "through JSON" in proc.stdout and "could not be re-hashed" in proc.stdout
    report = json.loads((tmp_path / "m.json").read_text())
    json_count = report["verification"]["revisions"]["notRehashed"]["json"]
    assert json_count > 0 and report["check"]["findings"] and not any(
        f["severity"] == "error" for f in report["check"]["findings"])
    later = run_cli("check", "--dsn", pg_dsn, "--digest", digest)
    assert later.returncode == 0, later.stdout + later.stderr
    assert f"{json_count} revisions whose data came through JSON" in later.stdout
    assert run_cli("check", "--dsn", pg_dsn, "--digest", digest, "--strict").returncode == 1


def test_a_table_name_reused_after_a_drop_keeps_both_tables_apart(tmp_path: Path, pg_dsn: str) -> None:
    """Before: the run committed, then its check failed ("person_history holds 29 rows; the recorded runs loaded
    12"), because run counts were keyed by the table's name."""
    old, new = "OldPersonTableId00001", "NewPersonTableId00002"
    blocks = [
        ([("CREATE TABLE Person", [])], []),
        ([("INSERT INTO Person ?", [doc(name="a")])], [revision("docA", 0, doc(name="a"), "Person", old, 2)]),
        ([("UPDATE Person ...", [])], [revision("docA", 1, doc(name="a2"), "Person", old, 3)]),
        ([("DROP TABLE Person", [])], []),
        ([("CREATE TABLE Person", [])], []),
        ([("INSERT INTO Person ?", [doc(name="b")])], [revision("docB", 0, doc(name="b"), "Person", new, 6),
                                                       revision("docC", 0, doc(name="c"), "Person", new, 6)]),
    ]
    digest = write_export(tmp_path / "reuse", "ReuseStrand0000000001", blocks)
    proc = run_cli("migrate", tmp_path / "reuse", "--dsn", pg_dsn, "--digest", digest)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "post-load check: VERIFIED" in proc.stdout
    assert old in proc.stdout and new in proc.stdout  # two rows in the summary, one per table id
    with psycopg.connect(pg_dsn) as conn:
        tables = conn.execute("SELECT table_id, history_name FROM qldb.ledger_table ORDER BY 2").fetchall()
        counts = {tid: conn.execute(f'SELECT count(*) FROM ledger."{h}"').fetchone()[0] for tid, h in tables}
    assert counts == {old: 2, new: 2}
    assert run_cli("check", "--dsn", pg_dsn, "--digest", digest).returncode == 0
