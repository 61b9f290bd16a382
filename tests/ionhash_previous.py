# The pure-Python Ion hasher as it was at commit 77eaada, verbatim below this comment, kept ONLY as the
# oracle for tests/test_ionhash_equivalence.py: the restructured verify/ionhash.py must agree with it
# byte for byte (and error for error) on every value.  Do not import it outside the tests.
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
import re
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


_MARKER = re.compile(b"[\x0b\x0c\x0e]").search


def _escape(data: bytes) -> bytes:
    # Most representations hold none of the three marker bytes.  For short
    # ones one regex scan is cheapest; for long ones (concatenated field
    # hashes) three C-level ``in`` scans are.
    if len(data) < 64 and _MARKER(data) is None:
        return data
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
    if value < 128:
        return _VAR_UINT_SMALL[value]
    out = [0x80 | (value & 0x7F)]
    value >>= 7
    while value:
        out.append(value & 0x7F)
        value >>= 7
    return bytes(reversed(out))


def _var_int(value: int) -> bytes:
    """Ion ``VarInt``: sign bit 0x40 in the first byte, end flag 0x80 on the last."""
    if -64 < value < 64:
        return _VAR_INT_SMALL[value]
    return _var_int_slow(value)


def _var_int_slow(value: int) -> bytes:
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


_VAR_UINT_SMALL = [bytes((0x80 | i,)) for i in range(128)]
_VAR_INT_SMALL = {i: _var_int_slow(i) for i in range(-63, 64)}

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
_TEXT_CACHE: dict[str, bytes] = {}  # short strings (states, currencies, codes) repeat
_CACHE_LIMIT = 8192  # per cache: enough for repeated names and values, small enough to stay flat
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
    sign, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int):
        raise IonHashError(f"decimal {value} has no Ion representation")
    coefficient = 0
    for digit in digits:  # faster than int("".join(...)) for the short coefficients ledgers hold
        coefficient = coefficient * 10 + digit
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


_DATE_CACHE: dict[tuple[int, int, int, int], bytes] = {}


def _timestamp(ts: _dt.datetime) -> bytes:
    precision = getattr(ts, "precision", None)
    if precision is not None and precision <= TimestampPrecision.DAY:
        # Dates repeat (birthdays, validity dates) and carry no offset or time:
        # the key is the whole value.
        key = (ts.year, ts.month, ts.day, precision)
        cached = _DATE_CACHE.get(key)
        if cached is None:
            cached = _timestamp_uncached(ts, precision)
            if len(_DATE_CACHE) >= _CACHE_LIMIT:
                _DATE_CACHE.clear()
            _DATE_CACHE[key] = cached
        return cached
    return _timestamp_uncached(ts, precision)


def _timestamp_uncached(ts: _dt.datetime, precision: Any) -> bytes:
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
#
# The serialiser is built as closures over one hash constructor, so the hot
# path passes no hash function around and calls ``hashlib``'s C ``digest``
# directly.  One dispatch per value, on its exact type; IonPy values are the
# only ones that can carry annotations.

HashConstructor = Callable[[bytes], Any]  # returns an object with .digest(), like hashlib.sha256


def _build(hash_ctor: HashConstructor) -> Callable[[Any], bytes]:
    symbol_cache = _SYMBOL_CACHE

    text_cache = _TEXT_CACHE
    pair_cache: dict[tuple[Any, type, Any], bytes] = {}

    def wrap(annotations: Any, body: bytes) -> bytes:
        return b"\x0b\xe0" + b"".join([_symbol(a) for a in annotations]) + body + b"\x0e"

    def field_hashes(pairs: Any) -> bytes:
        hashes = []
        append = hashes.append
        for name, field in pairs:
            if type(name) is str:
                name_bytes = symbol_cache.get(name) or _symbol_text(name)
            else:
                name_bytes = _symbol(name)
            append(hash_ctor(name_bytes + s(field)).digest())
        hashes.sort()
        return b"\x0b\xd0" + _escape(b"".join(hashes)) + b"\x0e"

    def ion_dict(v: Any) -> bytes:
        store = getattr(v, "_IonPyDict__store", None)
        if store is None:  # a future amazon-ion may rename it; the public API still works
            body = field_hashes(v.iteritems())
        else:
            hashes = []
            append = hashes.append
            for name, fields in store.items():
                if type(name) is str:
                    name_bytes = symbol_cache.get(name) or _symbol_text(name)
                else:
                    name_bytes = _symbol(name)
                for field in fields:
                    t = type(field)
                    if t is str or t is int:
                        # Fields like State:"WA" or version:3 repeat across a ledger.  A bare
                        # str is always an Ion string and a bare int an Ion int (bools are
                        # their own type), so (name, class, value) determines the field hash.
                        key = (name, t, field)
                        cached = pair_cache.get(key)
                        if cached is None:
                            cached = hash_ctor(name_bytes + s(field)).digest()
                            if (t is int and -1024 <= field <= 65535) or (t is str and len(field) <= 32):
                                if len(pair_cache) >= _CACHE_LIMIT:
                                    pair_cache.clear()
                                pair_cache[key] = cached
                        append(cached)
                    else:
                        append(hash_ctor(name_bytes + s(field)).digest())
            hashes.sort()
            body = b"\x0b\xd0" + _escape(b"".join(hashes)) + b"\x0e"
        a = v.ion_annotations
        return wrap(a, body) if a else body

    def std_dict(v: Any) -> bytes:
        body = field_hashes(v.items())
        a = getattr(v, "ion_annotations", None)
        return wrap(a, body) if a else body

    def ion_list(v: Any) -> bytes:
        tq = b"\x0b\xc0" if v.ion_type is IonType.SEXP else b"\x0b\xb0"
        body = tq + b"".join([s(item) for item in v]) + b"\x0e"
        a = v.ion_annotations
        return wrap(a, body) if a else body

    def bare_list(v: Any) -> bytes:
        return b"\x0b\xb0" + b"".join([s(item) for item in v]) + b"\x0e"

    def text(v: str) -> bytes:
        cached = text_cache.get(v)
        if cached is None:
            cached = _text(v)
            if len(v) <= 32:
                if len(text_cache) >= _CACHE_LIMIT:
                    text_cache.clear()
                text_cache[str(v)] = cached
        return cached

    def ion_text(v: Any) -> bytes:
        if v.ion_type is IonType.SYMBOL:
            body = symbol_cache.get(v) or _symbol_text(str(v))
        else:
            body = text(v)
        a = v.ion_annotations
        return wrap(a, body) if a else body

    def annotated(v: Any, body: bytes) -> bytes:
        a = v.ion_annotations
        return wrap(a, body) if a else body

    def ion_symbol(v: Any) -> bytes:
        return annotated(v, _symbol(v))

    def ion_int(v: Any) -> bytes:
        body = _INT_CACHE.get(v) or _int(int(v))
        a = v.ion_annotations
        return wrap(a, body) if a else body

    def ion_bool(v: Any) -> bytes:
        return annotated(v, _TRUE if v else _FALSE)

    def ion_float(v: Any) -> bytes:
        return annotated(v, _float(v))

    def ion_decimal(v: Any) -> bytes:
        body = _decimal(v)
        a = v.ion_annotations
        return wrap(a, body) if a else body

    def ion_timestamp(v: Any) -> bytes:
        return annotated(v, _timestamp(v))

    def ion_bytes(v: Any) -> bytes:
        return annotated(v, _scalar(0x90 if v.ion_type is IonType.CLOB else 0xA0, v))

    def ion_null(v: Any) -> bytes:
        return annotated(v, _NULLS[v.ion_type])

    dispatch: dict[type, Callable[[Any], bytes]] = {
        IonPyDict: ion_dict,
        IonPyStdDict: std_dict,
        dict: std_dict,
        IonPyList: ion_list,
        list: bare_list,
        tuple: bare_list,
        IonPyText: ion_text,
        str: text,
        IonPySymbol: ion_symbol,
        SymbolToken: _symbol,
        IonPyInt: ion_int,
        int: lambda v: _INT_CACHE.get(v) or _int(v),
        IonPyBool: ion_bool,
        bool: lambda v: _TRUE if v else _FALSE,
        IonPyFloat: ion_float,
        float: _float,
        IonPyDecimal: ion_decimal,
        Decimal: _decimal,
        IonPyTimestamp: ion_timestamp,
        Timestamp: _timestamp,
        _dt.datetime: _timestamp,
        IonPyBytes: ion_bytes,
        bytes: lambda v: _scalar(0xA0, v),
        IonPyNull: ion_null,
        type(None): lambda v: b"\x0b\x0f\x0e",
    }
    get = dispatch.get

    def s(value: Any) -> bytes:
        handler = get(type(value))
        if handler is None:
            handler = _subclass_handler(dispatch, value)
        return handler(value)

    return s


def _subclass_handler(dispatch: dict[type, Callable[[Any], bytes]], value: Any) -> Callable[[Any], bytes]:
    for klass in type(value).__mro__:
        handler = dispatch.get(klass)
        if handler is not None:
            return handler
    raise IonHashError(f"cannot Ion-hash a value of type {type(value).__name__}")


class _Recorded:
    """Adapts a plain ``bytes -> bytes`` function to the hashlib interface."""

    __slots__ = ("_out",)

    def __init__(self, out: bytes) -> None:
        self._out = out

    def digest(self) -> bytes:
        return self._out


_SHA256_SERIALIZE = _build(hashlib.sha256)


def serialize(value: Any, h: HashFunction | None = None) -> bytes:
    """``s(value)`` of the specification; ``h`` hashes struct fields (SHA-256 by default)."""
    if h is None or h is sha256:
        return _SHA256_SERIALIZE(value)
    return _build(lambda data: _Recorded(h(data)))(value)


def ion_hash_with(value: Any, h: HashFunction) -> bytes:
    """H(value) with any hash function (the suite uses identity and MD5)."""
    return h(serialize(value, h))


def ion_hash(value: Any) -> bytes:
    """H(value) with SHA-256, as QLDB computes it."""
    return hashlib.sha256(_SHA256_SERIALIZE(value)).digest()
