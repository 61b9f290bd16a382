"""The sample ledger as a QLDB stream archive: what Kinesis, Firehose and people's scripts left behind.

``write_stream_archive`` takes the export-shaped blocks that ``build_block``
makes (``iter_ledger_blocks`` yields them) and writes what a QLDB journal
stream would have delivered for them: a CONTROL CREATED record, per block one
BLOCK_SUMMARY (the block without its revisions, plus ``revisionSummaries``)
and one REVISION_DETAILS per user revision, and CONTROL COMPLETED unless the
stream is to look cancelled.  Each record is a standalone binary Ion stream
(its own version marker and local symbol table), as QLDB writes them.

Delivery is simulated as it happens: at-least-once (a fraction of records is
delivered again, later and in another object, some re-encoded with another
symbol table: the same content in other bytes) and out of order (records
are shuffled within a bounded window, so across object boundaries).  The
layouts are those found in practice:

* ``firehose``: Firehose objects ``YYYY/MM/DD/HH/<stream>-1-YYYY-MM-DD-HH-MM-SS-<uuid>``,
  the records concatenated (``newline``: a ``\\n`` after each), some gzipped
  (``.gz``).  Firehose de-aggregates, so ``aggregate`` is refused here.
* ``get-records``: ``aws kinesis get-records`` responses saved as JSON.
* ``lambda``: Lambda event JSON as a Kinesis trigger receives it.

With ``aggregate`` the two JSON layouts carry KPL-aggregated Kinesis records
(QLDB's default).  The aggregator here is written apart from ``kpl.py``'s
reader, so one misreading of the format cannot hide in both.

Memory stays bounded: one reorder window, one duplicate delay queue and one
object's records are held, never the ledger.
"""

from __future__ import annotations

import base64
import datetime as _dt
import gzip
import hashlib
import json
import random
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from amazon.ion import simpleion
from amazon.ion.simple_types import IonPyDict

from ..ionwrite import dumps_binary
from .blocks import struct

LAYOUTS = ("firehose", "get-records", "lambda")
#: amazon-ion's C writer keeps this many significant digits of a decimal (ionwrite).
C_WRITER_DECIMAL_DIGITS = 34
BASE_TIME = _dt.datetime(2024, 3, 1, 9, 0, 0, tzinfo=_dt.UTC)

#: A transform may rewrite or drop (return None) each record before it is encoded: the tests' tamper hook.
Transform = Callable[[IonPyDict], IonPyDict | None]


@dataclass
class StreamArchiveSummary:
    out: Path
    stream_arn: str
    keys: list[str] = field(default_factory=list)  # relative to ``out``, in writing order
    records: int = 0  # QLDB stream records written, duplicates included
    duplicates: int = 0
    blocks: int = 0
    revisions: int = 0  # REVISION_DETAILS records, before duplication


def stream_arn(ledger_name: str, seed: int, region: str = "us-east-1", account: str = "123456789012") -> str:
    rng = random.Random(f"stream-id {seed}")
    stream_id = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") for _ in range(22))
    return f"arn:aws:qldb:{region}:{account}:stream/{ledger_name}/{stream_id}"


# --- records -------------------------------------------------------------------------


def control_record(arn: str, control_type: str) -> IonPyDict:
    return struct([("qldbStreamArn", arn), ("recordType", "CONTROL"),
                   ("payload", struct([("controlRecordType", control_type)]))])


def block_records(block: Any, arn: str) -> list[IonPyDict]:
    """The BLOCK_SUMMARY and REVISION_DETAILS records QLDB streams for one block."""
    revisions = block.get("revisions", [])
    summary = IonPyDict()
    for name, value in block.items():
        if name != "revisions":
            summary.add_item(name, value)
    if revisions:
        entries = []
        for rev in revisions:
            meta = rev.get("metadata")
            pairs = [("hash", rev["hash"])]
            if meta is not None:
                pairs.append(("documentId", meta["id"]))
            entries.append(struct(pairs))
        summary.add_item("revisionSummaries", entries)
    out = [struct([("qldbStreamArn", arn), ("recordType", "BLOCK_SUMMARY"), ("payload", summary)])]
    documents = block["transactionInfo"]["documents"] if "transactionInfo" in block else {}
    for rev in revisions:
        if "metadata" not in rev:
            continue  # a system revision: only its hash, in the summary
        doc = documents[rev["metadata"]["id"]]
        revision = struct([("blockAddress", block["blockAddress"])] + [(k, v) for k, v in rev.items()])
        table = struct([("tableName", doc["tableName"]), ("tableId", doc["tableId"])])
        payload = struct([("tableInfo", table), ("revision", revision)])
        out.append(struct([("qldbStreamArn", arn), ("recordType", "REVISION_DETAILS"), ("payload", payload)]))
    return out


def _has_long_decimal(value: Any) -> bool:
    if isinstance(value, Decimal):
        return len(value.as_tuple().digits) > C_WRITER_DECIMAL_DIGITS
    if isinstance(value, dict):
        return any(_has_long_decimal(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_long_decimal(v) for v in value)
    return False


def encode_record(record: IonPyDict) -> bytes:
    """One standalone binary Ion stream: version marker, local symbol table, the record.

    amazon-ion's C writer, ~50 times faster, except for a record holding a
    decimal it would round (see ``ionwrite``): that one takes the exact
    pure-Python writer.
    """
    if _has_long_decimal(record):
        return dumps_binary(record)
    return simpleion.dumps(record, binary=True)


def _reversed_fields(value: Any) -> Any:
    if isinstance(value, IonPyDict):
        return struct([(k, _reversed_fields(v)) for k, v in reversed(list(value.items()))])
    return value


def reencode_record(record: IonPyDict) -> bytes:
    """The same record in other bytes: fields (and so the symbol table) in another order."""
    return encode_record(_reversed_fields(record))


# --- KPL aggregation (the writer's side) ------------------------------------------------

KPL_MAGIC = b"\xf3\x89\x9a\xc2"


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        low = n & 0x7F
        n >>= 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _field(number: int, payload: bytes | int) -> bytes:
    if isinstance(payload, int):
        return _uvarint(number << 3) + _uvarint(payload)
    return _uvarint(number << 3 | 2) + _uvarint(len(payload)) + payload


def kpl_aggregate(records: list[bytes], partition_keys: list[str]) -> bytes:
    """One KPL-aggregated Kinesis record holding ``records`` (partition keys shared through the table)."""
    table: list[str] = []
    body = bytearray()
    for data, key in zip(records, partition_keys, strict=True):
        if key not in table:
            table.append(key)
        body += _field(3, _field(1, table.index(key)) + _field(3, data))
    message = b"".join(_field(1, k.encode()) for k in table) + bytes(body)
    return KPL_MAGIC + message + hashlib.md5(message, usedforsecurity=False).digest()


# --- delivery: duplicates and reordering -----------------------------------------------------


def _deliveries(
    records: Iterator[IonPyDict], rng: random.Random, duplicate_fraction: float, reorder_window: int,
    duplicate_delay: int, summary: StreamArchiveSummary,
) -> Iterator[bytes]:
    """Encoded records as Kinesis would hand them on: some twice, later; shuffled within a window."""
    window: list[bytes] = []
    delayed: deque[tuple[int, bytes]] = deque()

    def emit(data: bytes) -> Iterator[bytes]:
        if reorder_window <= 1:
            yield data
            return
        window.append(data)
        if len(window) >= reorder_window:
            yield window.pop(rng.randrange(len(window)))

    for produced, record in enumerate(records, 1):
        data = encode_record(record)
        if duplicate_fraction and rng.random() < duplicate_fraction:
            copy = reencode_record(record) if rng.random() < 0.5 else data
            delayed.append((produced + duplicate_delay + rng.randrange(duplicate_delay + 1), copy))
            summary.duplicates += 1
        yield from emit(data)
        while delayed and delayed[0][0] <= produced:
            yield from emit(delayed.popleft()[1])
    for _due, data in delayed:
        yield from emit(data)
    rng.shuffle(window)
    yield from window


# --- layouts -----------------------------------------------------------------------------------


class _Sink:
    def __init__(self, out: Path, rng: random.Random, summary: StreamArchiveSummary) -> None:
        self.out = out
        self.rng = rng
        self.summary = summary
        self.objects = 0

    def moment(self) -> _dt.datetime:
        return BASE_TIME + _dt.timedelta(seconds=61 * self.objects)

    def write(self, relative: str, data: bytes) -> None:
        path = self.out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.summary.keys.append(relative)
        self.objects += 1


class _FirehoseSink(_Sink):
    def __init__(self, out: Path, rng: random.Random, summary: StreamArchiveSummary, delivery_stream: str,
                 gzip_fraction: float, newline: bool) -> None:
        super().__init__(out, rng, summary)
        self.delivery_stream = delivery_stream
        self.gzip_fraction = gzip_fraction
        self.newline = newline

    def flush(self, records: list[bytes]) -> None:
        moment = self.moment()
        name = (f"{moment:%Y/%m/%d/%H}/{self.delivery_stream}-1-{moment:%Y-%m-%d-%H-%M-%S}-"
                f"{uuid.UUID(int=self.rng.getrandbits(128), version=4)}")
        data = (b"\n" if self.newline else b"").join(records) + (b"\n" if self.newline else b"")
        if self.gzip_fraction and self.rng.random() < self.gzip_fraction:
            name += ".gz"
            data = gzip.compress(data, mtime=0)
        self.write(name, data)


class _JsonSink(_Sink):
    """get-records responses or Lambda events; ``aggregate`` packs user records as the KPL does."""

    def __init__(self, out: Path, rng: random.Random, summary: StreamArchiveSummary, lambda_events: bool,
                 aggregate: bool, records_per_aggregate: int, region: str, arn: str) -> None:
        super().__init__(out, rng, summary)
        self.lambda_events = lambda_events
        self.aggregate = aggregate
        self.records_per_aggregate = records_per_aggregate
        self.region = region
        self.kinesis_arn = arn.replace(":qldb:", ":kinesis:").split(":stream/")[0] + ":stream/qldb-journal"
        self.sequence = 49_600_000_000_000_000_000_000_000_000_000_000_000_000_000

    def _kinesis_records(self, records: list[bytes]) -> Iterator[tuple[str, str, bytes]]:
        i = 0
        while i < len(records):
            size = self.rng.randint(1, self.records_per_aggregate) if self.aggregate else 1
            group = records[i : i + size]
            i += size
            keys = [hashlib.sha256(r).hexdigest()[:22] for r in group]
            self.sequence += 1 + self.rng.randrange(1000)
            data = kpl_aggregate(group, keys) if self.aggregate else group[0]
            yield str(self.sequence), keys[0], data

    def flush(self, records: list[bytes]) -> None:
        arrival = self.moment().timestamp()
        entries: list[dict[str, Any]] = []
        for sequence, key, data in self._kinesis_records(records):
            encoded = base64.b64encode(data).decode("ascii")
            if self.lambda_events:
                entries.append({
                    "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": key, "sequenceNumber": sequence,
                                "data": encoded, "approximateArrivalTimestamp": arrival},
                    "eventSource": "aws:kinesis", "eventVersion": "1.0",
                    "eventID": f"shardId-000000000000:{sequence}", "eventName": "aws:kinesis:record",
                    "invokeIdentityArn": "arn:aws:iam::123456789012:role/qldb-stream-consumer",
                    "awsRegion": self.region, "eventSourceARN": self.kinesis_arn,
                })
            else:
                entries.append({"SequenceNumber": sequence, "ApproximateArrivalTimestamp": arrival, "Data": encoded,
                                "PartitionKey": key})
        if self.lambda_events:
            document: dict[str, Any] = {"Records": entries}
            name = f"lambda/event-{self.objects:05d}.json"
        else:
            document = {"Records": entries, "NextShardIterator": f"AAAAAAAA{self.objects:08d}", "MillisBehindLatest": 0}
            name = f"get-records/shardId-000000000000-{self.objects:05d}.json"
        self.write(name, (json.dumps(document, indent=1) + "\n").encode("utf-8"))


def write_stream_archive(
    out_dir: Path,
    blocks: Iterable[Any],
    ledger_name: str = "vehicle-registration",
    seed: int = 1,
    aggregate: bool = False,
    *,
    layout: str = "firehose",
    records_per_object: int = 400,
    gzip_fraction: float = 0.0,
    newline: bool = False,
    duplicate_fraction: float = 0.0,
    reorder_window: int = 0,
    completed: bool = True,
    records_per_aggregate: int = 8,
    delivery_stream: str = "qldb-journal-archive",
    region: str = "us-east-1",
    transform: Transform | None = None,
) -> StreamArchiveSummary:
    """Write ``blocks`` (export-shaped, in order) as a stream archive under ``out_dir``; deterministic in ``seed``.

    ``duplicate_fraction``: share of records delivered a second time, some
    re-encoded.  ``reorder_window``: records are shuffled within windows of
    this many (0: in order).  ``completed=False``: no CONTROL COMPLETED, as for
    a cancelled stream.  ``transform``: rewrites or drops each record (tests).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}")
    if aggregate and layout == "firehose":
        raise ValueError("Firehose de-aggregates KPL records before it writes them: aggregate needs a JSON layout")
    rng = random.Random(f"stream-archive {seed}")
    arn = stream_arn(ledger_name, seed, region)
    summary = StreamArchiveSummary(out_dir, arn)
    out_dir.mkdir(parents=True, exist_ok=True)

    def records() -> Iterator[IonPyDict]:
        sequence = [control_record(arn, "CREATED")]
        for block in blocks:
            summary.blocks += 1
            recs = block_records(block, arn)
            summary.revisions += len(recs) - 1
            sequence.extend(recs)
            yield from _transformed(sequence, transform)
            sequence = []
        if completed:
            sequence.append(control_record(arn, "COMPLETED"))
        yield from _transformed(sequence, transform)

    sink: _FirehoseSink | _JsonSink
    if layout == "firehose":
        sink = _FirehoseSink(out_dir, rng, summary, delivery_stream, gzip_fraction, newline)
    else:
        sink = _JsonSink(out_dir, rng, summary, layout == "lambda", aggregate, records_per_aggregate, region, arn)
    pending: list[bytes] = []
    delay = max(1, records_per_object)
    for data in _deliveries(records(), rng, duplicate_fraction, reorder_window, delay, summary):
        pending.append(data)
        summary.records += 1
        if len(pending) >= records_per_object:
            sink.flush(pending)
            pending = []
    if pending:
        sink.flush(pending)
    return summary


def _transformed(records: list[IonPyDict], transform: Transform | None) -> Iterator[IonPyDict]:
    for record in records:
        out = transform(record) if transform is not None else record
        if out is not None:
            yield out


__all__ = [
    "LAYOUTS",
    "StreamArchiveSummary",
    "block_records",
    "control_record",
    "encode_record",
    "kpl_aggregate",
    "reencode_record",
    "stream_arn",
    "write_stream_archive",
]


def write_sample_stream_archive(out_dir: Path, revisions: int, seed: int) -> str:
    """The ledger ``write_sample_export(…, revisions, seed=seed)`` writes, as a QLDB stream delivered it: each
    revision with the data it was committed with (a later redaction shows in its own block only).

    ``out_dir/firehose``: a Firehose archive (some objects gzipped, 2% of the records delivered twice, records
    reordered across objects); ``out_dir/get-records``: the same stream saved as `aws kinesis get-records` output,
    KPL-aggregated as QLDB wrote it by default.  Returns a one-line description.
    """
    from .export import iter_ledger_blocks

    firehose = write_stream_archive(out_dir / "firehose", iter_ledger_blocks(revisions, seed, as_committed=True),
                                    seed=seed, gzip_fraction=0.3, duplicate_fraction=0.02, reorder_window=50)
    records = write_stream_archive(out_dir / "get-records", iter_ledger_blocks(revisions, seed, as_committed=True),
                                   seed=seed, aggregate=True, layout="get-records")
    return (f"firehose/: {len(firehose.keys)} objects, {firehose.records} records ({firehose.duplicates} duplicates); "
            f"get-records/: {len(records.keys)} files, KPL-aggregated")
