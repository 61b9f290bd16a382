"""Forgeries that keep every hash valid (a red-team pass found each passing as VERIFIED once).

Each test builds the forgery the way an attacker with write access to the
export or the database would, and shows what the tool now says about it.
"""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import psycopg
import pytest
from qldb_migrate.ionwrite import dumps_text
from qldb_migrate.verify.hashes import MerkleAccumulator, dot, merkle_root
from qldb_migrate.verify.ionhash import ion_hash
from qldb_migrate.verify.ionparse import loads

from tests.conftest import run_cli

DIGEST = Path("digests") / "vehicle-registration-digest.ion.txt"


def _blob(raw: bytes):
    return loads("{{" + base64.b64encode(raw).decode() + "}}")


def _objects(export: Path) -> list[Path]:
    return sorted(export.rglob("*.ion"), key=lambda p: int(p.name.split(".")[1].split("-")[0]))


def _split_into_delete(block) -> None:
    """A block's one revision with data becomes a delete revision H(metadata) and a 'system revision' H(data).

    The two are siblings in the revisions' Merkle tree, so the root, the
    entries hash, the block hash and every digest stay what they were.
    """
    (rev,) = block["revisions"]
    hm, hd = ion_hash(rev["metadata"]), ion_hash(rev["data"])
    assert dot(hm, hd) == bytes(rev["hash"])
    delete = loads(dumps_text(rev))
    del delete["data"]
    delete["hash"] = _blob(hm)
    system = loads("{hash:" + "{{" + base64.b64encode(hd).decode() + "}}}")
    block["revisions"] = [delete, system]


def _single_data_revision(block) -> bool:
    revs = block.get("revisions") if "revisions" in block else None
    return bool(revs) and len(revs) == 1 and "data" in revs[0] and "metadata" in revs[0] \
        and int(revs[0]["metadata"]["version"]) > 0


def _forge_delete(obj: Path, skip: int = 0) -> int:
    lines = obj.read_text().splitlines()
    candidates = [i for i, line in enumerate(lines) if _single_data_revision(loads(line))]
    i = candidates[skip]
    block = loads(lines[i])
    _split_into_delete(block)
    lines[i] = dumps_text(block)
    obj.write_text("\n".join(lines) + "\n")
    return int(block["blockAddress"]["sequenceNo"])


def test_a_revision_with_data_presented_as_a_delete_is_not_called_proven(sample_factory, tmp_path: Path,
                                                                         pg_dsn: str) -> None:
    export = sample_factory(tmp_path, revisions=300, fmt="ion_text", exports=1, seed=5)
    seq = _forge_delete(_objects(export)[0])
    report = tmp_path / "r.json"
    proc = run_cli("verify", export, "--digest", export / DIGEST, "--report", report)
    assert proc.returncode == 0, proc.stdout + proc.stderr  # every hash holds: not "corrupt", but not proven either
    assert "VERIFIED WITH RESERVATIONS" in proc.stdout
    data = json.loads(report.read_text())
    assert data["verdict"] != "verified" and "unverifiable" in data["states"]
    assert data["revisions"]["notRehashed"]["ambiguousDelete"] == 1
    assert f"sequenceNo:{seq}" in proc.stdout + proc.stderr
    assert run_cli("verify", export, "--digest", export / DIGEST, "--strict").returncode == 1
    refused = run_cli("migrate", export, "--dsn", pg_dsn, "--digest", export / DIGEST)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    loaded = run_cli("migrate", export, "--dsn", pg_dsn, "--digest", export / DIGEST, "--allow-unverifiable")
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    checked = run_cli("check", "--dsn", pg_dsn, "--digest", export / DIGEST)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "cannot tell from a revision with data taken apart" in checked.stdout, checked.stdout


def test_a_row_rewritten_as_a_delete_in_the_database_is_caught(sample_factory, tmp_path: Path, pg_dsn: str) -> None:
    export = sample_factory(tmp_path, revisions=300, fmt="ion_text", exports=1, seed=5)
    assert run_cli("migrate", export, "--dsn", pg_dsn, "--digest", export / DIGEST).returncode == 0
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        tables = conn.execute("SELECT history_name, current_name FROM qldb.ledger_table ORDER BY table_name")
        for table, current_name in tables.fetchall():
            row = conn.execute(
                f"SELECT h.document_id, h.version, h.metadata_ion, h.data_hash, b.sequence_no, b.revision_hashes "
                f"FROM ledger.{table} h JOIN qldb.block b ON b.sequence_no = h.block_sequence "
                "WHERE cardinality(b.revision_hashes) = 1 AND h.data_hash IS NOT NULL AND h.version > 0 "
                "ORDER BY b.sequence_no LIMIT 1").fetchone()
            if row:
                current = current_name
                break
        doc, version, meta_ion, data_hash, seq, hashes = row
        hm = ion_hash(loads(bytes(meta_ion)))
        assert dot(hm, bytes(data_hash)) == bytes(hashes[0])
        conn.execute("UPDATE qldb.block SET revision_hashes = %s, revision_documents = %s WHERE sequence_no = %s",
                     ([hm, bytes(data_hash)], [doc, None], seq))
        conn.execute(f"UPDATE ledger.{table} SET revision_hash = %s, data = NULL, data_ion = NULL, data_hash = NULL, "
                     "operation = 'delete' WHERE document_id = %s AND version = %s", (hm, doc, version))
        conn.execute(f"DELETE FROM ledger.{current} WHERE document_id = %s", (doc,))
    proc = run_cli("check", "--dsn", pg_dsn, "--digest", export / DIGEST)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    assert "Merkle sibling is a system revision" in output, output
    assert f"document {doc}" in output
    # the forger records the reservation a run would have: no run that accepted unverifiable revisions made it
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        table_id, run_id = conn.execute(
            "SELECT t.table_id, (SELECT max(run_id) FROM qldb.migration_run) FROM qldb.ledger_table t "
            "WHERE t.history_name = %s", (table,)).fetchone()
        conn.execute("INSERT INTO qldb.reservation (strand_id, table_id, document_id, version, kind, block_sequence, "
                     "run_id) SELECT strand_id, %s, %s, %s, 'ambiguous-delete', %s, %s FROM qldb.ledger",
                     (table_id, doc, version, seq, run_id))
    proc = run_cli("check", "--dsn", pg_dsn, "--digest", export / DIGEST)
    assert proc.returncode == 1 and "was written by hand" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    # ... and rewrites the run's record too: only the export, kept outside, still tells
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("UPDATE qldb.migration_run SET opt_outs = '{allow-unverifiable}'")
    proc = run_cli("check", "--dsn", pg_dsn, "--digest", export / DIGEST)
    assert proc.returncode == 0 and "not proven" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    proc = run_cli("check", "--dsn", pg_dsn, "--source", export)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    assert "stored-revisions-differ-from-source" in output or "re-presented behind valid hashes" in output, output
    assert f"sequenceNo:{seq}" in output


def test_check_source_names_export_blocks_the_database_lacks(sample_factory, tmp_path: Path, pg_dsn: str) -> None:
    export = sample_factory(tmp_path, revisions=300, fmt="ion_text", exports=2, seed=5)
    older = tmp_path / "older"
    shutil.copytree(export, older)
    _drop_last_export(older)
    earliest = min(older.glob("digests/digest-tip-*.json"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
    assert run_cli("migrate", older, "--dsn", pg_dsn, "--digest", earliest).returncode == 0
    proc = run_cli("check", "--dsn", pg_dsn, "--source", export)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    assert "are not in the database" in output and "loaded from an earlier export" in output
    assert output.count("source-blocks-not-stored") <= 2  # one line, not one per block
    assert run_cli("migrate", export, "--dsn", pg_dsn, "--digest", export / DIGEST).returncode == 0
    assert run_cli("check", "--dsn", pg_dsn, "--source", export).returncode == 0


def _drop_last_export(export: Path) -> None:
    """Leave only the first export: its objects, manifests and sidecar (the rest of the ledger 'never existed')."""
    manifests = sorted(export.glob("*.completed.manifest"))
    keep, drop = None, []
    for manifest in manifests:
        keys = loads(manifest.read_text())["keys"]
        starts = [int(str(k).rsplit(".", 2)[-2].split("-")[0]) for k in keys]
        if 0 in starts:
            keep = manifest
        else:
            drop.append((manifest, keys))
    assert keep is not None and drop
    for manifest, keys in drop:
        for key in keys:
            next(export.rglob(Path(str(key)).name)).unlink()
        export_id = manifest.name.split(".")[0]
        for leftover in export.glob(f"{export_id}.*"):
            leftover.unlink()


def test_a_users_digest_beyond_the_exports_is_an_error(sample_factory, tmp_path: Path) -> None:
    export = sample_factory(tmp_path, revisions=300, fmt="ion_text", exports=2, seed=5)
    _drop_last_export(export)
    proc = run_cli("verify", export, "--digest", export / DIGEST)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    assert "digest-beyond-chain" in output or "beyond" in output
    assert "missing from them, or the digest is newer" in output
    # a digest the exports do reach still proves them
    earliest = min(export.glob("digests/digest-tip-*.json"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
    assert run_cli("verify", export, "--digest", earliest).returncode == 0


def test_overlapping_exports_that_disagree_on_a_revision_conflict(sample_factory, tmp_path: Path) -> None:
    export = sample_factory(tmp_path, revisions=300, fmt="ion_text", exports=2, seed=5)
    objects = _objects(export)
    later = objects[-1]
    first_of_later = int(later.name.split(".")[1].split("-")[0])
    earlier_last = max(int(p.name.split(".")[1].split("-")[1]) for p in objects if p != later)
    lines = later.read_text().splitlines()
    overlap = [i for i, line in enumerate(lines[: earlier_last - first_of_later + 1])
               if _single_data_revision(loads(line))]
    if not overlap:
        pytest.skip("no single-revision block in the overlap of this sample")
    block = loads(lines[overlap[0]])
    _split_into_delete(block)
    lines[overlap[0]] = dumps_text(block)
    later.write_text("\n".join(lines) + "\n")
    proc = run_cli("verify", export, "--digest", export / DIGEST)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    assert "differ in more than a redaction" in output
    assert f"sequenceNo:{int(block['blockAddress']['sequenceNo'])}" in output


def _rehash_everything(export: Path) -> None:
    """Change one revision's data and recompute every hash above it, sidecars included: a complete forgery."""
    changed = False
    previous: bytes | None = None
    tips = MerkleAccumulator()
    roots: dict[int, bytes] = {}
    for obj in _objects(export):
        lines = obj.read_text().splitlines()
        for i, line in enumerate(lines):
            block = loads(line)
            seq = int(block["blockAddress"]["sequenceNo"])
            if not changed and _single_data_revision(block) and seq > 10:
                (rev,) = block["revisions"]
                old = bytes(rev["hash"])
                key = next(iter(rev["data"].keys()))
                rev["data"][key] = "forged"
                new = dot(ion_hash(rev["metadata"]), ion_hash(rev["data"]))
                rev["hash"] = _blob(new)
                block["entriesHashList"] = [_blob(new if bytes(e) == old else bytes(e))
                                            for e in block["entriesHashList"]]
                block["entriesHash"] = _blob(merkle_root([bytes(e) for e in block["entriesHashList"]]))
                changed = True
            if changed:
                if previous is not None:
                    block["previousBlockHash"] = _blob(previous)
                block["blockHash"] = _blob(dot(bytes(block["entriesHash"]), bytes(block["previousBlockHash"])))
                lines[i] = dumps_text(block)
            previous = bytes(block["blockHash"])
            tips.append(previous)
            roots[seq] = tips.root()
        obj.write_text("\n".join(lines) + "\n")
    assert changed
    for sidecar in export.glob("*.proofs.json"):
        data = json.loads(sidecar.read_text())
        tip = int(loads(data["DigestTipAddress"]["IonText"])["sequenceNo"])
        data["Digest"] = base64.b64encode(roots[tip]).decode()
        data.pop("Proof", None)
        data.pop("LastBlockNum", None)
        sidecar.write_text(json.dumps(data))


def test_a_complete_forgery_is_anchored_only_by_its_own_sidecar_and_caught_by_an_outside_digest(
        sample_factory, tmp_path: Path) -> None:
    export = sample_factory(tmp_path, revisions=300, fmt="ion_text", exports=1, seed=5)
    _rehash_everything(export)
    report = tmp_path / "r.json"
    alone = run_cli("verify", export, "--report", report)
    # nothing in the export itself can tell: the verdict says what the anchor is worth
    assert alone.returncode == 0, alone.stdout + alone.stderr
    assert "the export's own sidecar" in alone.stdout
    data = json.loads(report.read_text())
    assert any(f["code"] == "anchored-by-own-sidecar" for f in data["findings"]), data["findings"]
    assert "own sidecar" in data["chain"]["anchoredBy"]
    caught = run_cli("verify", export, "--digest", export / DIGEST)
    assert caught.returncode == 1, caught.stdout + caught.stderr
    assert "digest" in caught.stderr


def test_an_outside_digest_is_named_as_the_anchor(sample_factory, tmp_path: Path) -> None:
    export = sample_factory(tmp_path, revisions=300, fmt="ion_text", exports=1, seed=5)
    report = tmp_path / "r.json"
    proc = run_cli("verify", export, "--digest", export / DIGEST, "--report", report)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(report.read_text())
    assert str(DIGEST.name) in data["chain"]["anchoredBy"]
    assert not any(f["code"] == "anchored-by-own-sidecar" for f in data["findings"])
