"""``qldb-migrate verify-proof`` end to end, as a user runs it (a subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.vectors import AWSCLI

DIGEST = AWSCLI / "get-digest.json"
BLOCK = AWSCLI / "get-block.json"
REVISION = AWSCLI / "get-revision.json"


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qldb_migrate", *map(str, args)], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("flag,path", [("--block", BLOCK), ("--revision", REVISION)])
def test_shared_vector_verifies(flag: str, path: Path, tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    proc = run("verify-proof", "--digest", DIGEST, flag, path, "--report", report)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("VERIFIED:")
    data = json.loads(report.read_text())
    assert data["verdict"] == "verified"
    assert data["folded"] == data["digest"]["digest"] == "6m6BMXobbJKpMhahwVthAEsN6awgnHK62Qq5McGP1Gk="
    assert data["consistencyChecks"] == {"address at or below digest tip": True}
    assert any("binds no position" in n for n in data["notProven"])


def test_one_character_of_revision_data_changed_exits_1(tmp_path: Path) -> None:
    tampered = tmp_path / "rev.json"
    tampered.write_text(REVISION.read_text().replace("Everett", "Everetu"))
    proc = run("verify-proof", "--digest", DIGEST, "--revision", tampered)
    assert proc.returncode == 1
    assert "revision hash differs" in proc.stderr and "sequenceNo:100" in proc.stderr


def test_one_proof_hash_changed_exits_1(tmp_path: Path) -> None:
    doc = json.loads(BLOCK.read_text())
    text = doc["Proof"]["IonText"]
    # change one base64 character of the third proof hash
    pos = text.index("9UnwnKSQ")
    doc["Proof"]["IonText"] = text[:pos] + "8" + text[pos + 1 :]
    tampered = tmp_path / "block.json"
    tampered.write_text(json.dumps(doc))
    proc = run("verify-proof", "--digest", DIGEST, "--block", tampered)
    assert proc.returncode == 1
    assert "does not give the digest" in proc.stderr


def test_digest_for_another_tip_below_the_block_is_a_consistency_failure(tmp_path: Path) -> None:
    doc = json.loads(DIGEST.read_text())
    doc["DigestTipAddress"]["IonText"] = doc["DigestTipAddress"]["IonText"].replace("123", "99")
    digest = tmp_path / "d.json"
    digest.write_text(json.dumps(doc))
    proc = run("verify-proof", "--digest", digest, "--block", BLOCK)
    assert proc.returncode == 1
    assert "beyond the digest tip" in proc.stderr


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert run("verify-proof", "--digest", DIGEST).returncode == 2
    assert run("verify-proof", "--digest", DIGEST, "--block", BLOCK, "--revision", REVISION).returncode == 2
    assert run("verify-proof", "--digest", tmp_path / "missing.json", "--block", BLOCK).returncode == 2


def test_corrupt_input_names_the_file(tmp_path: Path) -> None:
    """A --digest that is no digest is the wrong file (exit 2, as for verify and check); a proof that does not
    read is evidence that fails (exit 1)."""
    bad = tmp_path / "garbage.json"
    bad.write_text("{ not json")
    proc = run("verify-proof", "--digest", bad, "--block", BLOCK)
    assert proc.returncode == 2
    assert "garbage.json" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert run("verify-proof", "--digest", BLOCK, "--block", BLOCK).returncode == 2  # a GetBlock given as digest
    proc = run("verify-proof", "--digest", DIGEST, "--block", bad)
    assert proc.returncode == 1 and "garbage.json" in proc.stderr and "Traceback" not in proc.stderr
