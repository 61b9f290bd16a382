"""A saved GetBlock / GetRevision proof checked against a ledger digest.

The leaf is always recomputed from the block's or revision's contents; the
stored ``hash`` / ``blockHash`` is compared with it but never folded in its
place.  A proof fold binds no sequence number, so the address being at or
below the digest tip is reported as a consistency check, not as proven.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from .block import check_block
from .chain import Digest
from .findings import BlockAddress, Finding, Kind, Location, Severity
from .hashes import fold_proof
from .ionvalue import field_or_none
from .revision import check_revision


@dataclass(slots=True)
class ProofResult:
    subject: str  # "block" or "revision"
    address: BlockAddress | None
    leaf_hash: bytes | None
    folded: bytes | None
    digest: Digest
    findings: list[Finding] = field(default_factory=list)
    consistency: dict[str, bool] = field(default_factory=dict)
    unproven: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.folded is not None and not any(f.is_error for f in self.findings)


def _check_tip(result: ProofResult) -> None:
    address, tip = result.address, result.digest.tip
    where = Location(block=address)
    if address is None:
        return
    same_strand = address.strand_id == tip.strand_id
    at_or_below = same_strand and address.sequence_no <= tip.sequence_no
    result.consistency["address at or below digest tip"] = at_or_below
    if not same_strand:
        result.findings.append(
            Finding(
                "digest-other-ledger",
                Kind.CONSISTENCY,
                Severity.ERROR,
                "the digest's tip is on another strand than the block",
                where,
                tip.strand_id,
                address.strand_id,
            )
        )
    elif not at_or_below:
        result.findings.append(
            Finding(
                "address-beyond-tip",
                Kind.CONSISTENCY,
                Severity.ERROR,
                f"block sequenceNo {address.sequence_no} lies beyond the digest tip {tip.sequence_no}",
                where,
                tip.sequence_no,
                address.sequence_no,
            )
        )
    result.unproven.append("sequence number: a proof fold binds no position")


def _fold(result: ProofResult, proof: list[bytes]) -> None:
    if result.leaf_hash is None:
        return
    result.folded = fold_proof(result.leaf_hash, proof)
    if result.folded != result.digest.digest:
        result.findings.append(
            Finding(
                "proof-mismatch",
                Kind.HASH,
                Severity.ERROR,
                f"folding the {result.subject} proof ({len(proof)} hashes) does not give the digest",
                Location(block=result.address),
                result.digest.digest,
                result.folded,
            )
        )


def verify_block_proof(block: Any, proof: list[bytes], digest: Digest) -> ProofResult:
    check = check_block(block)
    result = ProofResult("block", check.address, check.computed_block_hash, None, digest, list(check.findings))
    _fold(result, proof)
    _check_tip(result)
    return result


def verify_revision_proof(revision: Any, proof: list[bytes], digest: Digest) -> ProofResult:
    address = None
    with contextlib.suppress(KeyError, TypeError, ValueError):
        address = BlockAddress.from_ion(field_or_none(revision, "blockAddress"))
    check, findings = check_revision(revision, 0, address)
    leaf = check.computed_hash
    result = ProofResult("revision", address, leaf, None, digest, findings)
    if leaf is None:
        result.findings.append(
            Finding(
                "revision-not-recomputed",
                Kind.UNPROVEN,
                Severity.ERROR,
                f"the revision's hash could not be recomputed ({check.status.value}); "
                "a stored hash alone proves nothing",
                Location(block=address, document_id=check.document_id, version=check.version),
            )
        )
    _fold(result, proof)
    _check_tip(result)
    return result
