"""``check --source``: the export itself, kept outside the database, as the anchor.

A user who saved no digest still has the export.  It lives outside the
database, so re-hashing it from its contents (exactly as ``verify`` does) and
finding each of its block hashes among the stored blocks anchors the stored
chain as far as the export reaches: a block hash commits to its entries and,
through ``previousBlockHash``, to every block before it.  What the export
itself is anchored by (its own digests or sidecar proofs, if any) is reported
beside it, and ``check`` says which anchor it used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg

from ..executor import InlineExecutor
from ..verifier import BlockSink, BlockSummary, ObjectResult, VerifyResult, verify_source
from ..verify.chain import Digest
from ..verify.findings import BlockAddress, Finding, Kind, Location, Severity
from ..verify.revision import RevisionStatus
from .checker import CheckResult

#: a reservation says the run could not prove a revision; the export re-hashing it proves the reservation false
_CONTRADICTS = {
    "ambiguous-delete": {RevisionStatus.VERIFIED.value, RevisionStatus.DELETED.value},
    "deleted-hash-not-recomputed": {RevisionStatus.VERIFIED.value, RevisionStatus.DELETED.value},
    "not-present": {RevisionStatus.VERIFIED.value, RevisionStatus.DELETED.value, RevisionStatus.REDACTED.value},
    "unexplained-redaction": {RevisionStatus.VERIFIED.value, RevisionStatus.DELETED.value},
    # json-not-rehashed: an Ion export re-hashing the revision does not prove the JSONB the JSON export gave
}


class _CompareSink(BlockSink):
    """Each verified block of the export, compared with the block stored at its address.

    The block hash commits to the revision hashes and the transaction info;
    which revision belongs to which document (``revision_documents``) is not
    hashed, so it is compared too: a revision with data stored as a delete
    revision beside a made-up system revision keeps every hash but not the
    export's shape.  Reservations the export contradicts are errors: a
    reservation is how a run says "not proven", never a way to excuse a row.
    """

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        self.pending: list[BlockSummary] = []
        self.findings: list[Finding] = []
        self.matched: dict[str, int] = {}  # strand -> highest block whose stored hash equals the export's
        self.mismatched: set[str] = set()
        self.not_stored: dict[str, list[int]] = {}  # strand -> export blocks the database does not hold

    def new_block(self, block: BlockSummary, rows: Any) -> list[Finding]:
        if block.ok and block.address is not None:
            self.pending.append(block)
        return []

    def object_done(self, result: ObjectResult) -> None:
        if not self.pending:
            return
        strand = self.pending[0].address.strand_id  # type: ignore[union-attr]
        seqs = [b.address.sequence_no for b in self.pending]  # type: ignore[union-attr]
        stored = {seq: (bytes(h), docs, n) for seq, h, docs, n in self.conn.execute(
            "SELECT sequence_no, block_hash, revision_documents, cardinality(revision_hashes) FROM qldb.block "
            "WHERE strand_id = %s AND sequence_no = ANY(%s)", (strand, seqs))}
        reserved: dict[tuple[int, str, int], list[str]] = {}
        for seq, doc, version, kind in self.conn.execute(
                "SELECT block_sequence, document_id, version, kind FROM qldb.reservation WHERE strand_id = %s "
                "AND block_sequence = ANY(%s)", (strand, seqs)):
            reserved.setdefault((seq, doc, version), []).append(kind)
        for block in self.pending:
            seq = block.address.sequence_no  # type: ignore[union-attr]
            where = Location(block.object_key, block.address)
            if seq not in stored:
                self.not_stored.setdefault(strand, []).append(seq)
                continue
            block_hash, docs, count = stored[seq]
            if block_hash != block.computed_block_hash:
                self.mismatched.add(strand)
                self.findings.append(Finding(
                    "stored-block-differs-from-source", Kind.HASH, Severity.ERROR,
                    "the stored block's hash differs from the block re-hashed from the export",
                    where, block.computed_block_hash, block_hash))
                continue
            exported = [None if d is None else d[0] for d in block.documents]
            if (count or 0) != len(block.documents) or list(docs or []) != exported:
                self.mismatched.add(strand)
                self.findings.append(Finding(
                    "stored-revisions-differ-from-source", Kind.CONSISTENCY, Severity.ERROR,
                    "the stored block has the export's hash but not its revisions (which revision is whose, or how "
                    "many there are): a revision was re-presented behind valid hashes",
                    where, " ".join(d or "(system)" for d in exported), " ".join(d or "(system)" for d in docs or [])))
                continue
            for i, doc in enumerate(block.documents):
                if doc is None:
                    continue
                for kind in reserved.get((seq, doc[0], doc[1]), ()):
                    if block.statuses[i] in _CONTRADICTS.get(kind, ()):
                        self.mismatched.add(strand)
                        self.findings.append(Finding(
                            "reservation-contradicted-by-source", Kind.CONSISTENCY, Severity.ERROR,
                            f"qldb.reservation records '{kind}' for this revision, but the export re-hashes it as "
                            f"{block.statuses[i]}: the reservation excuses a row the ledger does not",
                            Location(block.object_key, block.address, i, doc[0], doc[1])))
            self.matched[strand] = max(self.matched.get(strand, -1), seq)
        self.pending.clear()


@dataclass
class SourceAnchor:
    """What ``check --source`` needs to re-verify the export beside the database."""

    spec: Any  # SourceSpec
    digests: list[Digest] = field(default_factory=list)
    workers: int | None = None
    progress: Any = None
    executor: Any = None  # started before the check's connection was opened

    def run(self, conn: psycopg.Connection, result: CheckResult) -> VerifyResult:
        sink = _CompareSink(conn)
        verified = verify_source(self.spec, self.digests, self.workers, self.progress, sink,
                                 self.executor or InlineExecutor())
        for finding in verified.findings:
            if finding.is_error:
                result.findings.append(finding)
        result.findings.extend(sink.findings)
        if verified.error_count:
            return verified
        for ledger in result.ledgers:
            tip = sink.matched.get(ledger.strand_id)
            if tip is None or ledger.strand_id in sink.mismatched:
                continue
            ledger.anchor(tip, f"the export at {verified.source}, re-hashed (blocks "
                               f"{verified.first_sequence}..{verified.last_sequence})")
        for strand, seqs in sorted(sink.not_stored.items()):
            ledger = next((x for x in result.ledgers if x.strand_id == strand), None)
            stored_last = None if ledger is None else ledger.last
            result.findings.append(Finding(
                "source-blocks-not-stored", Kind.CONSISTENCY, Severity.ERROR,
                f"{len(seqs)} blocks of the export ({_ranges(seqs)}) are not in the database: either the database "
                "was loaded from an earlier export (migrate this one to bring it up to date) or these blocks were "
                "removed from it" + ("" if ledger is not None else "; no ledger with this strand is stored"),
                Location(block=BlockAddress(strand, min(seqs))), None, stored_last))
        return verified


def _ranges(seqs: list[int]) -> str:
    """Block numbers as ranges ("blocks 3..9, 12"): one line however many."""
    out: list[str] = []
    ordered = sorted(set(seqs))
    start = prev = ordered[0]
    for seq in [*ordered[1:], None]:  # type: ignore[list-item]
        if seq is not None and seq == prev + 1:
            prev = seq
            continue
        out.append(str(start) if start == prev else f"{start}..{prev}")
        if seq is not None:
            start = prev = seq
    shown = ", ".join(out[:5]) + (f" and {len(out) - 5} more ranges" if len(out) > 5 else "")
    return f"block{'s' if len(ordered) > 1 else ''} {shown}"


__all__ = ["SourceAnchor"]
