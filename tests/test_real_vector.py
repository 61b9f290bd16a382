"""The real QLDB block 100 of the vehicle-registration ledger, its proofs and digest."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from qldb_migrate.digests import DigestFileError, load_digest_file, parse_digest
from qldb_migrate.verify.block import check_block
from qldb_migrate.verify.hashes import dot, fold_proof, merkle_root
from qldb_migrate.verify.ionhash import ion_hash
from qldb_migrate.verify.ionparse import loads
from qldb_migrate.verify.proof import verify_block_proof, verify_revision_proof
from qldb_migrate.verify.revision import RevisionStatus, check_revision, encoded_hash

from tests.vectors import AWSCLI


def _saved(name: str, field: str):
    doc = json.loads((AWSCLI / name).read_text())
    value = loads(doc[field]["IonText"])
    proof = [bytes(h) for h in loads(doc["Proof"]["IonText"])]
    return value, proof


@pytest.fixture(scope="module")
def digest():
    return load_digest_file(AWSCLI / "get-digest.json")


def test_digest_file_parsed(digest) -> None:
    assert base64.b64encode(digest.digest).decode() == "6m6BMXobbJKpMhahwVthAEsN6awgnHK62Qq5McGP1Gk="
    assert (digest.tip.strand_id, digest.tip.sequence_no) == ("KmA3ZZca7vAIiJAK9S5Iwl", 123)


def test_block_100_every_check_recomputed() -> None:
    block, _ = _saved("get-block.json", "Block")
    result = check_block(block)
    assert result.ok, [f.describe() for f in result.findings]
    assert result.findings == []
    assert result.computed_block_hash == bytes(block["blockHash"])
    entries = [bytes(e) for e in block["entriesHashList"]]
    # each piece, recomputed here step by step from the raw values
    assert ion_hash(block["transactionInfo"]) in entries
    revision_hash = dot(ion_hash(block["revisions"][0]["metadata"]), ion_hash(block["revisions"][0]["data"]))
    assert merkle_root([revision_hash]) in entries
    assert merkle_root(entries) == bytes(block["entriesHash"])
    assert dot(bytes(block["entriesHash"]), bytes(block["previousBlockHash"])) == bytes(block["blockHash"])
    assert [r.status for r in result.revisions] == [RevisionStatus.VERIFIED]


def test_statement_digest_is_hash_of_statement() -> None:
    block, _ = _saved("get-block.json", "Block")
    statement = block["transactionInfo"]["statements"][0]
    assert ion_hash(statement["statement"]) == bytes(statement["statementDigest"])


def test_block_proof_reaches_digest(digest) -> None:
    block, proof = _saved("get-block.json", "Block")
    result = verify_block_proof(block, proof, digest)
    assert result.ok
    assert result.folded == digest.digest
    assert result.consistency == {"address at or below digest tip": True}


def test_revision_proof_reaches_same_digest(digest) -> None:
    revision, proof = _saved("get-revision.json", "Revision")
    check, findings = check_revision(revision, 0)
    assert findings == [] and check.status is RevisionStatus.VERIFIED
    assert check.computed_hash == bytes(revision["hash"])
    assert fold_proof(check.computed_hash, proof) == digest.digest
    assert verify_revision_proof(revision, proof, digest).ok


def test_revision_proof_does_not_trust_stored_hash(digest) -> None:
    """Changing the data but keeping the stored hash must fail: the leaf is recomputed."""
    revision, proof = _saved("get-revision.json", "Revision")
    revision["data"]["City"] = "Tacoma"
    result = verify_revision_proof(revision, proof, digest)
    assert not result.ok
    assert {f.code for f in result.findings} >= {"revision-hash-mismatch", "proof-mismatch"}


def test_digest_shapes_console_and_sidecar(digest, tmp_path: Path) -> None:
    b64 = base64.b64encode(digest.digest).decode()
    console = (
        '{ digest: "%s", digestTipAddress: "{strandId:\\"KmA3ZZca7vAIiJAK9S5Iwl\\",sequenceNo:123}",'
        ' ledger: "vehicle-registration", date: "2019-09-16T19:40:00.000Z" }' % b64
    )
    parsed = parse_digest(console.encode(), "console.ion.txt")
    assert (parsed.digest, parsed.tip) == (digest.digest, digest.tip)
    _, proof = _saved("get-block.json", "Block")
    sidecar = {
        "Digest": b64,
        "DigestTipAddress": {"IonText": '{strandId:"KmA3ZZca7vAIiJAK9S5Iwl",sequenceNo:123}'},
        "LastBlockNum": 100,
        "Proof": {"IonText": "[" + ",".join("{{%s}}" % base64.b64encode(h).decode() for h in proof) + "]"},
    }
    parsed = parse_digest(json.dumps(sidecar).encode(), "x.proofs.json")
    assert parsed.proof == tuple(proof) and parsed.proof_sequence == 100


@pytest.mark.parametrize(
    "text",
    [b"not a digest", b'{"Digest": "AAAA", "DigestTipAddress": {"IonText": "{strandId:\\"a\\",sequenceNo:1}"}}',
     b'{"Digest": "6m6BMXobbJKpMhahwVthAEsN6awgnHK62Qq5McGP1Gk="}'],
)
def test_bad_digest_files_are_named(text: bytes) -> None:
    with pytest.raises(DigestFileError, match=r"bad\.json"):
        parse_digest(text, "bad.json")


def _c_writer(value):
    from amazon.ion import simpleion

    return simpleion.dumps(value, binary=True)


def _lossy_writer(value):
    """Drops the last field of every struct it writes: an inexact writer whose bytes must never be stored."""
    from amazon.ion import simpleion

    copy = loads(_c_writer(value))
    if hasattr(copy, "iteritems"):
        del copy[list(copy)[-1]]
    return simpleion.dumps(copy, binary=True)


def _failing_writer(value):
    raise ValueError("cannot write this")


def _provers():
    from qldb_migrate import native

    out = [pytest.param(lambda value: encoded_hash(value, _c_writer), id="amazon-ion-writer-parsed-back")]
    if native.AVAILABLE:
        out.append(pytest.param(native.prove, id="c-writer-c-hash"))
    return out


@pytest.mark.parametrize("prove", _provers())
def test_block_100_with_encodings_proves_the_bytes_it_keeps(prove) -> None:
    block, _ = _saved("get-block.json", "Block")
    result = check_block(block, prove=prove)
    assert result.ok and result.findings == []
    rev = result.revisions[0]
    assert ion_hash(loads(rev.data_ion)) == rev.data_hash == ion_hash(block["revisions"][0]["data"])
    assert ion_hash(loads(rev.metadata_ion)) == rev.metadata_hash == ion_hash(block["revisions"][0]["metadata"])
    assert ion_hash(loads(result.info_ion["transactionInfo"])) == ion_hash(block["transactionInfo"])


@pytest.mark.parametrize("writer", [_lossy_writer, _failing_writer])
def test_an_inexact_or_failing_writer_falls_back_to_the_originals(writer) -> None:
    block, _ = _saved("get-block.json", "Block")
    result = check_block(block, prove=lambda value: encoded_hash(value, writer))
    assert result.ok and result.findings == []  # the originals still verify
    rev = result.revisions[0]
    assert rev.status is RevisionStatus.VERIFIED
    assert rev.data_ion is None and rev.metadata_ion is None and result.info_ion == {}
    assert rev.metadata_hash == ion_hash(block["revisions"][0]["metadata"])
    assert rev.data_hash == ion_hash(block["revisions"][0]["data"])


def test_parameterized_statements_of_a_real_block_are_not_recomputable_and_never_an_error() -> None:
    """A published get-block (strand Cn7mGwi40kd5DGDECsOccv, block 58): QLDB folded the `?` parameters into each
    statementDigest, and the parameters are not in the journal."""
    from qldb_migrate.sample.blocks import struct
    from qldb_migrate.verify.block import count_statement_digests

    from tests.vectors import PARAMETERIZED_BLOCK

    vector = json.loads(PARAMETERIZED_BLOCK.read_text())
    statements = []
    for s in vector["statements"]:
        assert base64.b64encode(ion_hash(s["statement"])).decode() == s["hashOfStatement"]  # our H, theirs
        assert s["hashOfStatement"] != s["statementDigest"]
        statements.append(struct({"statement": s["statement"], "startTime": loads(s["startTime"]),
                                  "statementDigest": loads("{{" + s["statementDigest"] + "}}")}))
    info = struct({"statements": statements})
    assert count_statement_digests(info) == (0, 3)
    # the aws-cli block's literal statement is recomputed
    block, _proof = _saved("get-block.json", "Block")
    assert count_statement_digests(block["transactionInfo"]) == (1, 0)
    check = check_block(block)
    assert check.ok and (check.statements_recomputed, check.statements_not_recomputable) == (1, 0)


def test_a_sample_export_holds_parameterized_statements_beside_literal_ones(sample_factory, tmp_path) -> None:
    from qldb_migrate.sources import SourceSpec
    from qldb_migrate.verifier import verify_source

    export = sample_factory(tmp_path, revisions=300, exports=1, seed=5)
    result = verify_source(SourceSpec(str(export)), [], 1)
    assert result.error_count == 0
    assert result.statements["recomputed"] > 10 and result.statements["notRecomputable"] > 100
