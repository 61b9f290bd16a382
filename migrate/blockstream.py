"""Blocks out of one data object, in any of the three export formats.

ION_TEXT and ION_BINARY are one Ion stream of block structs.  JSON is JSON
Lines, one block a line, with the Ion types down-converted (DESIGN §2): the
envelope's types are known and restored exactly here; user data is restored
as JSON allows (a number with a decimal point is a decimal, with an exponent
a float) and its hash is then only *tried* — see ``check_revision``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import IO, Any

from amazon.ion.core import IonType, Timestamp
from amazon.ion.simple_types import IonPyBytes, IonPyDecimal, IonPyDict, IonPyNull

from .verify.ionframe import MAX_TOP_LEVEL_BYTES
from .verify.ionparse import IonParseError, iter_values, loads


class ObjectCorrupt(ValueError):
    """An object that is not a valid stream of blocks; ``index`` is the block position."""

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


#: The longest JSON line (one block) read: the same cap as a binary or text Ion block.
MAX_JSON_LINE_BYTES = MAX_TOP_LEVEL_BYTES


class LineTooLong(ValueError):
    pass


class HashingReader:
    """Passes bytes through while hashing them, so each object is read once.

    It also splits lines itself: an S3 body has no ``readline``, and JSON
    Lines must be read a line at a time to keep memory flat.
    """

    CHUNK = 1 << 16

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0
        self._buffer = b""

    def _fill(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.sha256.update(data)
        self.size += len(data)
        return data

    def read(self, size: int = -1) -> bytes:
        if self._buffer:
            if size is None or size < 0:
                data, self._buffer = self._buffer + self._fill(), b""
                return data
            data, self._buffer = self._buffer[:size], self._buffer[size:]
            return data
        return self._fill(size)

    def readline(self, limit: int = -1) -> bytes:
        """One line, found by searching only the bytes read since the last search (linear in the line's length).

        A line longer than ``limit`` raises ``LineTooLong`` once that much has been read: no JSON block comes
        near the limit, and hostile input must not make the reader buffer without bound.
        """
        if b"\n" not in self._buffer:
            parts = [self._buffer]
            size = len(self._buffer)
            while True:
                chunk = self._fill(self.CHUNK)
                if not chunk:
                    line, self._buffer = b"".join(parts), b""
                    return line
                parts.append(chunk)
                size += len(chunk)
                if b"\n" in chunk:
                    break
                if 0 <= limit < size:
                    raise LineTooLong(f"a JSON line longer than {limit >> 20} MiB (no QLDB block is that large)")
            self._buffer = b"".join(parts)
        line, _, self._buffer = self._buffer.partition(b"\n")
        if 0 <= limit < len(line):
            raise LineTooLong(f"a JSON line longer than {limit >> 20} MiB (no QLDB block is that large)")
        return line + b"\n"

    def tell(self) -> int:
        return self.size - len(self._buffer)

    def drain(self) -> None:
        while self._fill(1 << 20):
            pass

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self.raw.close()

    def __enter__(self) -> HashingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class StreamDigest:
    sha256: str = ""
    size: int = 0


def iter_blocks(open_raw: Callable[[], IO[bytes]], fmt: str, digest: StreamDigest, exact: bool = False
                ) -> Iterator[Any]:
    """Every block of the object; ``digest`` is filled once the object has been read to its end.

    ``exact``: Ion read with the pure-Python reader only (``ionparse.EXACT_READER_WHY``)."""
    readers: list[HashingReader] = []

    def opener() -> HashingReader:
        reader = HashingReader(open_raw())
        readers.append(reader)
        return reader

    if fmt == "JSON":
        yield from _iter_json(opener)
    else:
        try:
            yield from iter_values(opener, exact)
        except IonParseError as exc:
            raise ObjectCorrupt(str(exc), exc.index) from exc
    last = readers[-1]
    with contextlib.suppress(ValueError):  # already closed by the reader: everything was read
        last.drain()
    digest.sha256 = last.sha256.hexdigest()
    digest.size = last.size


def _iter_json(opener: Callable[[], HashingReader]) -> Iterator[Any]:
    with opener() as fh:
        index = 0
        while True:
            try:
                line = fh.readline(MAX_JSON_LINE_BYTES)
            except LineTooLong as exc:
                raise ObjectCorrupt(f"JSON line of block #{index}: {exc}", index) from exc
            if not line:
                break
            if not line.strip():
                continue
            try:
                raw = json.loads(line, parse_float=_json_number)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise ObjectCorrupt(f"JSON line of block #{index} is invalid: {exc}", index) from exc
            try:
                yield restore_block(raw)
            except (TypeError, ValueError, KeyError, AttributeError, IonParseError) as exc:
                raise ObjectCorrupt(f"JSON block #{index} has a field of the wrong type: {exc}", index) from exc
            index += 1


def _json_number(text: str) -> Any:
    if "e" in text or "E" in text:
        return float(text)
    return IonPyDecimal(Decimal(text))


# --- JSON envelope restoration ---------------------------------------------------


def _blob(value: Any) -> IonPyBytes:
    if not isinstance(value, str):
        raise TypeError(f"expected a base64 hash, found {type(value).__name__}")
    return IonPyBytes.from_value(IonType.BLOB, base64.b64decode(value, validate=True))


def _timestamp(value: Any) -> Any:
    if not isinstance(value, str):
        raise TypeError(f"expected a timestamp string, found {type(value).__name__}")
    restored = loads(value)
    if not isinstance(restored, Timestamp):
        raise ValueError(f"{value!r} is not an Ion timestamp")
    return restored


def user_value(value: Any) -> Any:
    """User data as JSON left it: the best Ion reading, not guaranteed exact."""
    if isinstance(value, dict):
        out = IonPyDict()
        for k, v in value.items():
            out.add_item(k, user_value(v))
        return out
    if isinstance(value, list):
        return [user_value(v) for v in value]
    if value is None:
        return IonPyNull.from_value(IonType.NULL, None)
    return value


def _struct(pairs: list[tuple[str, Any]]) -> IonPyDict:
    out = IonPyDict()
    for k, v in pairs:
        out.add_item(k, v)
    return out


def _restore_fields(raw: dict[str, Any], converters: dict[str, Callable[[Any], Any]]) -> IonPyDict:
    if not isinstance(raw, dict):
        raise TypeError(f"expected an object, found {type(raw).__name__}")
    pairs = []
    for key, value in raw.items():
        convert = converters.get(key, user_value)
        pairs.append((key, user_value(value) if value is None else convert(value)))
    return _struct(pairs)


def _address(value: Any) -> IonPyDict:
    return _restore_fields(value, {"strandId": str, "sequenceNo": int})


def _metadata(value: Any) -> IonPyDict:
    return _restore_fields(value, {"id": str, "version": int, "txTime": _timestamp, "txId": str})


def _revision(value: Any) -> IonPyDict:
    return _restore_fields(
        value, {"hash": _blob, "dataHash": _blob, "metadata": _metadata, "blockAddress": _address}
    )


def _statement(value: Any) -> IonPyDict:
    return _restore_fields(value, {"statement": str, "startTime": _timestamp, "statementDigest": _blob})


def _document(value: Any) -> IonPyDict:
    return _restore_fields(value, {"tableName": str, "tableId": str, "statements": lambda v: [int(i) for i in v]})


def _transaction_info(value: Any) -> IonPyDict:
    return _restore_fields(
        value,
        {
            "statements": lambda v: [_statement(s) for s in v],
            "documents": lambda v: _struct([(k, _document(d)) for k, d in v.items()]),
        },
    )


def restore_block(raw: Any) -> IonPyDict:
    if not isinstance(raw, dict):
        raise TypeError("a JSON block line must be an object")
    return _restore_fields(
        raw,
        {
            "blockAddress": _address,
            "transactionId": str,
            "blockTimestamp": _timestamp,
            "blockHash": _blob,
            "entriesHash": _blob,
            "previousBlockHash": _blob,
            "entriesHashList": lambda v: [_blob(h) for h in v],
            "transactionInfo": _transaction_info,
            "revisions": lambda v: [_revision(r) for r in v],
        },
    )
