"""Undoing Kinesis Producer Library (KPL) aggregation: one Kinesis record, many user records.

QLDB streams aggregate by default: one Kinesis record then holds several QLDB
stream records as ``F3 89 9A C2`` (magic), a protobuf ``AggregatedRecord``,
and the 16-byte MD5 of the protobuf bytes.  The schema is three messages::

    AggregatedRecord { repeated string partition_key_table = 1;
                       repeated string explicit_hash_key_table = 2;
                       repeated Record records = 3; }
    Record { required uint64 partition_key_index = 1; optional uint64 explicit_hash_key_index = 2;
             required bytes data = 3; repeated Tag tags = 4; }
    Tag    { required string key = 1; optional string value = 2; }

Why a decoder of our own rather than AWS's ``aws-kinesis-agg`` (1.2.3, the
current release, tried with protobuf 7.36): it treats a record whose MD5 does
not match as *not aggregated* and hands back the whole aggregated blob as one
user record; it prints decoding exceptions to stderr and yields nothing for
that record (a missing ``kinesisSchemaVersion`` key in the input dict was
enough to lose every user record silently); it imports the undeclared ``six``
and inserts its own directory into ``sys.path`` on import; and it pulls in
all of protobuf for three messages.  Silent loss and corruption read as
"not aggregated" are exactly what a verifier must not have, so the wire
format (varints and length-delimited fields) is decoded here, strictly: a bad
MD5, a truncated field, a varint past its end or an index outside its table
is a ``KplError``.

Pure functions, no I/O.
"""

from __future__ import annotations

import hashlib

__all__ = ["KPL_MAGIC", "KplError", "deaggregate", "is_aggregated"]

KPL_MAGIC = b"\xf3\x89\x9a\xc2"
_DIGEST_SIZE = 16

_VARINT, _FIXED64, _LENGTH_DELIMITED, _FIXED32 = 0, 1, 2, 5


class KplError(ValueError):
    """An aggregated Kinesis record that cannot be decoded whole: corrupt, truncated or not the KPL format."""


def is_aggregated(data: bytes) -> bool:
    """True when ``data`` starts with the KPL magic (a QLDB stream record, binary Ion, starts with ``E0``)."""
    return data[:4] == KPL_MAGIC


def deaggregate(data: bytes) -> list[bytes]:
    """The user records of one Kinesis record's data, in order; ``[data]`` when it is not aggregated.

    Raises ``KplError`` when the data has the magic but not a valid aggregate
    after it: a wrong MD5 is corruption, never a reason to pass the bytes on
    as if they were one record.
    """
    if not is_aggregated(data):
        return [data]
    if len(data) < len(KPL_MAGIC) + _DIGEST_SIZE:
        raise KplError(f"aggregated record of {len(data)} bytes is shorter than its magic and MD5 digest")
    message = data[len(KPL_MAGIC) : -_DIGEST_SIZE]
    stored = data[-_DIGEST_SIZE:]
    computed = hashlib.md5(message, usedforsecurity=False).digest()
    if stored != computed:
        raise KplError(f"aggregated record's MD5 digest {stored.hex()} does not match its contents ({computed.hex()})")
    return _records(message)


def _varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    value = 0
    shift = 0
    while pos < end:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift >= 64:
            raise KplError(f"varint longer than 10 bytes at byte {pos}")
    raise KplError(f"varint runs past the end of its message (byte {pos})")


def _fields(buf: bytes, pos: int, end: int) -> list[tuple[int, int, int | bytes]]:
    """``(field number, wire type, value)`` for each field of the message in ``buf[pos:end]``."""
    out: list[tuple[int, int, int | bytes]] = []
    while pos < end:
        key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise KplError(f"field number 0 at byte {pos}")
        value: int | bytes
        if wire == _VARINT:
            value, pos = _varint(buf, pos, end)
        elif wire == _LENGTH_DELIMITED:
            size, pos = _varint(buf, pos, end)
            if pos + size > end:
                raise KplError(f"field {number} declares {size} bytes, {pos + size - end} more than its message holds")
            value = buf[pos : pos + size]
            pos += size
        elif wire in (_FIXED64, _FIXED32):
            size = 8 if wire == _FIXED64 else 4
            if pos + size > end:
                raise KplError(f"fixed-size field {number} runs past the end of its message")
            value = buf[pos : pos + size]
            pos += size
        else:  # groups (3, 4) and reserved types: not in this schema, and their end cannot be found cheaply
            raise KplError(f"field {number} has wire type {wire}, which the KPL format does not use")
        out.append((number, wire, value))
    return out


def _text(value: int | bytes, what: str) -> str:
    if not isinstance(value, bytes):
        raise KplError(f"{what} is not a length-delimited string")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise KplError(f"{what} is not UTF-8") from exc


def _records(message: bytes) -> list[bytes]:
    partition_keys: list[str] = []
    hash_keys: list[str] = []
    records: list[tuple[int, int | None, bytes]] = []
    for number, wire, value in _fields(message, 0, len(message)):
        if number == 1:
            partition_keys.append(_text(value, "a partition key"))
        elif number == 2:
            hash_keys.append(_text(value, "an explicit hash key"))
        elif number == 3:
            if wire != _LENGTH_DELIMITED or not isinstance(value, bytes):
                raise KplError(f"record #{len(records)} is not a length-delimited message")
            records.append(_record(value, len(records)))
        # unknown fields are skipped, as protobuf does
    for index, (pk_index, hk_index, _data) in enumerate(records):
        if pk_index >= len(partition_keys):
            raise KplError(f"record #{index} names partition key #{pk_index}; the table holds {len(partition_keys)}")
        if hk_index is not None and hk_index >= len(hash_keys):
            raise KplError(f"record #{index} names explicit hash key #{hk_index}; the table holds {len(hash_keys)}")
    return [data for _pk, _hk, data in records]


def _record(body: bytes, index: int) -> tuple[int, int | None, bytes]:
    pk_index: int | None = None
    hk_index: int | None = None
    data: bytes | None = None
    for number, wire, value in _fields(body, 0, len(body)):
        if number in (1, 2):
            if wire != _VARINT or not isinstance(value, int):
                raise KplError(f"record #{index}: field {number} is not a varint")
            if number == 1:
                pk_index = value
            else:
                hk_index = value
        elif number == 3:
            if wire != _LENGTH_DELIMITED or not isinstance(value, bytes):
                raise KplError(f"record #{index}: data is not length-delimited")
            data = value
        elif number == 4:
            if wire != _LENGTH_DELIMITED or not isinstance(value, bytes):
                raise KplError(f"record #{index}: a tag is not a message")
            _fields(value, 0, len(value))  # a tag must at least be well formed
    if pk_index is None or data is None:
        missing = "partition_key_index" if pk_index is None else "data"
        raise KplError(f"record #{index} lacks its required {missing}")
    return pk_index, hk_index, data
