"""The hash chain across blocks and the digests over it, checked while streaming.

Blocks arrive in sequence order (the reader sorts exports and objects).  The
chain check keeps O(log n) state: the previous block's hash and address and
the Merkle peaks of all block hashes so far, from which the digest at any tip
is computed the moment the tip block passes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .block import BlockCheck
from .findings import BlockAddress, Finding, Kind, Location, Severity
from .hashes import MerkleAccumulator, fold_proof


@dataclass(frozen=True, slots=True)
class Digest:
    """A ledger digest held outside the ledger: what anchors everything."""

    digest: bytes
    tip: BlockAddress
    source: str  # where it came from (file name), for reports
    proof: tuple[bytes, ...] | None = None  # a saved proof, if the file had one
    proof_block: int | None = None  # the block that proof starts from (the sidecar's LastBlockNum)
    beside_source: bool = False  # found in the source itself (a sidecar): as trustworthy as the source's storage

    @property
    def name(self) -> str:
        return f"{self.source} (the export's own sidecar)" if self.beside_source else self.source

    @property
    def proof_sequence(self) -> int | None:
        if self.proof is None:
            return None
        return self.tip.sequence_no if self.proof_block is None else self.proof_block


@dataclass(slots=True)
class DigestOutcome:
    """How one digest was reached; it may be reached twice (saved proof and Merkle root)."""

    digest: Digest
    methods: list[str] = field(default_factory=list)
    computed: list[bytes] = field(default_factory=list)
    failed: bool = False
    unreached_reason: str | None = None

    @property
    def matched(self) -> bool | None:
        if self.failed:
            return False
        return True if self.methods else None

    def record(self, method: str, computed: bytes) -> bool:
        self.methods.append(method)
        self.computed.append(computed)
        ok = computed == self.digest.digest
        self.failed = self.failed or not ok
        return ok

    def to_json(self) -> dict[str, object]:
        from .findings import show_value

        return {
            "source": self.digest.source,
            "digest": show_value(self.digest.digest),
            "tip": {"strandId": self.digest.tip.strand_id, "sequenceNo": self.digest.tip.sequence_no},
            "reachedBy": self.methods,
            "matched": self.matched,
            "computed": [show_value(c) for c in self.computed],
            "notReached": self.unreached_reason,
        }


@dataclass(slots=True)
class ChainState:
    strand_id: str | None = None
    first_sequence: int | None = None
    last_sequence: int | None = None
    last_hash: bytes | None = None
    last_object: str | None = None
    blocks: int = 0
    broken: bool = False  # a gap or a mismatched link: later digests cannot be merkle-proven


@dataclass
class ChainChecker:
    """Feed block checks in order; get chain and digest findings back."""

    digests: list[Digest] = field(default_factory=list)
    state: ChainState = field(default_factory=ChainState)
    outcomes: list[DigestOutcome] = field(init=False)
    anchored_through: int | None = None  # highest sequence number a digest or proof reached
    anchors: list[tuple[int, Digest]] = field(default_factory=list)  # (block reached, by which digest)

    def __post_init__(self) -> None:
        self.outcomes = [DigestOutcome(d) for d in self.digests]
        self._merkle = MerkleAccumulator()

    @property
    def partial(self) -> bool:
        """The chain does not start at block 0: its first predecessor is unanchored."""
        return self.state.first_sequence not in (None, 0)

    def add(self, check: BlockCheck) -> list[Finding]:
        findings: list[Finding] = []
        st = self.state
        address = check.address
        block_hash = check.computed_block_hash
        if address is None or block_hash is None:
            st.broken = True
            return findings
        where = Location(check.object_key, address)
        if st.strand_id is None:
            st.strand_id = address.strand_id
            st.first_sequence = address.sequence_no
        elif address.strand_id != st.strand_id:
            findings.append(
                Finding(
                    "second-strand",
                    Kind.CONSISTENCY,
                    Severity.ERROR,
                    "block belongs to a second strand; QLDB ledgers have one",
                    where,
                    st.strand_id,
                    address.strand_id,
                )
            )
            return findings
        else:
            expected_seq = (st.last_sequence or 0) + 1
            if address.sequence_no != expected_seq:
                code = "gap" if address.sequence_no > expected_seq else "block-out-of-order"
                message = (
                    f"blocks {expected_seq}..{address.sequence_no - 1} are missing"
                    if code == "gap"
                    else f"block {address.sequence_no} follows block {st.last_sequence}"
                )
                findings.append(
                    Finding(code, Kind.CONSISTENCY, Severity.ERROR, message, where, expected_seq, address.sequence_no)
                )
                st.broken = True
            if check.previous_block_hash != st.last_hash:
                findings.append(
                    Finding(
                        "chain-link-mismatch",
                        Kind.HASH,
                        Severity.ERROR,
                        f"previousBlockHash does not equal the hash of the block before it "
                        f"(sequenceNo {st.last_sequence}, in {st.last_object})",
                        where,
                        st.last_hash,
                        check.previous_block_hash,
                    )
                )
                st.broken = True
        if st.first_sequence == 0 and address.sequence_no == 0 and check.previous_block_hash:
            findings.append(
                Finding(
                    "genesis-has-predecessor",
                    Kind.CONSISTENCY,
                    Severity.ERROR,
                    "block 0 names a previous block hash",
                    where,
                    b"",
                    check.previous_block_hash,
                )
            )
        st.last_sequence = address.sequence_no
        st.last_hash = block_hash
        st.last_object = check.object_key
        st.blocks += 1
        if st.first_sequence == 0 and not st.broken:
            self._merkle.append(block_hash)
        for outcome in self.outcomes:
            findings.extend(self._try_digest(outcome, check))
        return findings

    def _try_digest(self, outcome: DigestOutcome, check: BlockCheck) -> list[Finding]:
        digest = outcome.digest
        address = check.address
        assert address is not None and check.computed_block_hash is not None
        seq = address.sequence_no
        at_tip = seq == digest.tip.sequence_no
        at_proof = seq == digest.proof_sequence
        if not (at_tip or at_proof):
            return []
        where = Location(check.object_key, address)
        if address.strand_id != digest.tip.strand_id:
            outcome.failed = True
            outcome.unreached_reason = "the digest names another strand (another ledger)"
            return [
                Finding(
                    "digest-other-ledger",
                    Kind.CONSISTENCY,
                    Severity.ERROR,
                    f"digest {digest.source} names strand {digest.tip.strand_id}, the export holds another",
                    where,
                    digest.tip.strand_id,
                    address.strand_id,
                )
            ]
        attempts: list[tuple[str, bytes]] = []
        if at_proof and digest.proof is not None:
            attempts.append((f"saved proof of block {seq}", fold_proof(check.computed_block_hash, digest.proof)))
        if at_tip and self.state.first_sequence == 0 and not self.state.broken and self._merkle.count == seq + 1:
            attempts.append((f"merkle root over blocks 0..{seq}", self._merkle.root()))
        findings = []
        for method, computed in attempts:
            if outcome.record(method, computed):
                self.anchored_through = max(self.anchored_through or -1, seq)
                self.anchors.append((seq, digest))
            else:
                findings.append(
                    Finding(
                        "digest-mismatch",
                        Kind.HASH,
                        Severity.ERROR,
                        f"digest {digest.source} does not match ({method})",
                        where,
                        digest.digest,
                        computed,
                    )
                )
        return findings

    def anchor_names(self) -> str:
        """What reaches the furthest anchored block, named (a sidecar is said to be one)."""
        best = [d.name for seq, d in self.anchors if seq == self.anchored_through]
        return "; ".join(dict.fromkeys(best)) or "nothing"

    def anchored_by_sidecars_only(self) -> bool:
        best = [d for seq, d in self.anchors if seq == self.anchored_through]
        return bool(best) and all(d.beside_source for d in best)

    def finish(self) -> list[Finding]:
        """Digests the stream never reached, and what that means."""
        findings: list[Finding] = []
        for outcome in self.outcomes:
            if outcome.matched is not None or outcome.unreached_reason is not None:
                continue
            tip = outcome.digest.tip
            st = self.state
            if st.strand_id is not None and tip.strand_id != st.strand_id:
                outcome.failed = True
                outcome.unreached_reason = "the digest names another strand (another ledger)"
                findings.append(
                    Finding(
                        "digest-other-ledger",
                        Kind.CONSISTENCY,
                        Severity.ERROR,
                        f"digest {outcome.digest.source} is for strand {tip.strand_id}; this export is strand "
                        f"{st.strand_id} (another ledger)",
                        Location(block=tip),
                        st.strand_id,
                        tip.strand_id,
                    )
                )
                continue
            if st.last_sequence is not None and st.first_sequence is not None and (
                st.first_sequence <= tip.sequence_no <= st.last_sequence
            ):
                reason = "the chain before its tip is incomplete and the file holds no proof"
            elif not outcome.digest.beside_source and st.last_sequence is not None \
                    and tip.sequence_no > st.last_sequence:
                # a digest the user gives is a claim to be proven, not a hint
                outcome.failed = True
                outcome.unreached_reason = f"its tip (block {tip.sequence_no}) is beyond the sources' last block"
                findings.append(
                    Finding(
                        "digest-beyond-chain",
                        Kind.CONSISTENCY,
                        Severity.ERROR,
                        f"digest {outcome.digest.source} has tip block {tip.sequence_no}, but the sources end at "
                        f"block {st.last_sequence}: either blocks {st.last_sequence + 1}..{tip.sequence_no} are "
                        "missing from them, or the digest is newer than these exports (give the later export too)",
                        Location(block=tip),
                        tip.sequence_no,
                        st.last_sequence,
                    )
                )
                continue
            else:
                reason = f"its tip (block {tip.sequence_no}) is outside the export"
            outcome.unreached_reason = reason
            findings.append(
                Finding(
                    "digest-not-reached",
                    Kind.UNPROVEN,
                    Severity.WARNING,
                    f"digest {outcome.digest.source} could not be checked: {reason}",
                    Location(block=tip),
                )
            )
        return findings
