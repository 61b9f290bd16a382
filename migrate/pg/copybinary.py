"""PostgreSQL's binary COPY format, written where the rows are built.

Workers encode their rows to COPY tuples themselves, so the main process,
which runs the one transaction everything is loaded in, only forwards
bytes: no per-row pickling, no per-value adaptation on the single process
that both cores wait for.  The format is PostgreSQL's (``COPY ... FROM STDIN
(FORMAT BINARY)``): a signature, then per tuple an int16 field count and per
field an int32 length (-1 for NULL) and the type's binary send form.
"""

from __future__ import annotations

import datetime as _dt
import struct
from collections.abc import Callable, Iterable
from typing import Any

import psycopg
from psycopg import sql

from .. import native

SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"  # + flags, header extension
TRAILER = b"\xff\xff"
NULL = b"\xff\xff\xff\xff"

_i16 = struct.Struct(">h").pack
_i32 = struct.Struct(">i").pack
_i64 = struct.Struct(">q").pack
_EPOCH = _dt.datetime(2000, 1, 1, tzinfo=_dt.UTC)  # PostgreSQL's timestamp epoch
_OID = {"bytea": 17, "text": 25}


def _sized(data: bytes) -> bytes:
    return _i32(len(data)) + data


def _text(value: str) -> bytes:
    return _sized(value.encode("utf-8"))


def _jsonb(value: str) -> bytes:
    return _sized(b"\x01" + value.encode("utf-8"))  # jsonb send form: version 1, then the text


def _timestamptz(value: _dt.datetime) -> bytes:
    delta = value - _EPOCH
    return b"\x00\x00\x00\x08" + _i64((delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds)


def _array(oid: int, element: Callable[[Any], bytes]) -> Callable[[list[Any]], bytes]:
    def encode(items: list[Any]) -> bytes:
        if not items:
            return _sized(_i32(0) + _i32(0) + _i32(oid))  # no dimensions
        has_null = any(item is None for item in items)
        body = [_i32(1), _i32(1 if has_null else 0), _i32(oid), _i32(len(items)), _i32(1)]
        body += [NULL if item is None else _sized(element(item)) for item in items]
        return _sized(b"".join(body))

    return encode


_ENCODERS: dict[str, Callable[[Any], bytes]] = {
    "text": _text,
    "int4": lambda v: b"\x00\x00\x00\x04" + _i32(v),
    "int8": lambda v: b"\x00\x00\x00\x08" + _i64(v),
    "bytea": lambda v: _sized(bytes(v)),
    "bool": lambda v: b"\x00\x00\x00\x01\x01" if v else b"\x00\x00\x00\x01\x00",
    "jsonb": _jsonb,
    "timestamptz": _timestamptz,
    "bytea[]": _array(_OID["bytea"], bytes),
    "text[]": _array(_OID["text"], lambda v: v.encode("utf-8")),
}


_KINDS = {"text": "t", "jsonb": "j", "int4": "i", "int8": "l", "bytea": "b", "bool": "?", "timestamptz": "T",
          "bytea[]": "B", "text[]": "S"}  # _native.copy_tuple's codes


def python_row_encoder(types: Iterable[str], extra_fields: int = 0) -> Callable[[tuple[Any, ...]], bytes]:
    """``row_encoder`` in pure Python: the reference, and the fallback."""
    encoders = [_ENCODERS[t] for t in types]
    header = _i16(len(encoders) + extra_fields)

    def encode(row: tuple[Any, ...]) -> bytes:
        return header + b"".join([NULL if v is None else enc(v) for enc, v in zip(encoders, row, strict=True)])

    return encode


def row_encoder(types: Iterable[str], extra_fields: int = 0) -> Callable[[tuple[Any, ...]], bytes]:
    """A function from a row of ``types`` to its COPY tuple (in C where the extension is built).

    ``extra_fields`` are counted in the tuple's header but appended by the
    caller (``field``): the main process adds the run id the workers do not know.
    """
    types = tuple(types)
    python = python_row_encoder(types, extra_fields)
    copy_tuple = native.copy_tuple
    if copy_tuple is None:
        return python
    kinds = "".join(_KINDS[t] for t in types).encode("ascii")
    count = len(types) + extra_fields

    def encode(row: tuple[Any, ...]) -> bytes:
        try:
            return copy_tuple(kinds, row, count)
        except (TypeError, ValueError, OverflowError):
            return python(row)  # a value the C encoder leaves to Python (say, a datetime not in UTC)

    return encode


def field(kind: str, value: Any) -> bytes:
    """One field in COPY form (NULL for None)."""
    return NULL if value is None else _ENCODERS[kind](value)


def copy_tuples(conn: psycopg.Connection, table: sql.Composable, columns: tuple[str, ...],
                chunks: Iterable[bytes]) -> None:
    """Binary COPY of tuples the workers already encoded (``copybinary``): this process only forwards bytes."""
    cols = sql.SQL(", ").join(map(sql.Identifier, columns))
    with conn.cursor() as cur, cur.copy(sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(table, cols)) as copy:
        copy.write(b"".join([SIGNATURE, *chunks, TRAILER]))
