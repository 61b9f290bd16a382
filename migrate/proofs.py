"""``verify-proof``: a saved GetBlock or GetRevision result against a digest file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import exitcodes
from .digests import DigestFileError, field_any_case, load_digest_file, parse_proof
from .report import base_report, file_fingerprint, findings_json
from .verify.findings import show_value
from .verify.ionparse import IonParseError, loads
from .verify.proof import ProofResult, verify_block_proof, verify_revision_proof


class ProofFileError(ValueError):
    pass


@dataclass
class ProofRun:
    result: ProofResult | None
    exit_code: int
    verdict: str
    report: dict[str, Any]


def _read_saved(path: Path, subject: str) -> tuple[Any, tuple[bytes, ...]]:
    """GetBlock / GetRevision output: ``{"Block"|"Revision": {"IonText": …}, "Proof": {"IonText": …}}``."""
    try:
        doc = loads(path.read_bytes())
    except IonParseError as exc:
        raise ProofFileError(f"{path}: not JSON or Ion: {exc}") from exc
    body = field_any_case(doc, subject)
    proof = field_any_case(doc, "Proof")
    if body is None or proof is None:
        raise ProofFileError(f"{path}: expected the {subject} and Proof fields of Get{subject} output")
    text = field_any_case(body, "IonText")
    try:
        value = loads(text) if isinstance(text, str) else body
    except IonParseError as exc:
        raise ProofFileError(f"{path}: {subject}.IonText is not valid Ion: {exc}") from exc
    try:
        return value, parse_proof(proof, str(path))
    except DigestFileError as exc:
        raise ProofFileError(str(exc)) from exc


def run_verify_proof(digest_file: Path, block_file: Path | None, revision_file: Path | None) -> ProofRun:
    report = base_report("verify-proof")
    subject_file = block_file or revision_file
    assert subject_file is not None
    subject = "Block" if block_file is not None else "Revision"
    report["inputs"] = [file_fingerprint(digest_file), file_fingerprint(subject_file)]

    def unread(exc: Exception, code: int, hint: str = "") -> ProofRun:
        report["verdict"] = "failed"
        report["error"] = str(exc)
        return ProofRun(None, code, f"FAILED: {exc}{hint}", report)

    try:
        digest = load_digest_file(digest_file)
    except DigestFileError as exc:  # not a digest at all: the wrong file was given, as for verify and check
        return unread(exc, exitcodes.USAGE, " (--digest takes a GetDigest JSON, a console digest .ion.txt or an "
                                            "export's proofs sidecar)")
    try:
        value, proof = _read_saved(subject_file, subject)
    except ProofFileError as exc:  # the evidence under check does not read: content
        return unread(exc, exitcodes.CONTENT)

    if subject == "Block":
        result = verify_block_proof(value, list(proof), digest)
    else:
        result = verify_revision_proof(value, list(proof), digest)
    ok = result.ok
    tip = digest.tip.sequence_no
    where = f"block {result.address}" if result.address else "(no address)"
    if ok:
        verdict = (
            f"VERIFIED: {subject.lower()} hash recomputed from its contents and its proof of {len(proof)} "
            f"hashes folds to digest {show_value(digest.digest)} (tip {tip}); {where} is at or below the tip "
            "(a consistency check: a proof binds no position)"
        )
    else:
        first = next(f for f in result.findings if f.is_error) if result.findings else None
        verdict = f"FAILED: {first.describe() if first else 'proof not checked'}"
    report.update(
        {
            "subject": subject.lower(),
            "address": None
            if result.address is None
            else {"strandId": result.address.strand_id, "sequenceNo": result.address.sequence_no},
            "digest": {
                "source": digest.source,
                "digest": show_value(digest.digest),
                "tip": {"strandId": digest.tip.strand_id, "sequenceNo": tip},
            },
            "leafHashRecomputed": None if result.leaf_hash is None else show_value(result.leaf_hash),
            "proofLength": len(proof),
            "folded": None if result.folded is None else show_value(result.folded),
            "consistencyChecks": result.consistency,
            "notProven": result.unproven,
            "verdict": "verified" if ok else "failed",
            "findings": findings_json(result.findings),
        }
    )
    return ProofRun(result, exitcodes.OK if ok else exitcodes.CONTENT, verdict, report)
