"""Ion Hash Specification 1.0 over amazon-ion values.

The reference ``ionhash`` package streams every value through a hashing
reader/writer pair and so pays for event objects on every scalar.  Here a value
is serialised straight to the bytes the specification defines, ``s(value)``,
and the user hash function is called only where the specification calls it:
once per struct field and once for the top-level value.  Struct field names,
annotations and small integers repeat across a ledger, so their serialised
forms are cached.

The hash function is a parameter so that the official test suite can run with
an identity "hash" (its expectations are the serialised bytes themselves) as
well as with MD5 and SHA-256.

Values are the objects ``amazon.ion.simpleion`` returns (the ``IonPy*``
classes), bare Python values (``str``, ``int``, ``bool``, ``float``,
``Decimal``, ``bytes``, ``list``, ``dict``, ``None``), ``SymbolToken`` and
``Timestamp``.  A bare ``bytes`` is a blob and a bare ``list`` a list.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import struct
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from amazon.ion.core import IonType, Timestamp, TimestampPrecision
from amazon.ion.simple_types import (
    IonPyBool,
    IonPyBytes,
    IonPyDecimal,
    IonPyDict,
    IonPyFloat,
    IonPyInt,
    IonPyList,
    IonPyNull,
    IonPyStdDict,
    IonPySymbol,
    IonPyText,
    IonPyTimestamp,
)
from amazon.ion.symbols import SymbolToken

HashFunction = Callable[[bytes], bytes]

__all__ = ["HashFunction", "IonHashError", "ion_hash", "ion_hash_with", "serialize", "sha256"]

_B = 0x0B
_E = 0x0E
_ESC = 0x0C


class IonHashError(ValueError):
    """A value that the Ion Hash specification cannot represent."""


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _escape(data: bytes) -> bytes:
    # Most representations hold none of the three marker bytes; three C-level
    # scans are cheaper than building a new object every time.
    if b"\x0c" in data:
        data = data.replace(b"\x0c", b"\x0c\x0c")
    if b"\x0b" in data:
        data = data.replace(b"\x0b", b"\x0c\x0b")
    if b"\x0e" in data:
        data = data.replace(b"\x0e", b"\x0c\x0e")
    return data


def _scalar(tq: int, representation: bytes) -> bytes:
    return b"\x0b" + bytes((tq,)) + _escape(representation) + b"\x0e"


# --- primitive encodings (Ion 1.0 binary representations) -------------------


def _uint_bytes(magnitude: int) -> bytes:
    if magnitude == 0:
        return b""
    return magnitude.to_bytes((magnitude.bit_length() + 7) // 8, "big")


def _signed_magnitude(negative: bool, magnitude: int) -> bytes:
    """Ion ``Int`` field: sign in the high bit of the first byte."""
    raw = magnitude.to_bytes(magnitude.bit_length() // 8 + 1, "big") if magnitude else b"\x00"
    if negative:
        return bytes((raw[0] | 0x80,)) + raw[1:]
    return raw


def _var_uint(value: int) -> bytes:
    out = [0x80 | (value & 0x7F)]
    value >>= 7
    while value:
        out.append(value & 0x7F)
        value >>= 7
    return bytes(reversed(out))


def _var_int(value: int) -> bytes:
    """Ion ``VarInt``: sign bit 0x40 in the first byte, end flag 0x80 on the last."""
    magnitude = -value if value < 0 else value
    groups = [magnitude & 0x7F]
    magnitude >>= 7
    while magnitude:
        groups.append(magnitude & 0x7F)
        magnitude >>= 7
    if groups[-1] & 0x40:
        groups.append(0)
    if value < 0:
        groups[-1] |= 0x40
    groups[0] |= 0x80
    return bytes(reversed(groups))


# --- scalars -----------------------------------------------------------------

# Ion binary type codes; IonType's own numbering skips the negative-int code.
_TYPE_CODE = {
    IonType.NULL: 0x0, IonType.BOOL: 0x1, IonType.INT: 0x2, IonType.FLOAT: 0x4,
    IonType.DECIMAL: 0x5, IonType.TIMESTAMP: 0x6, IonType.SYMBOL: 0x7, IonType.STRING: 0x8,
    IonType.CLOB: 0x9, IonType.BLOB: 0xA, IonType.LIST: 0xB, IonType.SEXP: 0xC, IonType.STRUCT: 0xD,
}
_NULLS = {t: bytes((_B, (code << 4) | 0x0F, _E)) for t, code in _TYPE_CODE.items()}
_TRUE = b"\x0b\x11\x0e"
_FALSE = b"\x0b\x10\x0e"
_INT_CACHE: dict[int, bytes] = {}
_SYMBOL_CACHE: dict[str, bytes] = {}
_CACHE_LIMIT = 65536
_UNKNOWN_SYMBOL = b"\x0b\x71\x0e"


def _int(value: int) -> bytes:
    cached = _INT_CACHE.get(value)
    if cached is not None:
        return cached
    if value < 0:
        out = _scalar(0x30, _uint_bytes(-value))
    else:
        out = _scalar(0x20, _uint_bytes(value))
    if -1024 <= value <= 65535:
        _INT_CACHE[value] = out
    return out


_pack_double = struct.Struct(">d").pack


def _float(value: float) -> bytes:
    if value == 0.0 and _pack_double(value)[0] == 0:
        return b"\x0b\x40\x0e"  # positive zero has an empty representation
    if value != value:  # NaN: Ion has one NaN; use the canonical quiet NaN
        return _scalar(0x40, b"\x7f\xf8\x00\x00\x00\x00\x00\x00")
    return _scalar(0x40, _pack_double(value))


def _decimal(value: Decimal) -> bytes:
    if not value.is_finite():
        raise IonHashError(f"decimal {value} has no Ion representation")
    sign, digits, exponent = value.as_tuple()
    coefficient = int("".join(map(str, digits))) if digits else 0
    if coefficient == 0 and exponent == 0 and not sign:
        return b"\x0b\x50\x0e"
    rep = _var_int(exponent)
    if coefficient or sign:
        rep += _signed_magnitude(bool(sign), coefficient)
    return _scalar(0x50, rep)


def _symbol_text(text: str | None) -> bytes:
    if text is None:
        return _UNKNOWN_SYMBOL
    cached = _SYMBOL_CACHE.get(text)
    if cached is None:
        cached = _scalar(0x70, text.encode("utf-8"))
        if len(_SYMBOL_CACHE) >= _CACHE_LIMIT:
            _SYMBOL_CACHE.clear()
        _SYMBOL_CACHE[text] = cached
    return cached


def _symbol(token: Any) -> bytes:
    """A symbol from a ``SymbolToken``, an ``IonPySymbol`` or plain text."""
    if isinstance(token, str):
        return _symbol_text(token)
    if token is None:
        return _UNKNOWN_SYMBOL
    text = token.text
    if text is None:
        if token.sid == 0:
            return _UNKNOWN_SYMBOL
        raise IonHashError(f"symbol ${token.sid} has unknown text; it cannot be hashed")
    return _symbol_text(text)


def _fraction(ts: Timestamp) -> tuple[int, int] | None:
    """(exponent, coefficient) of the fractional seconds, or None when absent.

    A zero fraction with a non-negative exponent is the same instant at the
    same precision as no fraction at all, and is hashed as such (the suite's
    five equivalent timestamps).
    """
    frac = getattr(ts, "fractional_seconds", None)
    if frac is not None:
        frac = Decimal(frac)
        sign, digits, exponent = frac.as_tuple()
        coefficient = int("".join(map(str, digits))) if digits else 0
        if sign and coefficient:
            raise IonHashError(f"timestamp {ts} has negative fractional seconds")
        if exponent >= 0 and coefficient == 0:
            return None
        return int(exponent), coefficient
    precision = getattr(ts, "fractional_precision", None) or 0
    if precision <= 0:
        return None
    return -precision, ts.microsecond // 10 ** (6 - precision)


def _timestamp(ts: _dt.datetime) -> bytes:
    precision = getattr(ts, "precision", None)
    if precision is None:  # a bare datetime: second precision
        precision = TimestampPrecision.SECOND
    offset_delta = ts.utcoffset()
    if precision in (TimestampPrecision.YEAR, TimestampPrecision.MONTH, TimestampPrecision.DAY):
        offset_delta = None
    if offset_delta is None:
        offset_rep = b"\xc0"  # -00:00, unknown local offset
        utc = ts.replace(tzinfo=None)
    else:
        minutes = int(offset_delta.total_seconds()) // 60
        offset_rep = _var_int(minutes)
        try:
            utc = ts.replace(tzinfo=None) - offset_delta
        except OverflowError as exc:
            raise IonHashError(f"timestamp {ts} falls outside years 1-9999 in UTC") from exc
    rep = offset_rep + _var_uint(utc.year)
    if precision >= TimestampPrecision.MONTH:
        rep += _var_uint(utc.month)
    if precision >= TimestampPrecision.DAY:
        rep += _var_uint(utc.day)
    if precision >= TimestampPrecision.MINUTE:
        rep += _var_uint(utc.hour) + _var_uint(utc.minute)
    if precision >= TimestampPrecision.SECOND:
        rep += _var_uint(utc.second)
        fraction = _fraction(ts)
        if fraction is not None:
            exponent, coefficient = fraction
            rep += _var_int(exponent)
            if coefficient:
                rep += _signed_magnitude(False, coefficient)
    return _scalar(0x60, rep)


def _text(value: str) -> bytes:
    return b"\x0b\x80" + _escape(value.encode("utf-8")) + b"\x0e"


# --- the serialiser ------------------------------------------------------------


def serialize(value: Any, h: HashFunction = sha256) -> bytes:
    """``s(value)`` of the specification; ``h`` hashes struct fields."""
    annotations = getattr(value, "ion_annotations", None)
    if annotations:
        parts = [b"\x0b\xe0"]
        parts.extend(_symbol(a) for a in annotations)
        parts.append(_bare(value, h))
        parts.append(b"\x0e")
        return b"".join(parts)
    return _bare(value, h)


def _sequence(tq: bytes, items: Any, h: HashFunction) -> bytes:
    return tq + b"".join([serialize(item, h) for item in items]) + b"\x0e"


def _struct_fields(value: Any) -> Any:
    if isinstance(value, IonPyDict):
        return value.iteritems()
    return value.items()


def _struct(value: Any, h: HashFunction) -> bytes:
    fields = [h(_symbol(name) + serialize(field, h)) for name, field in _struct_fields(value)]
    fields.sort()
    return b"\x0b\xd0" + _escape(b"".join(fields)) + b"\x0e"


def _ion_null(value: Any, h: HashFunction) -> bytes:
    return _NULLS[value.ion_type]


def _ion_list(value: Any, h: HashFunction) -> bytes:
    if value.ion_type is IonType.SEXP:
        return _sequence(b"\x0b\xc0", value, h)
    return _sequence(b"\x0b\xb0", value, h)


def _ion_bytes(value: Any, h: HashFunction) -> bytes:
    if value.ion_type is IonType.CLOB:
        return _scalar(0x90, value)
    return _scalar(0xA0, value)


def _ion_text(value: Any, h: HashFunction) -> bytes:
    if value.ion_type is IonType.SYMBOL:
        return _symbol_text(str(value))
    return _text(value)


def _ion_int(value: Any, h: HashFunction) -> bytes:
    return _int(int(value))


def _ion_bool(value: Any, h: HashFunction) -> bytes:
    return _TRUE if value else _FALSE


def _bare_none(value: Any, h: HashFunction) -> bytes:
    return b"\x0b\x0f\x0e"


_DISPATCH: dict[type, Callable[[Any, HashFunction], bytes]] = {
    IonPyDict: _struct,
    IonPyStdDict: _struct,
    dict: _struct,
    IonPyList: _ion_list,
    list: lambda v, h: _sequence(b"\x0b\xb0", v, h),
    tuple: lambda v, h: _sequence(b"\x0b\xb0", v, h),
    IonPyText: _ion_text,
    str: lambda v, h: _text(v),
    IonPySymbol: lambda v, h: _symbol(v),
    SymbolToken: lambda v, h: _symbol(v),
    IonPyInt: _ion_int,
    int: lambda v, h: _int(v),
    IonPyBool: _ion_bool,
    bool: _ion_bool,
    IonPyFloat: lambda v, h: _float(v),
    float: lambda v, h: _float(v),
    IonPyDecimal: lambda v, h: _decimal(v),
    Decimal: lambda v, h: _decimal(v),
    IonPyTimestamp: lambda v, h: _timestamp(v),
    Timestamp: lambda v, h: _timestamp(v),
    _dt.datetime: lambda v, h: _timestamp(v),
    IonPyBytes: _ion_bytes,
    bytes: lambda v, h: _scalar(0xA0, v),
    IonPyNull: _ion_null,
    type(None): _bare_none,
}


def _bare(value: Any, h: HashFunction) -> bytes:
    handler = _DISPATCH.get(type(value))
    if handler is None:
        for klass, candidate in _DISPATCH.items():
            if isinstance(value, klass) and klass is not bool:
                handler = candidate
                break
        else:
            raise IonHashError(f"cannot Ion-hash a value of type {type(value).__name__}")
    return handler(value, h)


def ion_hash_with(value: Any, h: HashFunction) -> bytes:
    """H(value) with any hash function (the suite uses identity and MD5)."""
    return h(serialize(value, h))


def ion_hash(value: Any) -> bytes:
    """H(value) with SHA-256, as QLDB computes it."""
    return hashlib.sha256(serialize(value, sha256)).digest()
