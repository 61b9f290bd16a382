"""The objects of a QLDB stream archive, and the stream records inside each one.

A stream archive is whatever was kept of a QLDB journal stream's Kinesis
records.  Three shapes are read:

* Firehose objects, ``<prefix>YYYY/MM/DD/HH/<delivery-stream>-<version>-YYYY-MM-DD-HH-MM-SS-<uuid>[.gz]``:
  the records' data concatenated.  Each QLDB record is a standalone binary
  Ion stream (version marker, local symbol tables, exactly one struct), so
  records are split by walking that framing, never by searching for a
  delimiter: a newline the user configured after each record is skipped
  where a record has ended, while a ``0x0A`` inside a record is just a byte.
* ``aws kinesis get-records`` responses saved as JSON (``Records[].Data``), and
* Lambda event JSON (``Records[].kinesis.data``): base64, possibly
  KPL-aggregated (``kpl.deaggregate``).  One file may hold several such
  documents one after another (appended command output).

Objects are recognised by their first bytes (binary Ion version marker,
gzip magic, JSON ``{``), and Firehose objects by their names as well.
Records come out as ``RawRecord``; what cannot be read comes out, in its
place, as a ``RecordError`` naming the record, and reading goes on where it
safely can (the next version marker, the next Kinesis record), so one bad
record does not hide the good ones after it.  Memory holds one record (one
JSON document) at a time, never the object.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import gzip
import json
import re
from collections.abc import Callable, Iterator, Mapping
from typing import IO, Any, NamedTuple

from .kpl import KplError, deaggregate
from .sources import Source
from .verify.ionframe import BINARY_IVM, MAX_TOP_LEVEL_BYTES
from .verify.ionparse import IonParseError, loads

__all__ = [
    "FIREHOSE_NAME",
    "GZIP_MAGIC",
    "NotRecords",
    "RawRecord",
    "RecordError",
    "classify_key",
    "iter_object_records",
    "parse_record",
    "sniff",
]

FIREHOSE_NAME = re.compile(
    r"(?:^|/)(?P<stream>[^/]+)-(?P<version>\d+)-(?P<time>\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2})-"
    r"(?P<uuid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})(?:\.gz)?$"
)
GZIP_MAGIC = b"\x1f\x8b"
_NEWLINE = 0x0A
_CHUNK = 1 << 16
#: One JSON document (a get-records response is at most 10 MB, a Lambda event 6 MB) may grow this far.
MAX_JSON_DOCUMENT_CHARS = 256 << 20


class RawRecord(NamedTuple):
    """One QLDB stream record: its bytes and its parsed value; ``index`` counts records in the object from 0."""

    index: int
    data: bytes
    label: str  # where it is, for messages: "record #3 (byte 1234)", "record #3 (Records[2], KPL user record 1)"
    value: Any  # the parsed top-level struct


class RecordError(NamedTuple):
    """A record (or a stretch of the object) that could not be read; ``index`` as for RawRecord."""

    index: int
    label: str
    message: str


class NotRecords(NamedTuple):
    """The object is not a stream archive object at all (a JSON file without ``Records``, say)."""

    reason: str


def sniff(head: bytes) -> str | None:
    """``"ion"``, ``"gzip"``, ``"json"`` or None, from an object's first bytes."""
    if head[:4] == BINARY_IVM:
        return "ion"
    if head[:2] == GZIP_MAGIC:
        return "gzip"
    if head.lstrip(b" \t\r\n\xef\xbb\xbf")[:1] in (b"{", b"["):
        return "json"
    return None


class _Prefixed:
    """A reader that first returns bytes already read (the sniffed head), then the rest."""

    def __init__(self, head: bytes, raw: IO[bytes]) -> None:
        self.head = head
        self.raw = raw

    def read(self, size: int = -1) -> bytes:
        if self.head:
            if size is None or size < 0:
                data, self.head = self.head + self.raw.read(), b""
                return data
            data, self.head = self.head[:size], self.head[size:]
            return data
        return self.raw.read(size)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self.raw.close()


def parse_record(data: bytes) -> Any:
    """The record's one struct, through ``ionparse`` (framing checked before the C reader sees it)."""
    value = loads(data)
    if not isinstance(value, Mapping):
        raise IonParseError(f"the record is a {type(value).__name__}, not a struct")
    return value


def iter_object_records(
    raw: IO[bytes], key: str, parse: Callable[[bytes], Any] = parse_record
) -> Iterator[RawRecord | RecordError | NotRecords]:
    """Every record of one archive object read from ``raw`` (its stored bytes, gzip or not), parsed once.

    ``parse`` raises ``IonParseError`` for bytes that are no stream record.
    """
    head = raw.read(_CHUNK)
    kind = sniff(head)
    stream: IO[bytes] = _Prefixed(head, raw)  # type: ignore[assignment]
    if kind == "gzip":
        stream = gzip.GzipFile(fileobj=stream, mode="rb")  # type: ignore[assignment]
        try:
            head = stream.read(_CHUNK)
        except (OSError, EOFError) as exc:
            yield RecordError(0, "record #0", f"the object is not valid gzip: {exc}")
            return
        kind = sniff(head)
        stream = _Prefixed(head, stream)  # type: ignore[assignment]
    if kind == "ion":
        yield from _firehose_records(stream, parse)
    elif kind == "json":
        yield from _json_records(stream, parse)
    elif FIREHOSE_NAME.search(key):
        yield RecordError(0, "record #0", "a Firehose object name, but the contents start neither with a binary Ion "
                                          f"version marker nor with JSON (first bytes {head[:8].hex()})")
    else:
        yield NotRecords("neither binary Ion nor JSON")


# --- Firehose: concatenated binary Ion streams --------------------------------------------------


class _Overrun(Exception):
    pass


def _length(buf: bytearray, pos: int, end: int) -> tuple[int, int] | None:
    """(declared body length, body start) of the value at ``pos``; None if the buffer ends first."""
    descriptor = buf[pos]
    size = descriptor & 0x0F
    body = pos + 1
    if size == 14 or (descriptor >> 4 == 13 and size == 1):
        size = 0
        for i in range(10):
            if body + i >= end:
                return None
            byte = buf[body + i]
            size = (size << 7) | (byte & 0x7F)
            if byte & 0x80:
                return size, body + i + 1
        raise _Overrun("not a stream record: a length field runs over 10 bytes")
    return size, body


def _record_end(buf: bytearray, start: int, end: int) -> int | None:
    """The end of the record starting at ``start`` (a version marker), None when more bytes are needed.

    A record is the version marker, any local symbol tables (annotated
    values) and NOP pads, then one struct, which ends it.
    """
    pos = start + 4
    while True:
        if pos >= end:
            return None
        descriptor = buf[pos]
        kind = descriptor >> 4
        if descriptor == 0xE0:
            raise _Overrun("not a stream record: a second version marker before the record's struct")
        if kind not in (0, 13, 14) or descriptor in (0x0F, 0xDF, 0xEF):
            raise _Overrun(f"not a stream record: type descriptor 0x{descriptor:02x} where a symbol table or "
                           f"the record's struct belongs")
        found = _length(buf, pos, end)
        if found is None:
            return None
        size, body = found
        if size > MAX_TOP_LEVEL_BYTES:
            raise _Overrun(f"not a stream record: a value declares {size} bytes, more than any record holds")
        value_end = body + size
        if value_end > end:
            return None
        pos = value_end
        if kind == 13:
            return pos


def _firehose_records(stream: IO[bytes], parse: Callable[[bytes], Any]) -> Iterator[RawRecord | RecordError]:
    buf = bytearray()
    offset = 0  # stream offset of buf[0]
    pos = 0  # where the next record (or the search for one) starts
    eof = False
    index = 0

    def fill() -> bool:
        """Append a chunk; False at the end.  Only appends: indices into ``buf`` stay valid."""
        nonlocal eof, buf
        if eof:
            return False
        chunk = stream.read(max(_CHUNK, len(buf) - pos))
        if not chunk:
            eof = True
            return False
        buf += chunk
        return True

    def compact() -> None:
        """Drop what lies before ``pos``: called only where ``pos`` is the one live index."""
        nonlocal buf, offset, pos
        if pos > (1 << 20):
            del buf[:pos]
            offset += pos
            pos = 0

    while True:
        compact()
        while True:  # the newline a Firehose configuration may put after each record
            while pos < len(buf) and buf[pos] == _NEWLINE:
                pos += 1
            if pos < len(buf) or not fill():
                break
        if pos >= len(buf):
            return
        start = pos
        label = f"record #{index} (byte {offset + start})"
        try:
            while len(buf) - start < 4 and fill():
                pass
            if buf[start : start + 4] != BINARY_IVM:
                raise _Overrun(f"not a stream record: expected a binary Ion version marker, found "
                               f"{bytes(buf[start:start + 4]).hex()}")
            while (end := _record_end(buf, start, len(buf))) is None:
                if not fill():
                    raise _Overrun(f"the object ends inside this record ({len(buf) - start} bytes of it present, "
                                   f"more declared): truncated")
            data = bytes(buf[start:end])
            try:
                value = parse(data)
            except IonParseError as exc:
                while len(buf) - end < 5 and fill():
                    pass
                if _next_record_starts(buf, end):  # the framing held: only this record's contents are bad
                    yield RecordError(index, label, f"not a valid stream record: {exc}")
                    index += 1
                    pos = end
                    continue
                raise _Overrun(f"not a valid stream record ({exc}), and no record follows where it would end: "
                               f"truncated or corrupt") from exc
        except _Overrun as exc:
            yield RecordError(index, label, f"{exc}; reading resumes at the next version marker, if any")
            index += 1
            pos = start + 1
            while (found := buf.find(BINARY_IVM, pos)) < 0:
                pos = max(pos, len(buf) - 3)
                compact()
                if not fill():
                    return
            pos = found
            continue
        yield RawRecord(index, data, label, value)
        index += 1
        pos = end


def _next_record_starts(buf: bytearray, pos: int) -> bool:
    """True at the end of the object or where a version marker (after any newline) starts the next record."""
    while pos < len(buf) and buf[pos] == _NEWLINE:
        pos += 1
    return pos >= len(buf) or buf[pos : pos + 4] == BINARY_IVM


# --- get-records and Lambda JSON ---------------------------------------------------------------------


def _json_documents(stream: IO[bytes]) -> Iterator[Any]:
    """Each JSON document in the stream, one after another (whitespace between them)."""
    decoder = json.JSONDecoder()
    text_decoder = codecs.getincrementaldecoder("utf-8-sig")()
    text = ""
    pos = 0
    eof = False
    while True:
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        if pos >= len(text):
            if eof:
                return
            chunk = stream.read(_CHUNK)
            eof = not chunk
            text = text[pos:] + text_decoder.decode(chunk, final=eof)
            pos = 0
            continue
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            if eof:
                raise ValueError(f"invalid JSON at character {exc.pos}: {exc.msg}") from exc
            if len(text) - pos > MAX_JSON_DOCUMENT_CHARS:
                raise ValueError(f"a JSON document longer than {MAX_JSON_DOCUMENT_CHARS} characters") from exc
            chunk = stream.read(max(_CHUNK, len(text) - pos))
            eof = not chunk
            text = text[pos:] + text_decoder.decode(chunk, final=eof)
            pos = 0
            continue
        yield value
        pos = end


def _kinesis_data(entry: Any) -> str | None:
    if not isinstance(entry, dict):
        return None
    if isinstance(entry.get("kinesis"), dict):  # Lambda event
        data = entry["kinesis"].get("data")
    else:  # get-records (the CLI and boto3 spell it Data)
        data = entry.get("Data", entry.get("data"))
    return data if isinstance(data, str) else None


def _json_records(stream: IO[bytes], parse: Callable[[bytes], Any]) -> Iterator[RawRecord | RecordError | NotRecords]:
    index = 0
    documents = 0
    try:
        for document in _json_documents(stream):
            records = document.get("Records") if isinstance(document, dict) else None
            if not isinstance(records, list):
                if documents == 0:
                    yield NotRecords("JSON, but not a Kinesis get-records response or Lambda event (no Records)")
                    return
                yield RecordError(index, f"record #{index} (document {documents})",
                                  "a JSON document without a Records list among get-records responses")
                documents += 1
                continue
            where = f"document {documents}, " if documents else ""
            for position, entry in enumerate(records):
                label = f"record #{index} ({where}Records[{position}])"
                data = _kinesis_data(entry)
                if data is None:
                    yield RecordError(index, label, "a Kinesis record without base64 data")
                    index += 1
                    continue
                try:
                    raw = base64.b64decode(data, validate=True)
                except (binascii.Error, ValueError) as exc:
                    yield RecordError(index, label, f"data is not valid base64: {exc}")
                    index += 1
                    continue
                try:
                    user_records = deaggregate(raw)
                except KplError as exc:
                    yield RecordError(index, label, f"KPL-aggregated record is corrupt: {exc}")
                    index += 1
                    continue
                aggregated = len(user_records) > 1 or user_records[0] is not raw
                for sub, data_bytes in enumerate(user_records):
                    sub_label = (f"record #{index} ({where}Records[{position}], KPL user record {sub})"
                                 if aggregated else label)
                    try:
                        value = parse(data_bytes)
                    except IonParseError as exc:
                        yield RecordError(index, sub_label, f"not a valid stream record: {exc}")
                    else:
                        yield RawRecord(index, data_bytes, sub_label, value)
                    index += 1
            documents += 1
    except ValueError as exc:
        yield RecordError(index, f"record #{index}", f"the JSON cannot be read past here: {exc}")


def classify_key(source: Source, key: str) -> str | None:
    """``"firehose"``, ``"json"`` or None: what the object looks like from its name and first bytes."""
    with source.open_raw(key) as raw:
        head = raw.read(4096)
        kind = sniff(head)
        if kind == "gzip":
            try:
                with gzip.GzipFile(fileobj=_Prefixed(head, raw), mode="rb") as inner:  # type: ignore[arg-type]
                    kind = sniff(inner.read(4096))
            except (OSError, EOFError):
                return None
    if kind == "ion":
        return "firehose"
    if kind == "json":
        return "json"
    return None
