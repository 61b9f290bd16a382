"""Dry-run verification of a whole export source: the engine behind ``verify``.

Work is spread over data objects (DESIGN §3): a worker process parses one
object and checks every block in it (every revision re-hashed, every block
hash recomputed); the main process receives compact per-block summaries in
block order and runs what must be sequential — the chain join across objects
and exports, the overlap rules, the digest roots.  At most a few objects are in
flight, so memory stays flat whatever the ledger size.
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from . import native
from .blockstream import ObjectCorrupt, StreamDigest, iter_blocks
from .executor import Executor, InlineExecutor, local_executor
from .exports import DataObject, ExportPlan
from .native import prove
from .sourceplan import STREAM, SourcePlan, plan_sources, spill_range
from .sources import Source, SourceError, SourceSpec, SourceUnreachable
from .verify.block import UNPROVEN_BY_BLOCK_HASH, check_block, document_tables, utc_instant
from .verify.chain import ChainChecker, Digest
from .verify.findings import BlockAddress, Finding, FindingLog, Kind, Location, Severity
from .verify.ionparse import EXACT_READER_WHY
from .verify.ionvalue import field_or_none, is_null
from .verify.revision import Prover, RevisionStatus

SYSTEM_TABLE = "(system)"


@dataclass(slots=True)
class BlockSummary:
    """What the sequential part needs of a block, small enough to pickle cheaply."""

    address: BlockAddress | None
    object_key: str
    computed_block_hash: bytes | None
    previous_block_hash: bytes
    transaction_id: str | None
    timestamp: str | None
    instant: Any  # blockTimestamp as a plain UTC datetime (picklable), for the order check
    ok: bool
    statuses: tuple[str, ...]
    tables: tuple[str, ...]
    statements: tuple[int, int] = (0, 0)  # statementDigests (recomputed, not recomputable: parameterized)
    redacted: tuple[tuple[str, str, int], ...] = ()  # (table id, document id, version) delivered as dataHash
    redaction: tuple[str, str, int] | None = None  # what the block's redactionInfo names
    # per revision: (document id, version) of a user revision, None for a system revision (hash only)
    documents: tuple[tuple[str, int] | None, ...] = ()


@dataclass
class ObjectResult:
    obj: DataObject
    sha256: str = ""
    size: int = 0
    etag: str | None = None
    blocks: list[BlockSummary] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    unreadable: SourceError | None = None
    # with rows: the COPY-ready rows (pg.rows.BlockRows) of each block that verified, keyed by sequence number
    rows: dict[int, Any] = field(default_factory=dict)
    with_rows: bool = False


_SOURCES: dict[SourceSpec, Source] = {}
_SOURCES_LOCK = threading.Lock()


def _source(spec: SourceSpec) -> Source:
    """One source per spec and process; locked because a Dask worker may run tasks in several threads, and
    boto3's default session must not build two clients at once."""
    with _SOURCES_LOCK:
        source = _SOURCES.get(spec)
        if source is None:
            source = _SOURCES[spec] = spec.open()
        return source


def _hasher(with_rows: bool, reference: bool) -> Prover | None:
    """How a worker hashes values.

    The fast path (default, and always for migrate) writes each value as binary Ion and hashes those bytes in C
    (``native.prove``): the hash migrate stores rows under.  ``reference`` hashes the parsed values with
    ``verify.ionhash``, the pure-Python implementation of the Ion Hash specification, which the test suite holds
    the C path to: the independent second reading an audit can ask for.  Without the C extension, the reference
    path is also the faster one.
    """
    if with_rows:
        return prove
    return prove if native.AVAILABLE and not reference else None


def _summarize(block: Any, obj_key: str, data_exact: bool, hasher: Prover | None, result: ObjectResult,
               absent: dict[int, str] | None = None) -> BlockSummary:
    """One block checked from its contents (and, for migrate, its rows packed): what the main process needs."""
    with_rows = hasher is not None and result.with_rows
    check = check_block(block, obj_key, data_exact, hasher, absent)
    result.findings.extend(check.findings)
    doc_tables = document_tables(block)
    if with_rows and check.ok and check.sequence_no is not None:
        from .pg.rows import DataIonMismatch, pack_block

        try:
            result.rows[check.sequence_no] = pack_block(block, check, doc_tables)
        except DataIonMismatch as exc:
            result.findings.append(
                Finding("data-ion-mismatch", Kind.HASH, Severity.ERROR, str(exc), Location(obj_key, check.address))
            )
    tables = {doc: name for doc, (_tid, name) in doc_tables.items()}
    redacted = tuple(
        (doc_tables.get(r.document_id, ("(unknown)", ""))[0], r.document_id, r.version)
        for r in check.revisions
        if r.status is RevisionStatus.REDACTED and r.document_id is not None and r.version is not None
    )
    ts = field_or_none(block, "blockTimestamp")
    return BlockSummary(
        check.address,
        obj_key,
        check.computed_block_hash,
        check.previous_block_hash,
        check.transaction_id,
        None if is_null(ts) else str(ts),
        utc_instant(ts),
        check.ok,
        tuple(r.status.value for r in check.revisions),
        tuple(tables.get(r.document_id, "(unknown)") if r.document_id is not None else SYSTEM_TABLE
              for r in check.revisions),
        (check.statements_recomputed, check.statements_not_recomputable),
        redacted,
        redaction_named(block),
        tuple(None if r.document_id is None else (r.document_id, -1 if r.version is None else r.version)
              for r in check.revisions),
    )


#: An object whose hashes do not match is read again with the exact (pure-Python, ~60 KB/s) Ion reader before the
#: mismatch is reported (``ionparse.EXACT_READER_WHY``), up to this size: a bound on what hostile input can cost.
EXACT_REREAD_LIMIT = 16 << 20


def check_object(spec: SourceSpec, obj: DataObject, with_rows: bool = False, reference: bool = False
                 ) -> ObjectResult:
    """Worker: every block of one object, checked from its contents alone (and, for migrate, its rows)."""
    hasher = _hasher(with_rows, reference)
    if obj.fmt == STREAM:
        return _check_stream_range(obj, with_rows, hasher)
    result = _check_export_object(spec, obj, with_rows, hasher, exact=False)
    if obj.fmt != "JSON" and any(f.is_error and f.kind is Kind.HASH for f in result.findings):
        if result.size <= EXACT_REREAD_LIMIT:
            again = _check_export_object(spec, obj, with_rows, hasher, exact=True)
            if not any(f.is_error and f.kind is Kind.HASH for f in again.findings):
                again.findings.append(Finding("read-again-exactly", Kind.CONSISTENCY, Severity.NOTE,
                                              EXACT_READER_WHY, Location(obj.key)))
            return again
        result.findings.append(Finding(
            "not-read-again-exactly", Kind.UNPROVEN, Severity.WARNING,
            f"hashes did not match; the object is larger than {EXACT_REREAD_LIMIT >> 20} MiB, so it was not read "
            f"again with amazon-ion's exact (slow) reader, which some valid values need: {EXACT_READER_WHY}",
            Location(obj.key)))
    return result


def _check_export_object(spec: SourceSpec, obj: DataObject, with_rows: bool, hasher: Prover | None, exact: bool
                         ) -> ObjectResult:
    result = ObjectResult(obj, with_rows=with_rows)
    source = _source(spec)
    digest = StreamDigest()
    expected = obj.first
    data_exact = obj.fmt != "JSON"
    try:
        result.etag = source.info(obj.key).etag
        for index, block in enumerate(iter_blocks(lambda: source.open(obj.key), obj.fmt, digest, exact)):
            summary = _summarize(block, obj.key, data_exact, hasher, result)
            result.blocks.append(summary)
            seq = None if summary.address is None else summary.address.sequence_no
            if seq is not None and seq != expected:
                result.findings.append(
                    Finding(
                        "object-range-mismatch",
                        Kind.CONSISTENCY,
                        Severity.ERROR,
                        f"block #{index} of the object has sequenceNo {seq}; its name says {obj.first}-{obj.last} "
                        f"so {expected} was expected",
                        Location(obj.key, summary.address),
                        expected,
                        seq,
                    )
                )
            expected = (seq if seq is not None else expected) + 1
        if expected != obj.last + 1:
            result.findings.append(
                Finding(
                    "object-truncated",
                    Kind.CONSISTENCY,
                    Severity.ERROR,
                    f"object ends after sequenceNo {expected - 1}; its name says it holds blocks up to {obj.last}",
                    Location(obj.key, BlockAddress(obj.strand_id, expected - 1) if expected > obj.first else None),
                    obj.last,
                    expected - 1,
                )
            )
    except ObjectCorrupt as exc:
        where = Location(obj.key, BlockAddress(obj.strand_id, expected))
        result.findings.append(
            Finding(
                "object-corrupt",
                Kind.CONSISTENCY,
                Severity.ERROR,
                f"object is truncated or corrupt at its block #{exc.index} (expected sequenceNo {expected}): {exc}",
                where,
            )
        )
    except SourceError as exc:
        result.unreadable = exc
        result.findings.append(
            Finding("object-unreadable", Kind.CONSISTENCY, Severity.ERROR, str(exc), Location(obj.key))
        )
    result.sha256, result.size = digest.sha256, digest.size
    return result


def _check_stream_range(obj: DataObject, with_rows: bool, hasher: Prover | None) -> ObjectResult:
    """Worker: the blocks a stream archive's spill holds in one range, rebuilt and checked as an export's.

    A finding in a rebuilt block names the archive object and record it came
    from (not the spill), so the auditor can find the record.
    """
    from .streamhashed import hashed_prover
    from .streams import iter_stream_blocks, record_origins

    result = ObjectResult(obj, with_rows=with_rows)
    path, first, last = spill_range(obj)
    # Nothing stored, hashed in C: revision data is hashed from the records' bytes, never parsed (streamhashed).
    # migrate stores the data (its values and their encoding); the reference path hashes parsed values.
    hashed_data = False
    if hasher is not None and not with_rows:
        hasher, hashed_data = hashed_prover(hasher), True
    for block, absent in iter_stream_blocks(path, first, last, hashed_data):
        before = len(result.findings)
        summary = _summarize(block, obj.manifest_key, True, hasher, result, absent)
        if len(result.findings) > before and summary.address is not None:
            origins = record_origins(path, summary.address.sequence_no)
            where = {o.revision_index: f"{o.object_key} {o.label}" for o in origins}
            result.findings[before:] = [
                replace(f, location=replace(f.location, object_key=where.get(f.location.revision_index,
                                                                             where.get(None, obj.manifest_key))))
                for f in result.findings[before:]
            ]
        result.blocks.append(summary)
    return result


def redaction_named(block: Any) -> tuple[str, str, int] | None:
    """(table id, document id, version) a block's redactionInfo names; None when it has none or it is malformed."""
    info = field_or_none(block, "redactionInfo")
    if is_null(info):
        return None
    table, doc, version = (field_or_none(info, k) for k in ("tableId", "documentId", "version"))
    if isinstance(table, str) and isinstance(doc, str) and isinstance(version, int) and not isinstance(version, bool):
        return str(table), str(doc), int(version)
    return None


@dataclass
class VerifyResult:
    source: str
    plan: ExportPlan
    objects: list[ObjectResult]
    findings: FindingLog
    digests: list[Any]
    blocks: int  # distinct blocks the source holds (overlapping exports counted once)
    duplicate_blocks: int  # copies of a block in a second export (or already stored)
    revisions_by_table: Counter[str]  # user revisions per QLDB table
    statuses: Counter[str]  # every revision, system ones included, by RevisionStatus
    first_sequence: int | None  # of the chain checked (a stored chain a later export joins included)
    last_sequence: int | None
    anchored_through: int | None
    partial: bool
    unanchored: bool
    unverifiable: bool
    seconds: float
    unreachable: bool = False
    strand_id: str | None = None
    ledger_name: str | None = None
    statements: Counter[str] = field(default_factory=Counter)  # "recomputed" / "notRecomputable"
    unexplained_redactions: list[tuple[str, str, int]] = field(default_factory=list)
    not_rehashed: dict[str, int] = field(default_factory=dict)  # why, -> how many user revisions
    streams: list[Any] = field(default_factory=list)  # the stream archives read (streams.StreamArchive)
    hash_path: str = ""  # which Ion Hash implementation re-hashed the values (``_hasher``)
    anchored_by: str = "a digest or saved proof"  # what reaches ``anchored_through``, named

    @property
    def errors(self) -> list[Finding]:
        return self.findings.errors

    @property
    def error_count(self) -> int:
        return self.findings.error_count

    @property
    def revisions(self) -> int:
        """User revisions (with metadata): the one meaning of "revisions" in every summary and report."""
        return sum(self.revisions_by_table.values())

    @property
    def system_revisions(self) -> int:
        return self.statuses.get(RevisionStatus.HASH_ONLY.value, 0)

    @property
    def rehashed(self) -> int:
        return sum(self.statuses.get(s.value, 0) for s in RevisionStatus if s.recomputed)

    def states(self) -> list[str]:
        out = []
        if self.partial:
            out.append("partial")
        if self.unanchored:
            out.append("unanchored")
        if self.unverifiable:
            out.append("unverifiable")
        return out


# a revision's copy in one export and its redacted copy in a later one
_DATA_OR_REDACTED = {RevisionStatus.VERIFIED.value, RevisionStatus.UNVERIFIABLE.value, RevisionStatus.REDACTED.value}


class _OverlapMerger:
    """Overlapping exports: identical blocks are one block, redactions merge, anything else conflicts."""

    def __init__(self) -> None:
        self.seen: dict[int, BlockSummary] = {}
        self.duplicates = 0

    def prune(self, below: int) -> None:
        for seq in [s for s in self.seen if s < below]:
            del self.seen[seq]

    def duplicate(self, block: BlockSummary, statuses: Counter[str]) -> Finding | None:
        assert block.address is not None
        self.duplicates += 1
        first = self.seen.get(block.address.sequence_no)
        where = Location(block.object_key, block.address)
        if first is None:
            return Finding(
                "block-out-of-order",
                Kind.CONSISTENCY,
                Severity.ERROR,
                "block repeats a sequence number the chain has already passed",
                where,
            )
        if first.computed_block_hash != block.computed_block_hash:
            return Finding(
                "overlap-conflict",
                Kind.HASH,
                Severity.ERROR,
                f"block differs from the block with the same address in {first.object_key}",
                where,
                first.computed_block_hash,
                block.computed_block_hash,
            )
        if (first.transaction_id, first.timestamp) != (block.transaction_id, block.timestamp):
            return Finding(
                "overlap-conflict",
                Kind.CONSISTENCY,
                Severity.ERROR,
                f"block has the same hash as in {first.object_key} but another transactionId or blockTimestamp",
                where,
                f"{first.transaction_id} {first.timestamp}",
                f"{block.transaction_id} {block.timestamp}",
            )
        redaction_only = len(first.statuses) == len(block.statuses) and first.tables == block.tables \
            and first.documents == block.documents and all(
            a == b or (RevisionStatus.REDACTED.value in (a, b) and {a, b} <= _DATA_OR_REDACTED)
            for a, b in zip(first.statuses, block.statuses, strict=True))
        if not redaction_only:
            return Finding(
                "overlap-conflict",
                Kind.CONSISTENCY,
                Severity.ERROR,
                f"block has the same hash as in {first.object_key} but its revisions differ in more than a redaction "
                "(a revision presented otherwise, e.g. with data in one copy and as a delete in the other)",
                where,
                " ".join(first.statuses),
                " ".join(block.statuses),
            )
        if first.statuses != block.statuses:
            merged = tuple(
                RevisionStatus.REDACTED.value if RevisionStatus.REDACTED.value in (a, b) else a
                for a, b in zip(first.statuses, block.statuses, strict=False)
            )
            self.seen[block.address.sequence_no] = BlockSummary(**{**_asdict(first), "statuses": merged})
            statuses.subtract(first.statuses)
            statuses.update(merged)
            return Finding(
                "redaction-merged",
                Kind.HASH,
                Severity.NOTE,
                f"same block as in {first.object_key} except for redacted revision data; the redacted form is kept",
                where,
            )
        return None


def _asdict(b: BlockSummary) -> dict[str, Any]:
    return {name: getattr(b, name) for name in BlockSummary.__slots__}


def verify_source(
    spec: SourceSpec,
    digests: list[Digest],
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    sink: BlockSink | None = None,
    executor: Executor | None = None,
) -> VerifyResult:
    """``verify_sources`` of one source."""
    return verify_sources([spec], digests, workers, progress, sink, executor)


def verify_sources(
    specs: list[SourceSpec],
    digests: list[Digest],
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    sink: BlockSink | None = None,
    executor: Executor | None = None,
    source_format: str = "auto",
    workdir: Path | None = None,
    reference: bool = False,
) -> VerifyResult:
    """Verify every block of the sources as one chain (and hand each to ``sink``); ``executor`` runs the
    per-object work.

    Without an executor, local worker processes are started here: callers that
    hold a database connection start theirs first (``executor.local_executor``),
    so no worker inherits the connection.  Stream archives are read into
    ``workdir`` (default: a temporary directory, removed at the end).
    """
    started = time.perf_counter()
    own_executor = executor is None
    if executor is None:
        executor = local_executor(workers)
    with contextlib.ExitStack() as stack:
        if own_executor:
            stack.callback(executor.close)

        def spill_dir() -> Path:  # only a stream archive needs one: an export is read where it is
            return workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="qldb-migrate-")))

        planned = plan_sources(specs, spill_dir, source_format, executor)
        return _verify_planned(planned, digests, progress, sink, executor, started, reference)


def _verify_planned(planned: SourcePlan, digests: list[Digest], progress: Callable[[int, int], None] | None,
                    sink: BlockSink | None, executor: Executor, started: float, reference: bool) -> VerifyResult:
    plan = planned.plan
    findings = FindingLog()
    findings.extend(plan.findings)
    all_digests = [*digests, *planned.sidecar_digests]
    chain = ChainChecker(all_digests)
    merger = _OverlapMerger()
    objects: list[ObjectResult] = []
    by_table: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    statements: Counter[str] = Counter()
    redacted_seen: set[tuple[str, str, int]] = set()
    explained: set[tuple[str, str, int]] = set()
    source_blocks = 0
    total_bytes = sum(1 if o.fmt == STREAM else planned.specs[o.key].open().info(o.key).size
                      for o in plan.objects) if progress else 0
    done_bytes = 0
    unreachable = False
    last_instant = None
    last_instant_seq = None
    strand = plan.objects[0].strand_id if plan.objects else None
    ledger_name = next((e.ledger_name for e in plan.exports if e.ledger_name), None)
    if sink is not None:
        sink.prime(chain, strand, ledger_name)
    with_rows = sink is not None and sink.wants_rows

    def first_seen(block: BlockSummary) -> None:
        nonlocal source_blocks
        source_blocks += 1
        statuses.update(block.statuses)
        by_table.update(t for t in block.tables if t != SYSTEM_TABLE)
        statements["recomputed"] += block.statements[0]
        statements["notRecomputable"] += block.statements[1]

    if len(plan.objects) <= 1:
        executor = InlineExecutor()
    task, items = check_object, ((planned.specs[o.key], o, with_rows, reference) for o in plan.objects)
    if sink is not None:
        task, items = sink.tasks(task, items)
    for received in executor.map_ordered(task, items):
        result = received if sink is None else sink.received(received)
        findings.extend(result.findings)
        if isinstance(result.unreadable, SourceUnreachable):
            unreachable = True
        merger.prune(result.obj.first)
        for block in result.blocks:
            if block.address is None or block.computed_block_hash is None:
                continue
            redacted_seen.update(block.redacted)
            if block.redaction is not None:
                explained.add(block.redaction)
            last = chain.state.last_sequence
            same_strand = block.address.strand_id == chain.state.strand_id
            if last is not None and block.address.sequence_no <= last and same_strand:
                stored = sink is not None and sink.is_stored(block.address.sequence_no)
                first = stored and block.address.sequence_no not in merger.seen
                if first:
                    merger.seen[block.address.sequence_no] = block
                    first_seen(block)
                else:
                    finding = merger.duplicate(block, statuses)
                    if finding is not None:
                        findings.append(finding)
                if sink is not None:
                    findings.extend(sink.known_block(block, result.rows.get(block.address.sequence_no), first))
                continue
            findings.extend(chain.add(_as_check(block)))
            if last_instant is not None and block.instant is not None and block.instant < last_instant:
                findings.append(
                    Finding(
                        "block-timestamp-order",
                        Kind.CONSISTENCY,
                        Severity.ERROR,
                        f"blockTimestamp (in no hash) is earlier than that of the block before it "
                        f"(sequenceNo {last_instant_seq}): one of the two was altered",
                        Location(block.object_key, block.address),
                        f"at or after {last_instant.isoformat()}",
                        block.instant.isoformat(),
                    )
                )
            if block.instant is not None:
                last_instant, last_instant_seq = block.instant, block.address.sequence_no
            merger.seen[block.address.sequence_no] = block
            first_seen(block)
            if sink is not None:
                findings.extend(sink.new_block(block, result.rows.get(block.address.sequence_no)))
        objects.append(result)
        done_bytes += result.size
        if progress:
            progress(done_bytes, total_bytes)
        if sink is not None:
            sink.object_done(result)
        # Keep what the report needs of the object, not its blocks: memory stays flat.
        result.blocks = []
        result.rows = {}
    findings.extend(chain.finish())
    st = chain.state
    partial = chain.partial
    if partial:
        findings.append(
            Finding(
                "partial-export",
                Kind.UNPROVEN,
                Severity.WARNING,
                f"the export starts at block {st.first_sequence}, not 0: its first block's predecessor is unanchored",
                Location(block=BlockAddress(st.strand_id or "", st.first_sequence or 0)),
            )
        )
    anchored = chain.anchored_through
    unanchored = anchored is None or (st.last_sequence is not None and anchored < st.last_sequence)
    if anchored is not None and chain.anchored_by_sidecars_only():
        findings.append(
            Finding(
                "anchored-by-own-sidecar",
                Kind.UNPROVEN,
                Severity.WARNING,  # printed: the operator must see it, though the sidecar does anchor (no state)
                "the furthest anchor is the export's own sidecar (a digest saved beside the export): it shows the "
                "export is what QLDB digested only as far as nobody could change both; a digest kept elsewhere "
                "(--digest) is evidence against a changed export",
                Location(),
            )
        )
    if anchored is None:
        findings.append(
            Finding(
                "unanchored",
                Kind.UNPROVEN,
                Severity.WARNING,
                "no digest or saved proof reaches this export: the chain is internally consistent but not anchored",
                Location(),
            )
        )
    elif st.last_sequence is not None and anchored < st.last_sequence:
        findings.append(
            Finding(
                "tail-unanchored",
                Kind.UNPROVEN,
                Severity.WARNING,
                f"anchored through block {anchored} of {st.last_sequence}; blocks {anchored + 1}..{st.last_sequence} "
                "are linked to it but not anchored by any digest or proof",
                Location(block=BlockAddress(st.strand_id or "", anchored + 1)),
            )
        )
    unexplained = sorted(redacted_seen - explained)
    if sink is not None and unexplained:
        unexplained = sink.unexplained_redactions(strand, unexplained)
    for table_id, doc, version in unexplained:
        findings.append(
            Finding(
                "unexplained-redaction",
                Kind.UNPROVEN,
                Severity.WARNING,
                "revision is redacted (dataHash in place of data) but no redactionInfo in this source or the "
                "database names it: its data cannot be re-hashed, and whether QLDB or someone else removed it is "
                "not shown (an export may end before the block that redacted it; a later source clears this)",
                Location(document_id=doc, version=version, table=table_id),
            )
        )
    not_rehashed = {
        "json": statuses.get(RevisionStatus.UNVERIFIABLE.value, 0),
        "deletedRuleNotMatched": statuses.get(RevisionStatus.NOT_RECOMPUTED.value, 0),
        "ambiguousDelete": statuses.get(RevisionStatus.AMBIGUOUS_DELETE.value, 0),
        "notPresent": statuses.get(RevisionStatus.NOT_PRESENT.value, 0),
        "unexplainedRedaction": len(unexplained),
    }
    unverifiable = any(not_rehashed.values())
    if unverifiable:
        why = ", ".join(f"{n} {_NOT_REHASHED_WHY[k]}" for k, n in not_rehashed.items() if n)
        findings.append(
            Finding(
                "unverifiable-revisions",
                Kind.UNPROVEN,
                Severity.WARNING,
                f"{sum(not_rehashed.values())} user revisions could not be re-hashed ({why}); their stored hashes "
                "still count through the Merkle roots",
                Location(),
            )
        )
    return VerifyResult(
        " + ".join(planned.descriptions),
        plan,
        objects,
        findings,
        chain.outcomes,
        source_blocks,
        merger.duplicates,
        by_table,
        statuses,
        st.first_sequence,
        st.last_sequence,
        anchored,
        partial,
        unanchored,
        unverifiable,
        time.perf_counter() - started,
        unreachable,
        st.strand_id or strand,
        ledger_name,
        statements,
        unexplained,
        not_rehashed,
        planned.streams,
        "reference (pure Python, verify.ionhash)" if _hasher(sink is not None and sink.wants_rows, reference) is None
        else "C (qldb_migrate._native over the binary Ion it writes)",
        chain.anchor_names(),
    )


_NOT_REHASHED_WHY = {
    "json": "through JSON (user data lost its Ion types)",
    "deletedRuleNotMatched": "deleted-document revisions whose hash rule did not match",
    "ambiguousDelete": "delete revisions beside a system revision (they may be revisions with data, split)",
    "notPresent": "whose details never arrived (stream)",
    "unexplainedRedaction": "redacted with no redactionInfo naming them",
}


class BlockSink:
    """Where verified blocks go (the PostgreSQL loader); ``verify`` has none.

    ``prime`` may feed the chain with blocks already stored, so a later export
    joins the stored chain by hash.  ``new_block`` gets each block the chain
    accepted, with its rows; ``known_block`` each block the chain had already
    passed (an overlap, or a block stored by an earlier run).
    """

    wants_rows = False  # True: workers also build each verified block's COPY rows (the loader)

    def prime(self, chain: ChainChecker, strand_id: str | None, ledger_name: str | None = None) -> None:
        return None

    def unexplained_redactions(self, strand_id: str | None,
                               candidates: list[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
        """Those of ``candidates`` that no redaction already stored (by an earlier run) explains."""
        return candidates

    def new_block(self, block: BlockSummary, rows: Any) -> list[Finding]:
        return []

    def is_stored(self, sequence_no: int) -> bool:
        """True for blocks an earlier run stored (compared by the sink, not by the overlap rules)."""
        return False

    def known_block(self, block: BlockSummary, rows: Any, first: bool) -> list[Finding]:
        """``first``: the source's first copy of a block an earlier run stored (else an overlap's second copy)."""
        return []

    def object_done(self, result: ObjectResult) -> None:
        return None

    def tasks(self, task: Callable[..., Any], items: Iterator[tuple[Any, ...]]
              ) -> tuple[Callable[..., Any], Iterator[tuple[Any, ...]]]:
        """The per-object work (``check_object`` over ``items``); a sink that keeps progress may replace it."""
        return task, items

    def received(self, result: Any) -> ObjectResult:
        """What ``tasks``' work returned for one object, as the object's result (a replayed one, say)."""
        return result


def _as_check(block: BlockSummary) -> Any:
    from .verify.block import BlockCheck

    return BlockCheck(
        block.address,
        block.object_key,
        None,
        block.computed_block_hash,
        block.previous_block_hash,
        None,
        block.transaction_id,
    )


NOT_PROVEN = list(UNPROVEN_BY_BLOCK_HASH)
