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
from ..verify.findings import Finding, Kind, Location, Severity
from .checker import CheckResult


class _CompareSink(BlockSink):
    """Each verified block of the export, compared by hash with the block stored at its address."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        self.pending: list[BlockSummary] = []
        self.findings: list[Finding] = []
        self.matched: dict[str, int] = {}  # strand -> highest block whose stored hash equals the export's
        self.mismatched: set[str] = set()
        self.not_stored = 0

    def new_block(self, block: BlockSummary, rows: Any) -> list[Finding]:
        if block.ok and block.address is not None:
            self.pending.append(block)
        return []

    def object_done(self, result: ObjectResult) -> None:
        if not self.pending:
            return
        strand = self.pending[0].address.strand_id  # type: ignore[union-attr]
        seqs = [b.address.sequence_no for b in self.pending]  # type: ignore[union-attr]
        stored = dict(self.conn.execute(
            "SELECT sequence_no, block_hash FROM qldb.block WHERE strand_id = %s AND sequence_no = ANY(%s)",
            (strand, seqs)).fetchall())
        for block in self.pending:
            seq = block.address.sequence_no  # type: ignore[union-attr]
            if seq not in stored:
                self.not_stored += 1
                continue
            if bytes(stored[seq]) != block.computed_block_hash:
                self.mismatched.add(strand)
                self.findings.append(Finding(
                    "stored-block-differs-from-source", Kind.HASH, Severity.ERROR,
                    "the stored block's hash differs from the block re-hashed from the export",
                    Location(block.object_key, block.address), block.computed_block_hash, bytes(stored[seq])))
            else:
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
        if sink.not_stored:
            result.findings.append(Finding(
                "source-blocks-not-stored", Kind.UNPROVEN, Severity.WARNING,
                f"{sink.not_stored} blocks of the export are not in the database (not migrated yet?)", Location()))
        return verified


__all__ = ["SourceAnchor"]
