"""Ion Hash Specification 1.0 over amazon-ion values.

The reference ``ionhash`` package streams every value through a hashing
reader/writer pair and so pays for event objects on every scalar.  Here a value
is serialised straight to the bytes the specification defines, ``s(value)``,
and the user hash function is called only where the specification calls it:
once per struct field and once for the top-level value.

Speed comes from doing less Python per value, never from a different
encoding:

* one dispatch per value, a dict lookup on its exact type straight to the
  handler that serialises it (subclasses are resolved through the MRO); the
  struct loop serialises string, int and decimal fields without even that;
* escaping tests for the three marker bytes with ``memchr`` (``int in bytes``)
  and copies only for a marker that is present;
* decimals are read off ``Decimal.__str__`` (the exact to-scientific-string,
  one C call) instead of ``as_tuple`` and a digit loop, which remains the
  fallback for what that reading declines (NaN, Infinity, huge coefficients);
* timestamps get their UTC fields from plain ``datetime`` arithmetic, never
  constructing a ``Timestamp`` (whose ``__init__`` is Python);
* serialised forms that repeat across a ledger (field names, symbols, small
  ints, short strings, dates) and, for SHA-256, whole field hashes of
  repeating ``name: value`` pairs are cached in bounded dicts.

The hash function is a parameter so that the official test suite can run with
an identity "hash" (its expectations are the serialised bytes themselves) as
well as with MD5 and SHA-256.  Field-hash caching is used only with SHA-256,
where the hash is a pure function; any other ``h`` sees every call the
specification makes, in order.

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


_sha256 = hashlib.sha256


def sha256(data: bytes) -> bytes:
    return _sha256(data).digest()


def _escape(data: bytes) -> bytes:
    """Escape the begin, end and escape markers (0x0B, 0x0E, 0x0C) with 0x0C.

    ``int in bytes`` is a ``memchr``: three of them cost less than one regex
    search, and a copy is made only for a marker that is present.  The escape
    byte itself is doubled first, so the escapes inserted for the other two
    are not escaped again.
    """
    if 0x0C in data:
        data = data.replace(b"\x0c", b"\x0c\x0c")
    if 0x0B in data:
        data = data.replace(b"\x0b", b"\x0c\x0b")
    if 0x0E in data:
        data = data.replace(b"\x0e", b"\x0c\x0e")
    return data


_TQ_PREFIX = [bytes((_B, tq)) for tq in range(256)]


def _scalar(tq: int, representation: bytes) -> bytes:
    return _TQ_PREFIX[tq] + _escape(representation) + b"\x0e"


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
    cached = _VAR_INT_SMALL.get(value)
    if cached is not None:
        return cached
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
# Decimal exponents and timestamp offsets in minutes (at most ±1439) all fall in this range.
_VAR_INT_SMALL = {i: _var_int_slow(i) for i in range(-2048, 2049)}

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
_SHORT = 32  # longest text worth caching: longer ones rarely repeat
_UNKNOWN_SYMBOL = b"\x0b\x71\x0e"
_SYMBOL = IonType.SYMBOL
_SEXP = IonType.SEXP
_CLOB = IonType.CLOB


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


_decimal_text = Decimal.__str__  # not str(): a Decimal subclass may override __str__


def _decimal_parts(text: str) -> tuple[bool, int, int]:
    """(negative, coefficient, exponent) of a finite decimal from its to-scientific-string.

    ``Decimal.__str__`` is the General Decimal Arithmetic to-scientific-string:
    ``[-]digits[.digits][E(+|-)digits]``, which the specification makes
    exactly reversible, so the three parts come back exactly.  That is one C
    call where ``as_tuple`` builds a tuple of digit objects.  NaN, Infinity,
    a lower-case exponent (a context with ``capitals=0``) or a coefficient
    past ``int``'s digit limit raise ``ValueError``; the caller then takes
    the ``as_tuple`` path.
    """
    negative = text[0] == "-"
    mantissa, _, exponent_text = text.partition("E")
    if negative:
        mantissa = mantissa[1:]
    exponent = int(exponent_text) if exponent_text else 0
    point = mantissa.find(".")
    if point >= 0:
        exponent -= len(mantissa) - point - 1
        mantissa = mantissa[:point] + mantissa[point + 1 :]
    if not mantissa.isdigit() or not mantissa.isascii():
        raise ValueError(text)
    return negative, int(mantissa), exponent


def _decimal_parts_from_tuple(value: Decimal) -> tuple[bool, int, int]:
    """The same parts through ``as_tuple``: for what ``_decimal_parts`` declines."""
    sign, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int):
        raise IonHashError(f"decimal {value} has no Ion representation")
    coefficient = 0
    for digit in digits:
        coefficient = coefficient * 10 + digit
    return bool(sign), coefficient, exponent


# b"\x0b\x50" + VarInt(exponent) for every exponent a one-byte VarInt holds.  That byte has its top
# bit set, so it is never a marker byte: only the coefficient's bytes can need escaping.
_DECIMAL_PREFIX = {e: b"\x0b\x50" + _var_int_slow(e) for e in range(-63, 64)}


def _decimal(value: Decimal) -> bytes:
    text = _decimal_text(value)
    if "E" not in text:
        # Plain notation, the usual case: [-]digits[.digits].  ``int`` takes the sign with
        # the digits and rejects what is not a finite number (NaN, Infinity).
        try:
            point = text.find(".")
            if point < 0:
                exponent = 0
                coefficient = int(text)
            else:
                exponent = point + 1 - len(text)
                coefficient = int(text.replace(".", ""))
        except ValueError:
            return _decimal_general(value, text)
        if coefficient > 0:
            magnitude = coefficient.to_bytes(coefficient.bit_length() // 8 + 1, "big")
        elif coefficient:
            # Ion Int: big-endian magnitude with a free top bit, which carries the sign.
            coefficient = -coefficient
            size = coefficient.bit_length() // 8 + 1
            magnitude = (coefficient | 1 << (8 * size - 1)).to_bytes(size, "big")
        elif text[0] == "-":
            magnitude = b"\x80"  # negative zero
        elif exponent == 0:
            return b"\x0b\x50\x0e"  # 0d0 has an empty representation
        else:
            magnitude = b""
        prefix = _DECIMAL_PREFIX.get(exponent)
        if prefix is not None and not (0x0C in magnitude or 0x0B in magnitude or 0x0E in magnitude):
            return prefix + magnitude + b"\x0e"
        return _scalar(0x50, _var_int(exponent) + magnitude)
    return _decimal_general(value, text)


def _decimal_general(value: Decimal, text: str) -> bytes:
    """Any decimal: exponent notation, long exponents, and the refusals (NaN, Infinity)."""
    try:
        negative, coefficient, exponent = _decimal_parts(text)
    except ValueError:
        negative, coefficient, exponent = _decimal_parts_from_tuple(value)
    if coefficient == 0 and exponent == 0 and not negative:
        return b"\x0b\x50\x0e"
    if coefficient or negative:
        return _scalar(0x50, _var_int(exponent) + _signed_magnitude(negative, coefficient))
    return _scalar(0x50, _var_int(exponent))


def _symbol_text(text: str | None) -> bytes:
    if text is None:
        return _UNKNOWN_SYMBOL
    cached = _SYMBOL_CACHE.get(text)
    if cached is None:
        cached = _scalar(0x70, text.encode("utf-8"))
        if len(_SYMBOL_CACHE) >= _CACHE_LIMIT:
            _SYMBOL_CACHE.clear()
        _SYMBOL_CACHE[str(text)] = cached
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
    return _SYMBOL_CACHE.get(text) or _symbol_text(text)


def _fraction(ts: Timestamp) -> tuple[int, int] | None:
    """(exponent, coefficient) of the fractional seconds, or None when absent.

    A zero fraction with a non-negative exponent is the same instant at the
    same precision as no fraction at all, and is hashed as such (the suite's
    five equivalent timestamps).
    """
    frac = getattr(ts, "fractional_seconds", None)
    if frac is not None:
        if type(frac) is not Decimal:
            frac = Decimal(frac)
        try:
            negative, coefficient, exponent = _decimal_parts(_decimal_text(frac))
        except ValueError:
            return _fraction_from_tuple(ts, frac)
        if negative and coefficient:
            raise IonHashError(f"timestamp {ts} has negative fractional seconds")
        if exponent >= 0 and coefficient == 0:
            return None
        return exponent, coefficient
    precision = getattr(ts, "fractional_precision", None) or 0
    if precision <= 0:
        return None
    return -precision, ts.microsecond // 10 ** (6 - precision)


def _fraction_rep(ts: _dt.datetime) -> bytes:
    """VarInt exponent and Int coefficient of the fractional seconds; empty when there are none.

    The usual fraction reads ``0.ddd`` (plain notation, below one, not
    negative): its coefficient is the digits and its exponent minus their
    count.  Anything else goes through ``_fraction``.
    """
    frac = getattr(ts, "fractional_seconds", None)
    if type(frac) is Decimal:
        text = _decimal_text(frac)
        if text.startswith("0."):
            digits = text[2:]
            if digits.isdigit() and digits.isascii():
                coefficient = int(digits)
                exponent = _VAR_INT_SMALL.get(-len(digits)) or _var_int_slow(-len(digits))
                if coefficient:
                    return exponent + coefficient.to_bytes(coefficient.bit_length() // 8 + 1, "big")
                return exponent
    fraction = _fraction(ts)
    if fraction is None:
        return b""
    exponent, coefficient = fraction
    if coefficient:
        return _var_int(exponent) + _signed_magnitude(False, coefficient)
    return _var_int(exponent)


def _fraction_from_tuple(ts: Timestamp, frac: Decimal) -> tuple[int, int] | None:
    """``_fraction`` through ``as_tuple``, for fractions ``_decimal_parts`` declines (NaN, huge)."""
    sign, digits, exponent = frac.as_tuple()
    coefficient = int("".join(map(str, digits))) if digits else 0
    if sign and coefficient:
        raise IonHashError(f"timestamp {ts} has negative fractional seconds")
    if exponent >= 0 and coefficient == 0:  # type: ignore[operator]  (NaN: TypeError, as before)
        return None
    return int(exponent), coefficient


_DATE_CACHE: dict[tuple[int, int, int, int], bytes] = {}
_YEAR, _MONTH, _DAY, _MINUTE, _SECOND = (int(p) for p in TimestampPrecision)
_SECOND_PRECISION = TimestampPrecision.SECOND


def _timestamp(ts: _dt.datetime) -> bytes:
    precision = getattr(ts, "precision", None)
    if precision is not None and precision <= _DAY:
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
        precision = _SECOND_PRECISION
    if precision is not _SECOND_PRECISION and precision in (_YEAR, _MONTH, _DAY):
        offset_rep = b"\xc0"  # dates have no offset: -00:00, unknown local offset
        utc: _dt.datetime = ts
    else:
        offset_delta = ts.utcoffset()
        if offset_delta is None:
            offset_rep = b"\xc0"  # -00:00, unknown local offset
            utc = ts
        elif not offset_delta:  # UTC: the fields are already UTC
            offset_rep = b"\x80"
            utc = ts
        else:
            minutes = int(offset_delta.total_seconds()) // 60
            offset_rep = _var_int(minutes)
            try:
                # A plain datetime with the same fields: Timestamp.replace() and Timestamp
                # arithmetic would construct Timestamps through their Python __init__.
                utc = _dt.datetime(ts.year, ts.month, ts.day, ts.hour, ts.minute, ts.second, ts.microsecond)
                utc -= offset_delta
            except OverflowError as exc:
                raise IonHashError(f"timestamp {ts} falls outside years 1-9999 in UTC") from exc
    year = utc.year
    rep = offset_rep + (_VAR_UINT_SMALL[year] if year < 128 else bytes((year >> 7, 0x80 | (year & 0x7F))))
    # month, day, hour, minute and second are all below 128: one VarUInt byte each.
    if precision >= _SECOND:
        rep += bytes((0x80 | utc.month, 0x80 | utc.day, 0x80 | utc.hour, 0x80 | utc.minute, 0x80 | utc.second))
        rep += _fraction_rep(ts)
    elif precision >= _MINUTE:
        rep += bytes((0x80 | utc.month, 0x80 | utc.day, 0x80 | utc.hour, 0x80 | utc.minute))
    elif precision >= _DAY:
        rep += bytes((0x80 | utc.month, 0x80 | utc.day))
    elif precision >= _MONTH:
        rep += _VAR_UINT_SMALL[utc.month]
    return _scalar(0x60, rep)


def _text(value: str) -> bytes:
    """A string, uncached: struct fields cache whole field hashes instead (see ``_build``)."""
    data = value.encode("utf-8")
    if 0x0C in data or 0x0B in data or 0x0E in data:
        data = _escape(data)
    return b"\x0b\x80" + data + b"\x0e"


def _text_cached(value: str) -> bytes:
    """A string in a list or at the top level: short ones (tags, codes) repeat."""
    cached = _TEXT_CACHE.get(value)
    if cached is None:
        cached = _text(value)
        if len(value) <= _SHORT:
            if len(_TEXT_CACHE) >= _CACHE_LIMIT:
                _TEXT_CACHE.clear()
            _TEXT_CACHE[str(value)] = cached
    return cached


# --- leaves --------------------------------------------------------------------
#
# One handler per exact type.  Bare values carry no annotations; IonPy values
# are the only ones that can, and are wrapped when they do.


def _annotated(annotations: Any, body: bytes) -> bytes:
    return b"\x0b\xe0" + b"".join([_symbol(a) for a in annotations]) + body + b"\x0e"


def _bare_int(v: int) -> bytes:
    return _INT_CACHE.get(v) or _int(v)


def _bare_bool(v: bool) -> bytes:
    return _TRUE if v else _FALSE


def _bare_symbol(v: SymbolToken) -> bytes:
    text = v.text
    if text is None:
        return _symbol(v)
    return _SYMBOL_CACHE.get(text) or _symbol_text(text)


def _bare_blob(v: bytes) -> bytes:
    return _scalar(0xA0, v)


def _bare_null(v: None) -> bytes:
    return b"\x0b\x0f\x0e"


def _ion_text(v: Any) -> bytes:
    if v.ion_type is _SYMBOL:
        body = _symbol_text(str(v))
    else:
        body = _TEXT_CACHE.get(v) or _text_cached(v)
    a = v.ion_annotations
    return _annotated(a, body) if a else body


def _ion_symbol(v: Any) -> bytes:
    text = v.text
    body = _symbol(v) if text is None else _SYMBOL_CACHE.get(text) or _symbol_text(text)
    a = v.ion_annotations
    return _annotated(a, body) if a else body


def _ion_int(v: Any) -> bytes:
    body = _INT_CACHE.get(v) or _int(int(v))
    a = v.ion_annotations
    return _annotated(a, body) if a else body


def _ion_bool(v: Any) -> bytes:
    body = _TRUE if v else _FALSE
    a = v.ion_annotations
    return _annotated(a, body) if a else body


def _ion_float(v: Any) -> bytes:
    body = _float(v)
    a = v.ion_annotations
    return _annotated(a, body) if a else body


def _ion_decimal(v: Any) -> bytes:
    body = _decimal(v)
    a = v.ion_annotations
    return _annotated(a, body) if a else body


def _ion_timestamp(v: Any) -> bytes:
    body = _timestamp(v)
    a = v.ion_annotations
    return _annotated(a, body) if a else body


def _ion_bytes(v: Any) -> bytes:
    body = _scalar(0x90 if v.ion_type is _CLOB else 0xA0, v)
    a = v.ion_annotations
    return _annotated(a, body) if a else body


def _ion_null(v: Any) -> bytes:
    body = _NULLS[v.ion_type]
    a = v.ion_annotations
    return _annotated(a, body) if a else body


Handler = Callable[[Any], bytes]

_LEAVES: dict[type, Handler] = {
    str: _text_cached,
    IonPyText: _ion_text,
    Decimal: _decimal,
    IonPyDecimal: _ion_decimal,
    int: _bare_int,
    IonPyInt: _ion_int,
    SymbolToken: _bare_symbol,
    IonPySymbol: _ion_symbol,
    Timestamp: _timestamp,
    IonPyTimestamp: _ion_timestamp,
    _dt.datetime: _timestamp,
    bool: _bare_bool,
    IonPyBool: _ion_bool,
    float: _float,
    IonPyFloat: _ion_float,
    bytes: _bare_blob,
    IonPyBytes: _ion_bytes,
    IonPyNull: _ion_null,
    type(None): _bare_null,
}


class _Dispatch(dict[type, Handler]):
    """Exact type -> handler; a type not listed is resolved through its MRO on each use.

    (Not cached: a subclass is rare, and resolving it again keeps the table
    exactly the list above.)
    """

    def __missing__(self, klass: type) -> Handler:
        for base in klass.__mro__[1:]:
            handler = dict.get(self, base)
            if handler is not None:
                return handler
        raise IonHashError(f"cannot Ion-hash a value of type {klass.__name__}")


# --- the serialiser ------------------------------------------------------------
#
# Containers recurse through the dispatch table, and structs call the hash
# function, so they are built as closures over one hash constructor: the hot
# path passes no hash function around and calls ``hashlib``'s C ``digest``
# directly.

HashConstructor = Callable[[bytes], Any]  # returns an object with .digest(), like hashlib.sha256

# Field names with cached field hashes, and distinct values cached per name (a name with more stops
# being cached): at most 128 * 64 = 8192 entries per table kind, the bound every cache here keeps.
_PAIR_NAMES_LIMIT = 128
_PAIR_VALUES_LIMIT = 64


class _Uncached(dict[Any, bytes]):
    """The table of a field name whose values turned out not to repeat: kept empty, and true.

    (True so that ``tables.get(name) or pair_table(...)`` takes it as found.)
    """

    def __bool__(self) -> bool:
        return True


_UNCACHED = _Uncached()


def _build(hash_ctor: HashConstructor, cache_fields: bool) -> Callable[[Any], bytes]:
    """``s(value)`` for one hash function.

    ``cache_fields``: remember the field hash of ``name: value`` pairs whose
    value is a short string or a small int, bare or an unannotated IonPy
    value (``bool`` and ``IonPyBool`` are other types and never match): such
    a hash is a pure function of the name and the value, and fields such as
    ``State: "WA"`` or ``version: 3`` repeat.  Tables are per field name; a
    name that shows more than ``_PAIR_VALUES_LIMIT`` distinct values (an id,
    an amount) is not cached any further, so it costs one lookup per field
    and never churns.  Only for a pure hash function (SHA-256): the test
    suite's recording hashers must see every call.
    """
    dispatch = _Dispatch(_LEAVES)
    symbol_get = _SYMBOL_CACHE.get
    int_get = _INT_CACHE.get
    str_pairs: dict[Any, dict[str, bytes]] = {}
    int_pairs: dict[Any, dict[int, bytes]] = {}

    def field_name(name: Any) -> bytes:
        if type(name) is str:
            return _symbol_text(name)
        return _symbol(name)

    def pair_table(tables: dict[Any, dict[Any, bytes]], name: Any) -> dict[Any, bytes]:
        table = tables.get(name)
        if table is None:
            if len(tables) >= _PAIR_NAMES_LIMIT:
                tables.clear()
            table = tables[name] = {}
        return table

    def ion_dict(v: Any) -> bytes:
        # The loop is written out here, not in helpers, because it runs once per
        # field of every struct: strings, ints and decimals, the usual field
        # values, are serialised without a call through the dispatch table.
        store = getattr(v, "_IonPyDict__store", None)
        if store is None:  # a future amazon-ion may rename it; the public API still works
            body = pairs_body(v.iteritems())
        else:
            hashes = []
            append = hashes.append
            for name, fields in store.items():
                name_bytes = symbol_get(name) or field_name(name)
                for field in fields:
                    t = type(field)
                    if t is str or (t is IonPyText and not field.ion_annotations and field.ion_type is not _SYMBOL):
                        if cache_fields and len(field) <= _SHORT:
                            table = str_pairs.get(name) or pair_table(str_pairs, name)
                            cached = table.get(field)
                            if cached is None:
                                cached = hash_ctor(name_bytes + _text(field)).digest()
                                if table is not _UNCACHED:
                                    if len(table) >= _PAIR_VALUES_LIMIT:
                                        str_pairs[name] = _UNCACHED
                                    else:
                                        table[str(field)] = cached
                            append(cached)
                        else:
                            append(hash_ctor(name_bytes + _text(field)).digest())
                    elif t is Decimal or (t is IonPyDecimal and not field.ion_annotations):
                        append(hash_ctor(name_bytes + _decimal(field)).digest())
                    elif t is int or (t is IonPyInt and not field.ion_annotations):
                        if cache_fields and -1024 <= field <= 65535:
                            table = int_pairs.get(name) or pair_table(int_pairs, name)
                            cached = table.get(field)
                            if cached is None:
                                cached = hash_ctor(name_bytes + (int_get(field) or _int(int(field)))).digest()
                                if table is not _UNCACHED:
                                    if len(table) >= _PAIR_VALUES_LIMIT:
                                        int_pairs[name] = _UNCACHED
                                    else:
                                        table[int(field)] = cached
                            append(cached)
                        else:
                            append(hash_ctor(name_bytes + (int_get(field) or _int(int(field)))).digest())
                    else:
                        append(hash_ctor(name_bytes + dispatch[t](field)).digest())
            # Field hashes sorted as unsigned bytes, concatenated, escaped (inlined _sorted_struct).
            hashes.sort()
            body = b"\x0b\xd0" + _escape(b"".join(hashes)) + b"\x0e"
        a = v.ion_annotations
        return _annotated(a, body) if a else body

    def pairs_body(pairs: Any) -> bytes:
        hashes = []
        append = hashes.append
        for name, field in pairs:
            name_bytes = symbol_get(name) or field_name(name) if type(name) is str else _symbol(name)
            append(hash_ctor(name_bytes + dispatch[type(field)](field)).digest())
        return _sorted_struct(hashes)

    def std_dict(v: Any) -> bytes:
        body = pairs_body(v.items())
        a = getattr(v, "ion_annotations", None)
        return _annotated(a, body) if a else body

    def ion_list(v: Any) -> bytes:
        body = (b"\x0b\xc0" if v.ion_type is _SEXP else b"\x0b\xb0") + b"".join(
            [dispatch[type(item)](item) for item in v]
        ) + b"\x0e"
        a = v.ion_annotations
        return _annotated(a, body) if a else body

    def bare_list(v: Any) -> bytes:
        return b"\x0b\xb0" + b"".join([dispatch[type(item)](item) for item in v]) + b"\x0e"

    dispatch.update({
        IonPyDict: ion_dict,
        IonPyStdDict: std_dict,
        dict: std_dict,
        IonPyList: ion_list,
        list: bare_list,
        tuple: bare_list,
    })

    def s(value: Any) -> bytes:
        return dispatch[type(value)](value)

    return s


def _sorted_struct(hashes: list[bytes]) -> bytes:
    """Struct body: the field hashes sorted as unsigned bytes, concatenated, escaped."""
    hashes.sort()
    return b"\x0b\xd0" + _escape(b"".join(hashes)) + b"\x0e"


class _Recorded:
    """Adapts a plain ``bytes -> bytes`` function to the hashlib interface."""

    __slots__ = ("_out",)

    def __init__(self, out: bytes) -> None:
        self._out = out

    def digest(self) -> bytes:
        return self._out


_SHA256_SERIALIZE = _build(_sha256, cache_fields=True)


def serialize(value: Any, h: HashFunction | None = None) -> bytes:
    """``s(value)`` of the specification; ``h`` hashes struct fields (SHA-256 by default)."""
    if h is None or h is sha256:
        return _SHA256_SERIALIZE(value)
    return _build(lambda data: _Recorded(h(data)), cache_fields=False)(value)


def ion_hash_with(value: Any, h: HashFunction) -> bytes:
    """H(value) with any hash function (the suite uses identity and MD5)."""
    return h(serialize(value, h))


def ion_hash(value: Any) -> bytes:
    """H(value) with SHA-256, as QLDB computes it."""
    return _sha256(_SHA256_SERIALIZE(value)).digest()
