"""A QLDB stream archive as a source of journal blocks, in two passes.

QLDB journal streams deliver a ledger to Kinesis as three kinds of record
(QLDB developer guide, "QLDB stream records in Kinesis"): CONTROL (the
stream's CREATED and COMPLETED), BLOCK_SUMMARY (a block without its
revisions, with ``revisionSummaries``: each revision's ``hash`` and, for a
document revision, its ``documentId``) and REVISION_DETAILS (one document
revision with its ``tableInfo``).  Delivery is at least once and not ordered
across shards, so duplicates and any order are normal, and an archive (see
``streamobjects``) can be far larger than memory.

* ``scan_stream_archive`` reads every object once, reads every record once,
  and spills it into an SQLite index (``streamspill``) by block sequence
  number and kind.  A record is read in C where it can be
  (``native.stream_record``: every byte checked, the identifying fields
  returned, no Python values built) and otherwise parsed with amazon-ion
  and judged by ``_interpret``, the reference, which the C reading equals
  wherever it answers.  Byte-identical copies collapse on insert; copies in
  other bytes collapse when their payloads are Ion-equal (same Ion hash: a
  copy may carry another local symbol table) and are a conflict, an error,
  otherwise.  It then judges what only the whole archive shows: which
  ledger it is (records of any other are findings, never mixed in), which
  details have no summary, whether each details record agrees with its
  summary, whether the stream was COMPLETED.
* ``iter_stream_blocks`` reads the index back in sequence order, parses the
  records it uses (only here are Python values built), and rebuilds
  each block exactly as a journal export holds it, so ``check_block`` checks
  it unchanged.  It opens its own read-only connection, so workers can each
  rebuild a range.  For ``verify`` (nothing stored, C hash path) a revision's
  ``data`` is hashed from the record's bytes in C and not parsed at all
  (``streamhashed``).

What is an error and what a warning: content that contradicts itself or
another copy (corrupt or truncated records, bad KPL digests, conflicting
copies, a details record whose hash or document differs from its summary,
details not listed in their block's summary, records of another ledger,
details for a block inside the archive's range whose summary is missing)
is an ERROR: the archive is not a faithful copy of one ledger.  What the
archive merely does not reach is a WARNING (``UNPROVEN``): no CONTROL
COMPLETED (the stream was cancelled, was still running, or the copy is
incomplete: records after the last one present may exist), details past the
last summary of a stream that never completed.  Duplicates collapsed and
objects skipped are NOTEs.  Blocks whose summary is missing inside the range
are gaps for the chain check to report; not here.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from amazon.ion import simpleion
from amazon.ion.exceptions import IonException
from amazon.ion.simple_types import IonPyDict
from amazon.ion.symbols import SymbolToken

from . import native
from . import streamspill as spill
from .blockstream import HashingReader
from .executor import Executor, local_executor
from .exports import COMPLETED, STARTED
from .sources import Source, SourceError, SourceSpec
from .streamhashed import HashedData
from .streamobjects import (
    FIREHOSE_NAME,
    NotRecords,
    RawRecord,
    RecordError,
    classify_key,
    iter_object_records,
    parse_record,
)
from .verify.findings import BlockAddress, Finding, Kind, Location, Severity
from .verify.ionhash import IonHashError, ion_hash
from .verify.ionparse import C_TEXT_BUFFER_LIMIT, VALUE_MODEL, IonParseError, loads
from .verify.ionvalue import field_or_none, is_null

__all__ = [
    "ObjectFingerprint",
    "RecordOrigin",
    "StreamArchive",
    "is_stream_archive",
    "iter_stream_blocks",
    "match_revisions",
    "record_origins",
    "scan_stream_archive",
]

SPILL_NAME = "stream-records.sqlite"
ARN = re.compile(r"^arn:(?P<partition>[^:]+):qldb:(?P<region>[^:]*):(?P<account>[^:]*):stream/(?P<ledger>[^/]+)/"
                 r"(?P<stream>[^/]+)$")
#: Records of other ledgers named one by one before the rest are counted.
FOREIGN_FINDINGS = 20
_BATCH = 2000


@dataclass(frozen=True)
class ObjectFingerprint:
    """What the report says of each object read: enough for an auditor to know it is the same object."""

    key: str
    size: int
    sha256: str
    etag: str | None
    records: int  # stream records read from it (copies included)


@dataclass
class StreamArchive:
    """The first pass's result: where the records are, and what the whole archive showed."""

    objects: list[ObjectFingerprint]
    findings: list[Finding]
    stream_arns: set[str]  # of the archive's ledger
    strand_id: str | None
    first: int | None  # block sequence range of the summaries (gaps inside are the chain check's)
    last: int | None
    spill_path: Path
    ledger: str | None = None  # "partition:region:account:ledgerName" from the stream ARNs
    records: int = 0  # stream records read, copies included
    duplicates: int = 0  # copies collapsed
    blocks: int = 0  # distinct block summaries of the archive's ledger
    seconds: float = 0.0

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.is_error]


# --- recognising an archive ------------------------------------------------------------------


def is_stream_archive(source: Source, sniff_limit: int = 20) -> bool:
    """True when the source holds no export manifests but holds stream archive objects.

    Firehose-named objects are sniffed first, then any others (``.json``
    files first), at most ``sniff_limit`` of them: a directory of exports is
    recognised by its manifests before a single object is opened.
    """
    keys = list(source.list_keys())
    if any(STARTED.match(k) or COMPLETED.match(k) for k in keys):
        return False
    named = [k for k in keys if FIREHOSE_NAME.search(k)]
    others = sorted((k for k in keys if not FIREHOSE_NAME.search(k)),
                    key=lambda k: (not k.endswith((".json", ".json.gz")), k))
    for key in (named + others)[:sniff_limit]:
        try:
            kind = classify_key(source, key)
        except SourceError:
            continue
        if kind == "firehose":
            return True
        if kind == "json" and _is_records_json(source, key):
            return True
    return False


def _is_records_json(source: Source, key: str) -> bool:
    with source.open_raw(key) as raw:
        for item in iter_object_records(raw, key):
            return isinstance(item, RawRecord)
    return False


# --- reading one record --------------------------------------------------------------------------


class _Parsed(NamedTuple):
    kind: str  # CONTROL | BLOCK_SUMMARY | REVISION_DETAILS
    arn: str
    ledger: str
    strand: str | None = None
    seq: int | None = None
    doc: str = spill.NO_DOCUMENT
    version: int = spill.NO_VERSION
    rhash: bytes | None = None
    entries: list[tuple[bytes, str | None]] | None = None
    control: str | None = None


class _Invalid(Exception):
    def __init__(self, message: str, address: BlockAddress | None = None) -> None:
        super().__init__(message)
        self.address = address


def _text(value: Any) -> str | None:
    if isinstance(value, SymbolToken):
        return value.text
    return value if isinstance(value, str) else None


def _blob(value: Any) -> bytes | None:
    return bytes(value) if isinstance(value, bytes | bytearray) and not is_null(value) else None


def _address(value: Any) -> tuple[str, int]:
    strand = _text(field_or_none(value, "strandId"))
    seq = field_or_none(value, "sequenceNo")
    if strand is None or not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise _Invalid("blockAddress is not {strandId: string, sequenceNo: int}")
    return strand, int(seq)


def summary_entries(payload: Any) -> list[tuple[bytes, str | None]]:
    """``revisionSummaries`` as (hash, documentId or None), in the block's order; none is an empty list."""
    value = field_or_none(payload, "revisionSummaries")
    if is_null(value):
        return []
    if not isinstance(value, list):
        raise _Invalid("revisionSummaries is not a list")
    out = []
    for i, entry in enumerate(value):
        digest = _blob(field_or_none(entry, "hash"))
        doc_value = field_or_none(entry, "documentId")
        doc = _text(doc_value)
        if digest is None or (doc is None and not is_null(doc_value)):
            raise _Invalid(f"revisionSummaries[{i}] is not {{hash: blob, documentId: string (optional)}}")
        out.append((digest, doc))
    return out


def _interpret(value: Mapping[str, Any]) -> _Parsed:
    arn = _text(field_or_none(value, "qldbStreamArn"))
    record_type = _text(field_or_none(value, "recordType"))
    payload = field_or_none(value, "payload")
    if arn is None or record_type is None or not isinstance(payload, Mapping):
        raise _Invalid("not a QLDB stream record: it needs qldbStreamArn, recordType and a payload struct")
    ledger = _ledger(arn)
    if record_type == "CONTROL":
        control = _text(field_or_none(payload, "controlRecordType"))
        if control is None:
            raise _Invalid("CONTROL record without a controlRecordType")
        return _Parsed(record_type, arn, ledger, control=control)
    if record_type == "BLOCK_SUMMARY":
        strand, seq = _address(field_or_none(payload, "blockAddress"))
        try:
            entries = summary_entries(payload)
        except _Invalid as exc:
            raise _Invalid(str(exc), BlockAddress(strand, seq)) from exc
        return _Parsed(record_type, arn, ledger, strand, seq, entries=entries)
    if record_type == "REVISION_DETAILS":
        revision = field_or_none(payload, "revision")
        strand, seq = _address(field_or_none(revision, "blockAddress"))
        metadata = field_or_none(revision, "metadata")
        doc = _text(field_or_none(metadata, "id"))
        version = field_or_none(metadata, "version")
        rhash = _blob(field_or_none(revision, "hash"))
        if doc is None or not isinstance(version, int) or isinstance(version, bool) or rhash is None:
            raise _Invalid("REVISION_DETAILS without revision.hash (blob) and metadata {id, version}",
                           BlockAddress(strand, seq))
        return _Parsed(record_type, arn, ledger, strand, seq, doc, int(version), rhash)
    raise _Invalid(f"unknown recordType {record_type!r}")


#: ``qldbStreamArn`` -> its ledger ("partition:region:account:ledgerName"), or None when it is no stream ARN.
_LEDGERS: dict[str, str | None] = {}


def _ledger(arn: str) -> str:
    try:
        ledger = _LEDGERS[arn]
    except KeyError:
        match = ARN.match(arn)
        ledger = None if match is None else ":".join(match.group("partition", "region", "account", "ledger"))
        if len(_LEDGERS) < 10_000:
            _LEDGERS[arn] = ledger
    if ledger is None:
        raise _Invalid(f"qldbStreamArn {arn!r} is not a QLDB stream ARN")
    return ledger


def _parse_fast(data: bytes) -> Any:
    """What ``_read_records`` needs of a record: C's reading of the bytes where it can, else the parsed value.

    ``native.stream_record`` checks every byte of the record (the subset of
    binary Ion whose hash ``hash_binary`` states, no annotations) and
    returns its identifying fields, or None for anything else: other bytes,
    a record not of the usual shape, a field that is repeated, missing or
    of another type.  Those are parsed by ``parse_record`` and judged by
    ``_interpret``, the reference, which the C reading must equal wherever
    it answers (tests/test_streams.py holds it to that).
    """
    fast = native.stream_record(data)
    return fast if fast is not None else parse_record(data)


def _from_fast(fast: tuple[Any, ...]) -> _Parsed:
    kind, arn, strand, seq, doc, version, rhash, entries, control = fast[:9]
    if kind == "CONTROL":
        return _Parsed(kind, arn, _ledger(arn), control=control)
    if kind == "BLOCK_SUMMARY":
        return _Parsed(kind, arn, _ledger(arn), strand, seq, entries=entries)
    return _Parsed(kind, arn, _ledger(arn), strand, seq, doc, version, rhash)


def _payload_key(body: bytes) -> bytes:
    """The Ion hash of a record's payload: equal for Ion-equal payloads whatever their bytes and symbol tables.

    In C where ``stream_record`` reads the record: ``hash_binary`` of the
    record's symbol tables and its payload's bytes (the C hash equals
    ``ion_hash`` wherever it answers: tests/test_native.py), else parsed and
    hashed in Python.
    """
    fast = native.stream_record(body)
    if fast is not None:
        head, start, end = fast[9:12]
        digest = native.hash_binary(body[:head] + body[start:end])
        if digest is not None:
            return digest
    try:
        return ion_hash(field_or_none(loads(body), "payload"))
    except (IonParseError, IonHashError):
        return hashlib.sha256(b"unhashable " + body).digest()


# --- matching details to summaries ---------------------------------------------------------------


class DetailsRef(NamedTuple):
    """A REVISION_DETAILS record as the matching needs it (``id`` is its arrival order)."""

    id: int
    doc: str
    version: int
    rhash: bytes
    obj: int = -1
    label: str = ""


class MatchProblem(NamedTuple):
    code: str
    message: str
    entry: int | None
    details: DetailsRef | None


def match_revisions(
    entries: list[tuple[bytes, str | None]], details: list[DetailsRef]
) -> tuple[list[DetailsRef | None], list[MatchProblem]]:
    """Which details record fills each summary entry, and what does not fit.

    An entry with a ``documentId`` takes the earliest details record with its
    hash, else (a details record whose hash was altered) the earliest with
    its document id, a problem either way when the other field differs.  An
    entry without ``documentId`` is a system revision: only its hash exists
    and no details record is taken for it.  Details left over are not in the
    block at all.  Entries left empty are the revisions whose details never
    arrived.
    """
    assigned: list[DetailsRef | None] = [None] * len(entries)
    problems: list[MatchProblem] = []
    used: set[int] = set()
    by_hash: dict[bytes, list[DetailsRef]] = {}
    for d in details:
        by_hash.setdefault(d.rhash, []).append(d)
    for i, (digest, doc) in enumerate(entries):
        if doc is None:
            continue
        for d in by_hash.get(digest, ()):
            if d.id not in used:
                used.add(d.id)
                assigned[i] = d
                if d.doc != doc:
                    problems.append(MatchProblem(
                        "stream-details-document-mismatch",
                        f"REVISION_DETAILS has the hash of revision #{i} in its block summary, but document "
                        f"{d.doc} where the summary says {doc}", i, d))
                break
    summary_hashes = {digest for digest, _doc in entries}
    for i, (_digest, doc) in enumerate(entries):
        if doc is None or assigned[i] is not None:
            continue
        for d in details:
            if d.id not in used and d.doc == doc and d.rhash not in summary_hashes:
                used.add(d.id)
                assigned[i] = d
                problems.append(MatchProblem(
                    "stream-details-hash-mismatch",
                    f"REVISION_DETAILS of document {doc} (revision #{i} of its block) states a revision hash "
                    f"that differs from the block summary's", i, d))
                break
    for d in details:
        if d.id not in used:
            problems.append(MatchProblem(
                "stream-details-not-in-summary",
                f"REVISION_DETAILS of document {d.doc} v{d.version} names this block, but the block summary lists "
                f"no revision with its hash", None, d))
    return assigned, problems


# --- the first pass ---------------------------------------------------------------------------------


@dataclass
class _Controls:
    created: list[str] = field(default_factory=list)  # where seen: "key, label"
    completed: list[str] = field(default_factory=list)


@dataclass
class _Scan:
    conn: sqlite3.Connection
    findings: list[Finding] = field(default_factory=list)
    arn_ids: dict[str, int] = field(default_factory=dict)
    controls: dict[str, _Controls] = field(default_factory=dict)
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    records: int = 0
    duplicates: int = 0
    keys: list[str] = field(default_factory=list)

    def arn_id(self, arn: str, ledger: str) -> int:
        found = self.arn_ids.get(arn)
        if found is None:
            found = self.arn_ids[arn] = len(self.arn_ids) + 1
            self.conn.execute("INSERT INTO arns VALUES (?, ?, ?)", (found, arn, ledger))
        return found

    def flush(self) -> None:
        if self.rows:
            before = self.conn.total_changes
            self.conn.executemany(spill.INSERT, self.rows)
            self.duplicates += len(self.rows) - (self.conn.total_changes - before)
            self.rows = []


def _record_error(code: str, key: str, label: str, message: str, address: BlockAddress | None = None) -> Finding:
    return Finding(code, Kind.CONSISTENCY, Severity.ERROR, f"{label}: {message}", Location(key, address))


@dataclass
class _ObjectRead:
    """One object's records as rows for the spill, and what reading it found; picklable, from any process."""

    key: str
    obj: int
    fingerprint: ObjectFingerprint | None = None  # None: not an archive object (skipped)
    rows: list[tuple[Any, ...]] = field(default_factory=list)  # the ARN where the spill wants its id
    arns: dict[str, str] = field(default_factory=dict)  # ARN -> ledger
    controls: list[tuple[str, str, str]] = field(default_factory=list)  # (ARN, controlRecordType, where)
    findings: list[Finding] = field(default_factory=list)


_SOURCES: dict[SourceSpec, Source] = {}


def _read_object(spec: SourceSpec, key: str, obj: int) -> _ObjectRead:
    """Read and parse every record of one object, in a worker (it opens the source once per process)."""
    source = _SOURCES.get(spec)
    if source is None:
        source = _SOURCES[spec] = spec.open()
    return _read_object_from(source, key, obj)


def _read_object_from(source: Source, key: str, obj: int) -> _ObjectRead:
    """Read and parse every record of one object (no spill access here)."""
    result = _ObjectRead(key, obj)
    try:
        _read_records(source, result)
    except SourceError as exc:
        result.fingerprint = None
        result.rows = []
        result.findings.append(Finding("object-unreadable", Kind.CONSISTENCY, Severity.ERROR, str(exc),
                                       Location(key)))
    return result


KIND = {"BLOCK_SUMMARY": spill.KIND_SUMMARY, "REVISION_DETAILS": spill.KIND_DETAILS}


def _read_records(source: Source, result: _ObjectRead) -> None:
    key = result.key
    info = source.info(key)
    count = 0
    rows, arns, obj, sha256 = result.rows, result.arns, result.obj, hashlib.sha256
    with HashingReader(source.open_raw(key)) as reader:
        for item in iter_object_records(reader, key, _parse_fast):
            if isinstance(item, NotRecords):
                return
            if isinstance(item, RecordError):
                result.findings.append(_record_error("stream-record-corrupt", key, item.label, item.message))
                continue
            count += 1
            value = item.value
            if type(value) is tuple and value[0] != "CONTROL":  # the common case, in C: no _Parsed needed
                arn = value[1]
                ledger = _LEDGERS.get(arn)
                if ledger is not None:
                    arns[arn] = ledger
                    data = item.data
                    entries = value[7]
                    rows.append((value[2], value[3], KIND[value[0]], value[4] or spill.NO_DOCUMENT, value[5],
                                 sha256(data).digest(), arn, obj, item.index, item.label, value[6],
                                 None if entries is None else json.dumps([[h.hex(), d] for h, d in entries]),
                                 data))
                    continue
            try:
                parsed = _from_fast(value) if type(value) is tuple else _interpret(value)
            except _Invalid as exc:
                result.findings.append(_record_error("stream-record-invalid", key, item.label, str(exc),
                                                     exc.address))
                continue
            result.arns[parsed.arn] = parsed.ledger
            if parsed.kind == "CONTROL":
                if parsed.control in ("CREATED", "COMPLETED"):
                    result.controls.append((parsed.arn, parsed.control, f"{key}, {item.label}"))
                else:
                    result.findings.append(_record_error("stream-record-invalid", key, item.label,
                                                         f"unknown controlRecordType {parsed.control!r}"))
                continue
            entries = None if parsed.entries is None else json.dumps([[h.hex(), d] for h, d in parsed.entries])
            rows.append((parsed.strand, parsed.seq, KIND[parsed.kind], parsed.doc, parsed.version,
                         sha256(item.data).digest(), parsed.arn, obj, item.index, item.label, parsed.rhash, entries,
                         item.data))
        reader.drain()
    result.fingerprint = ObjectFingerprint(key, reader.size, reader.sha256.hexdigest(), info.etag, count)


def _reads(source: Source, keys: list[str], executor: Executor) -> Iterator[_ObjectRead]:
    """Every object read, in key order, a bounded number in flight (memory: a few objects)."""
    if executor.workers <= 1 or len(keys) <= 1:
        for obj, key in enumerate(keys):
            yield _read_object_from(source, key, obj)
        return
    yield from executor.map_ordered(_read_object, ((source.spec, key, obj) for obj, key in enumerate(keys)))


def scan_stream_archive(
    source: Source, workdir: Path, progress: Callable[[int, int], None] | None = None, workers: int | None = None,
    executor: Executor | None = None,
) -> StreamArchive:
    """First pass: read every object once, spill every record into ``workdir``, judge the whole archive.

    ``executor`` (by default ``workers`` local processes, one per core, at
    most 8) reads and parses objects; this process alone writes the spill, in
    key order, so the result does not depend on the number of workers.
    """
    started = time.perf_counter()
    workdir.mkdir(parents=True, exist_ok=True)
    spill_path = workdir / SPILL_NAME
    conn = spill.create(spill_path)
    scan = _Scan(conn)
    keys = sorted(source.list_keys())
    scan.keys = keys
    conn.executemany("INSERT INTO objects VALUES (?, ?)", list(enumerate(keys)))
    total = sum(source.info(k).size for k in keys) if progress else 0
    done = 0
    objects: list[ObjectFingerprint] = []
    skipped: list[str] = []
    own = executor is None
    executor = executor or local_executor(workers if len(keys) > 1 else 1)
    try:
        for read in _reads(source, keys, executor):
            scan.findings.extend(read.findings)
            if read.fingerprint is None:
                if not read.findings:
                    skipped.append(read.key)
                continue
            objects.append(read.fingerprint)
            scan.records += read.fingerprint.records
            for arn, control, where in read.controls:
                seen = scan.controls.setdefault(arn, _Controls())
                places = seen.created if control == "CREATED" else seen.completed
                scan.duplicates += bool(places)  # a control record's content is its stream and type
                places.append(where)
            ids = {arn: scan.arn_id(arn, ledger) for arn, ledger in read.arns.items()}
            for row in read.rows:
                scan.rows.append((*row[:6], ids[row[6]], *row[7:]))
                if len(scan.rows) >= _BATCH:
                    scan.flush()
            done += read.fingerprint.size
            if progress:
                progress(done, total)
    finally:
        if own:
            executor.close()
    scan.flush()
    conn.commit()
    archive = StreamArchive(objects, scan.findings, set(), None, None, None, spill_path, records=scan.records)
    _judge(scan, archive)
    archive.duplicates = scan.duplicates
    if skipped:
        archive.findings.append(Finding(
            "stream-objects-skipped", Kind.CONSISTENCY, Severity.NOTE,
            f"{len(skipped)} object(s) are not stream archive objects and were not read as such: "
            f"{', '.join(skipped[:5])}{' …' if len(skipped) > 5 else ''}", Location()))
    if scan.duplicates:
        archive.findings.append(Finding(
            "stream-duplicates-collapsed", Kind.CONSISTENCY, Severity.NOTE,
            f"{scan.duplicates} record(s) were delivered more than once with the same content (Kinesis delivers "
            "at least once); each is counted once", Location()))
    conn.commit()
    conn.close()
    archive.seconds = time.perf_counter() - started
    return archive


def _judge(scan: _Scan, archive: StreamArchive) -> None:
    """What only the whole archive shows, in the order a reader would want it."""
    conn = scan.conn
    strand, ledger = _main_ledger(conn)
    archive.strand_id, archive.ledger = strand, ledger
    if strand is None:
        archive.findings.append(Finding("stream-archive-empty", Kind.CONSISTENCY, Severity.ERROR,
                                        "no QLDB stream block records found", Location()))
        return
    _mark_foreign(scan, archive, strand, ledger)  # first: a copy from another ledger is no duplicate
    _collapse_copies(scan)
    first, last, blocks = conn.execute(
        "SELECT MIN(seq), MAX(seq), COUNT(*) FROM (SELECT seq FROM records WHERE strand = ? AND kind = ? "
        "AND foreign_ledger = 0 GROUP BY seq)", (strand, spill.KIND_SUMMARY)).fetchone()
    archive.first, archive.last, archive.blocks = first, last, blocks
    archive.stream_arns = {arn for (arn,) in conn.execute("SELECT arn FROM arns WHERE ledger = ?", (ledger,))}
    completed = {arn for arn in archive.stream_arns if scan.controls.get(arn, _Controls()).completed}
    _orphan_details(scan, archive, strand, bool(completed) and completed == archive.stream_arns)
    _check_matching(scan, archive, strand)
    _check_controls(scan, archive)
    conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                     [("strand", strand), ("ledger", ledger or ""), ("first", str(first)), ("last", str(last))])


def _location(scan: _Scan, obj: int, strand: str | None, seq: int | None) -> Location:
    return Location(scan.keys[obj], None if strand is None or seq is None else BlockAddress(strand, seq))


def _collapse_copies(scan: _Scan) -> None:
    """Copies of one record in other bytes: one record when their payloads are Ion-equal, else a conflict.

    Only the archive's own ledger's records: another ledger's are findings already, and never used.
    """
    conn = scan.conn
    groups = conn.execute(
        "SELECT strand, seq, kind, doc, version FROM records WHERE foreign_ledger = 0 "
        "GROUP BY strand, seq, kind, doc, version HAVING COUNT(*) > 1").fetchall()
    for strand, seq, kind, doc, version in groups:
        rows = conn.execute(
            "SELECT id, body, obj, label FROM records WHERE strand = ? AND seq = ? AND kind = ? AND doc = ? "
            "AND version = ? AND foreign_ledger = 0 ORDER BY id", (strand, seq, kind, doc, version)).fetchall()
        kept: dict[bytes, tuple[int, int, str]] = {}
        for row_id, body, obj, label in rows:
            key = _payload_key(body)
            if key in kept:
                conn.execute("DELETE FROM records WHERE id = ?", (row_id,))
                scan.duplicates += 1
            else:
                kept[key] = (row_id, obj, label)
        if len(kept) > 1:
            variants = sorted(kept.values())
            what = "BLOCK_SUMMARY" if kind == spill.KIND_SUMMARY else f"REVISION_DETAILS of document {doc} v{version}"
            (_, first_obj, first_label), others = variants[0], variants[1:]
            for _row, obj, label in others:
                scan.findings.append(Finding(
                    "stream-record-conflict", Kind.CONSISTENCY, Severity.ERROR,
                    f"{label}: {what} differs in content from the copy at {scan.keys[first_obj]}, {first_label} "
                    "(the first copy is used; one of them is not the ledger's)",
                    _location(scan, obj, strand, seq)))


def _main_ledger(conn: sqlite3.Connection) -> tuple[str | None, str | None]:
    """The archive's ledger: the strand with the most block summaries, and the ledger of most of its records.

    Both counted in streams over the identity index, in memory bounded by
    the number of distinct strands and ARNs: a GROUP BY on a column no index
    orders would sort every row, in memory up to the spill's cache size.
    """
    row = conn.execute("SELECT strand FROM records WHERE kind = ? GROUP BY strand ORDER BY COUNT(*) DESC, strand "
                       "LIMIT 1", (spill.KIND_SUMMARY,)).fetchone()
    if row is None:
        row = conn.execute("SELECT strand FROM records GROUP BY strand ORDER BY COUNT(*) DESC, strand LIMIT 1"
                           ).fetchone()
    if row is None:
        return None, None
    per_arn: Counter[int] = Counter(arn for (arn,) in conn.execute("SELECT arn FROM records WHERE strand = ?", row))
    ledgers = dict(conn.execute("SELECT id, ledger FROM arns").fetchall())
    per_ledger: Counter[str] = Counter()
    for arn, count in per_arn.items():
        per_ledger[ledgers[arn]] += count
    return row[0], min(per_ledger.items(), key=lambda item: (-item[1], item[0]))[0]


def _mark_foreign(scan: _Scan, archive: StreamArchive, strand: str, ledger: str | None) -> None:
    conn = scan.conn
    conn.execute("UPDATE records SET foreign_ledger = 1 WHERE strand != ? OR arn IN "
                 "(SELECT id FROM arns WHERE ledger != ?)", (strand, ledger))
    named = 0
    counts: Counter[str] = Counter()
    for rec_strand, rec_seq, kind, obj, label, arn, rec_ledger in conn.execute(
            "SELECT r.strand, r.seq, r.kind, r.obj, r.label, a.arn, a.ledger FROM records r JOIN arns a "
            "ON a.id = r.arn WHERE r.foreign_ledger = 1 ORDER BY r.id"):
        why = (f"strand {rec_strand}, not the archive's {strand}" if rec_strand != strand
               else f"stream {arn} of ledger {rec_ledger.rsplit(':', 1)[-1]}, not the archive's")
        counts[why] += 1
        if named < FOREIGN_FINDINGS:
            named += 1
            what = "BLOCK_SUMMARY" if kind == spill.KIND_SUMMARY else "REVISION_DETAILS"
            archive.findings.append(Finding(
                "stream-record-other-ledger", Kind.CONSISTENCY, Severity.ERROR,
                f"{label}: {what} of another ledger ({why}); it is not used",
                _location(scan, obj, rec_strand, rec_seq)))
    if sum(counts.values()) > named:
        archive.findings.append(Finding(
            "stream-record-other-ledger", Kind.CONSISTENCY, Severity.ERROR,
            f"{sum(counts.values()) - named} more record(s) of other ledgers, not named one by one: "
            + "; ".join(f"{n} with {why}" for why, n in counts.items()), Location()))
    for arn, seen in scan.controls.items():
        arn_ledger = conn.execute("SELECT ledger FROM arns WHERE arn = ?", (arn,)).fetchone()[0]
        if arn_ledger != ledger:
            archive.findings.append(Finding(
                "stream-record-other-ledger", Kind.CONSISTENCY, Severity.ERROR,
                f"CONTROL record(s) of stream {arn}, of another ledger, at {(seen.created + seen.completed)[0]}",
                Location()))


def _orphan_details(scan: _Scan, archive: StreamArchive, strand: str, all_completed: bool) -> None:
    """Details whose block has no summary: a summary lost inside the range; outside it, not reached."""
    for seq, count, obj, label in scan.conn.execute(
            "SELECT d.seq, COUNT(*), d.obj, d.label FROM records d WHERE d.strand = ? AND d.kind = ? "
            "AND d.foreign_ledger = 0 AND NOT EXISTS (SELECT 1 FROM records s WHERE s.strand = d.strand "
            "AND s.seq = d.seq AND s.kind = ? AND s.foreign_ledger = 0) GROUP BY d.seq ORDER BY d.seq",
            (strand, spill.KIND_DETAILS, spill.KIND_SUMMARY)).fetchall():
        where = _location(scan, obj, strand, seq)
        inside = archive.first is not None and archive.first <= seq <= archive.last  # type: ignore[operator]
        if inside or all_completed:
            scan_message = ("inside the archive's block range" if inside else
                            "although every stream of the archive COMPLETED")
            archive.findings.append(Finding(
                "stream-summary-missing", Kind.CONSISTENCY, Severity.ERROR,
                f"{label}: {count} REVISION_DETAILS record(s) of block {seq} arrived, but its BLOCK_SUMMARY did not "
                f"({scan_message}): the block is missing and these revisions cannot be verified", where))
        else:
            archive.findings.append(Finding(
                "stream-details-beyond-summaries", Kind.UNPROVEN, Severity.WARNING,
                f"{label}: {count} REVISION_DETAILS record(s) of block {seq}, outside the summarized blocks "
                f"{archive.first}..{archive.last}, whose BLOCK_SUMMARY is not in the archive: they cannot be verified "
                "or loaded (an archive cut while the stream ran ends like this)", where))


#: A spill row as ``_block_rows`` gives it: (seq, kind, id, entries, doc, version, rhash, obj, label[, body]).
_SEQ, _KIND, _ID, _ENTRIES, _DOC, _VERSION, _RHASH, _OBJ, _LABEL, _BODY = range(10)


def _block_rows(conn: sqlite3.Connection, strand: str, first: int, last: int, with_bodies: bool
                ) -> Iterator[tuple[int, tuple[Any, ...], list[tuple[Any, ...]]]]:
    """(seq, first summary row, details rows in arrival order) for each summarized block of the range, in order.

    One query in the order of the identity index (strand, seq, kind, ...):
    each block's summaries (kind 1) come before its details; arrival order
    (``id``) within a block is restored here.  No second index is built
    (sorting one took memory that grew with the archive).
    """
    body = ", body" if with_bodies else ""
    rows = conn.execute(
        f"SELECT seq, kind, id, entries, doc, version, rhash, obj, label{body} FROM records "
        "INDEXED BY records_identity WHERE strand = ? AND seq BETWEEN ? AND ? AND foreign_ledger = 0 "
        "ORDER BY seq, kind", (strand, first, last))
    current: int | None = None
    summary: tuple[Any, ...] | None = None
    details: list[tuple[Any, ...]] = []
    for row in rows:
        seq = row[0]
        if seq != current:
            if summary is not None:
                if len(details) > 1:
                    details.sort(key=_by_id)
                yield current, summary, details  # type: ignore[misc]
            current, summary, details = seq, None, []
        if row[1] == spill.KIND_SUMMARY:
            # a second summary is a conflicting copy: the first to arrive is used (the first pass reported it)
            if summary is None or row[2] < summary[2]:
                summary = row
        elif summary is not None:  # details of a block without summary: the first pass reported them
            details.append(row)
    if summary is not None:
        if len(details) > 1:
            details.sort(key=_by_id)
        yield current, summary, details  # type: ignore[misc]


def _by_id(row: tuple[Any, ...]) -> int:
    return row[_ID]


def _entries(stored: str) -> list[tuple[bytes, str | None]]:
    return [(bytes.fromhex(h), d) for h, d in json.loads(stored)]


def _matched(entries: list[tuple[bytes, str | None]], rows: list[tuple[Any, ...]]) -> list[Any] | None:
    """``match_revisions``'s answer where it is plain, without building its records; None where it is not.

    Plain: the details rows' hashes are distinct, each document entry has
    the row with its hash and its document id, and no row is left over.
    ``match_revisions`` then assigns exactly these rows and finds no problem;
    everything else is left to it.
    """
    by_hash = {row[_RHASH]: row for row in rows}
    if len(by_hash) != len(rows):
        return None
    assigned: list[Any] = []
    for digest, doc in entries:
        if doc is None:
            assigned.append(None)
            continue
        row = by_hash.pop(digest, None)
        if row is None or row[_DOC] != doc:
            return None
        assigned.append(row)
    return None if by_hash else assigned


def _check_matching(scan: _Scan, archive: StreamArchive, strand: str) -> None:
    if archive.first is None or archive.last is None:
        return
    for seq, summary, rows in _block_rows(scan.conn, strand, archive.first, archive.last, with_bodies=False):
        entries = _entries(summary[_ENTRIES])
        if _matched(entries, rows) is not None:
            continue
        details = [DetailsRef(r[_ID], r[_DOC], r[_VERSION], r[_RHASH], r[_OBJ], r[_LABEL]) for r in rows]
        _assigned, problems = match_revisions(entries, details)
        for problem in problems:
            d = problem.details
            obj, label = (d.obj, d.label) if d is not None else (summary[_OBJ], summary[_LABEL])
            archive.findings.append(Finding(
                problem.code, Kind.CONSISTENCY, Severity.ERROR, f"{label}: {problem.message}",
                Location(scan.keys[obj], BlockAddress(strand, seq), problem.entry,
                         d.doc if d is not None else None, d.version if d is not None else None)))


def _check_controls(scan: _Scan, archive: StreamArchive) -> None:
    for arn in sorted(archive.stream_arns):
        seen = scan.controls.get(arn, _Controls())
        if not seen.completed:
            archive.findings.append(Finding(
                "stream-not-completed", Kind.UNPROVEN, Severity.WARNING,
                f"no CONTROL COMPLETED record of stream {arn}: the stream was cancelled or still running, or the "
                "archive is incomplete; records it delivered after the last one here would be missing",
                Location()))
        if not seen.created:
            archive.findings.append(Finding(
                "stream-created-missing", Kind.UNPROVEN, Severity.NOTE,
                f"no CONTROL CREATED record of stream {arn}: the archive may not hold the stream's beginning",
                Location()))


# --- the second pass -----------------------------------------------------------------------------


def _parse_stored(bodies: list[bytes]) -> list[Any]:
    """Records the first pass already parsed (their framing checked) from this very spill file.

    One C reader over a block's records together (each is a whole Ion stream
    with its own version marker, so their concatenation is one valid stream):
    measured on the 20,000-revision sample, 15% less CPU than a reader per
    record.  Anything the C reader declines is parsed again one record at a
    time through ``ionparse``, which falls back to the pure-Python reader.
    """
    if simpleion.c_ext:
        try:
            values = simpleion.loads(b"".join(bodies), single_value=False, value_model=VALUE_MODEL,
                                     text_buffer_size_limit=C_TEXT_BUFFER_LIMIT)
            if len(values) == len(bodies):
                return values
        except (IonException, OverflowError, ValueError, MemoryError):
            pass
    return [loads(body, own_encoding=True) for body in bodies]


def iter_stream_blocks(spill_path: Path, first: int, last: int, hashed_data: bool = False
                       ) -> Iterator[tuple[Any, dict[int, str]]]:
    """(block, not_present) for every summarized block with ``first <= seq <= last``, in sequence order.

    The block is shaped as a journal export holds it: the summary's fields
    (``revisionSummaries`` left out) and ``revisions`` in the summary's order,
    each the REVISION_DETAILS record's ``revision`` exactly as delivered, or
    ``{hash}`` for a system revision (a summary without ``documentId``) and
    for a revision whose details never arrived.  ``not_present`` maps the
    index of each of the latter to the document id its summary names, to tell
    them from system revisions (``check_block``'s ``absent``).

    ``hashed_data`` (verification that stores nothing, with
    ``streamhashed.hashed_prover``): a revision's ``data`` is hashed from the
    record's bytes in C and left a ``HashedData``, never parsed, wherever
    ``native.stream_details`` reads the record; its ``data`` field then comes
    last in the revision.

    Opens its own read-only connection: callable from any process.
    """
    conn = spill.open_read_only(spill_path)
    try:
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        strand = meta.get("strand")
        if strand is None:
            return
        for _seq, summary, rows in _block_rows(conn, strand, first, last, with_bodies=True):
            entries = _entries(summary[_ENTRIES])
            assigned = _matched(entries, rows)
            if assigned is None:
                refs = [DetailsRef(r[_ID], r[_DOC], r[_VERSION], r[_RHASH]) for r in rows]
                bodies = {r[_ID]: r for r in rows}
                assigned = [None if ref is None else bodies[ref.id] for ref in match_revisions(entries, refs)[0]]
            yield _rebuild(summary, entries, assigned, hashed_data)
    finally:
        conn.close()


def _rebuild(summary: tuple[Any, ...], entries: list[tuple[bytes, str | None]], assigned: list[Any],
             hashed_data: bool) -> tuple[Any, dict[int, str]]:
    """One block as an export holds it, from its summary row and the details rows assigned to its entries."""
    bodies = [summary[_BODY]]
    digests: list[bytes | None] = []  # per assigned row: the data's hash where it was split off in C
    for row in assigned:
        if row is None:
            continue
        split = native.stream_details(row[_BODY]) if hashed_data else None
        bodies.append(row[_BODY] if split is None else split[0])
        digests.append(None if split is None else split[1])
    values = _parse_stored(bodies)
    # The block is the summary's payload itself, its revisionSummaries taken out (the fields keep their
    # order, repeated ones their copies) and ``revisions`` added last.
    block = field_or_none(values[0], "payload")
    raw_entries = field_or_none(block, "revisionSummaries")
    if "revisionSummaries" in block:
        del block["revisionSummaries"]
    block.ion_annotations = ()
    revisions = []
    not_present: dict[int, str] = {}
    position = 1
    for i, row in enumerate(assigned):
        if row is not None:
            digest = digests[position - 1]
            if digest is None:
                revisions.append(field_or_none(field_or_none(values[position], "payload"), "revision"))
            else:
                revision = values[position]  # the revision itself, its data split off
                revision.add_item("data", HashedData(digest))
                revisions.append(revision)
            position += 1
            continue
        document_id = entries[i][1]
        if document_id is not None:
            not_present[i] = document_id
        hash_only = IonPyDict()
        hash_only.add_item("hash", raw_entries[i]["hash"])
        revisions.append(hash_only)
    if revisions:
        block.add_item("revisions", revisions)
    return block, not_present


class RecordOrigin(NamedTuple):
    """Where a rebuilt block's records came from: for naming them in ``check_block``'s findings."""

    revision_index: int | None  # None for the BLOCK_SUMMARY
    object_key: str
    label: str  # "record #12 (byte 3456)"


def record_origins(spill_path: Path, seq: int) -> list[RecordOrigin]:
    """The records ``iter_stream_blocks`` used for block ``seq``: the summary first, then each revision's details.

    A block that fails ``check_block`` is rare; this lets a report name the
    object and record behind it (a block has no single object in an archive).
    """
    conn = spill.open_read_only(spill_path)
    try:
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        strand = meta.get("strand")
        if strand is None:
            return []
        keys = dict(conn.execute("SELECT id, key FROM objects").fetchall())
        for _seq, summary, rows in _block_rows(conn, strand, seq, seq, with_bodies=False):
            refs = [DetailsRef(r[_ID], r[_DOC], r[_VERSION], r[_RHASH], r[_OBJ], r[_LABEL]) for r in rows]
            assigned, _problems = match_revisions(_entries(summary[_ENTRIES]), refs)
            out = [RecordOrigin(None, keys[summary[_OBJ]], summary[_LABEL])]
            out += [RecordOrigin(i, keys[ref.obj], ref.label) for i, ref in enumerate(assigned) if ref is not None]
            return out
        return []
    finally:
        conn.close()
