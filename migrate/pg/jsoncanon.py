"""The one canonical Ion -> JSON conversion, for the ``data jsonb`` columns.

JSONB is for queries; it cannot hold Ion exactly (``data_ion`` does).  The
conversion is fixed so that PostgreSQL's own text output of the stored
``jsonb`` equals ``canonical_json(value)`` character for character, which is
what ``check`` compares:

* struct -> object; keys ordered as jsonb orders them (shorter first, then
  by bytes); a repeated field keeps its last value (jsonb would too);
* list, sexp -> array; annotations are dropped;
* string, symbol -> string (a symbol of unknown text, ``$0``, -> ``"$0"``);
  U+0000, which jsonb rejects, becomes the six characters ``\\u0000``;
* int -> number; decimal -> number in plain notation, as PostgreSQL's
  numeric prints it (``1.0E+3`` -> ``1000``, ``-0.0`` -> ``0.0``); a decimal
  beyond numeric's range -> its Ion text as a string;
* float -> number in plain notation of its shortest repr; ``nan``,
  ``+inf``, ``-inf`` -> those strings; ``-0e0`` -> ``0``;
* timestamp -> its exact Ion text; blob, clob -> base64; bool -> bool;
  every null -> null.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import json.encoder
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from amazon.ion.core import Timestamp
from amazon.ion.simple_types import (
    IonPyBool,
    IonPyBytes,
    IonPyDecimal,
    IonPyDict,
    IonPyFloat,
    IonPyInt,
    IonPyList,
    IonPyNull,
    IonPySymbol,
    IonPyText,
    IonPyTimestamp,
)
from amazon.ion.symbols import SymbolToken

from ..iontext import timestamp_text
from ..ionwrite import dumps_text

# PostgreSQL numeric: up to 131072 digits before the point, 16383 after.
_MAX_INT_DIGITS = 131072
_MAX_SCALE = 16383


def _number(d: Decimal) -> str:
    text = str(d)
    # Decimal prints plain notation (exactly format(d, "f")) unless its exponent is positive or it is very small;
    # most decimals in a ledger (amounts, rates) take this path without as_tuple and format.
    if "E" not in text and text[-1].isdigit():
        point = text.find(".")
        if point < 0 or len(text) - point - 1 <= _MAX_SCALE:
            if text[0] == "-" and d.is_zero():
                return text[1:]
            if (point if point >= 0 else len(text)) <= _MAX_INT_DIGITS:
                return text
    if not d.is_finite():
        raise ValueError
    _sign, digits, exponent = d.as_tuple()
    assert isinstance(exponent, int)
    if -exponent > _MAX_SCALE or len(digits) + exponent > _MAX_INT_DIGITS:
        raise OverflowError
    text = format(d, "f")
    if d.is_zero() and text.startswith("-"):
        text = text[1:]
    return text


def _decimal(value: Decimal) -> str:
    try:
        return _number(value)
    except OverflowError:
        return json.dumps(dumps_text(value), ensure_ascii=False)


def _float(value: float) -> str:
    if value != value:
        return '"nan"'
    if value in (float("inf"), float("-inf")):
        return '"+inf"' if value > 0 else '"-inf"'
    text = _number(Decimal(repr(value)))
    return text


_encode_string = json.encoder.encode_basestring  # C: escapes '"', '\\' and controls, keeps the rest as is


def _string(text: str) -> str:
    if "\x00" in text:
        text = text.replace("\x00", "\\u0000")
    return _encode_string(text)


#: a str as jsonb prints it (check builds the expected rendering of a row's metadata with it)
json_string = _string


def _key_order(key: str) -> tuple[int, bytes]:
    raw = key.encode("utf-8")
    return len(raw), raw


def _plain_keys_in_order(keys: list[Any]) -> list[str] | None:
    """jsonb's key order for plain ASCII names (a character is a byte, str order is byte order); else None."""
    if not all(type(k) is str for k in keys):
        return None
    joined = "".join(keys)
    if not joined.isascii() or "\x00" in joined:
        return None
    keys.sort()
    keys.sort(key=len)
    return keys


def _struct(pairs: Callable[[], Iterable[tuple[Any, Any]]]) -> str:
    fields: dict[Any, Any] = dict(pairs())  # a repeated field keeps its last value, as jsonb does
    keys = _plain_keys_in_order(list(fields))
    if keys is None:
        named: dict[str, Any] = {}
        for key, item in pairs():  # names, not keys, decide which repeat wins
            name = key.text if isinstance(key, SymbolToken) else key
            if name is None:
                name = "$0"  # a field name of unknown text
            named[name.replace("\x00", "\\u0000") if "\x00" in name else name] = item
        fields = named
        keys = sorted(named, key=_key_order)
    return "{" + ", ".join([_encode_string(key) + ": " + _render(fields[key]) for key in keys]) + "}"


def _ion_struct(value: Any) -> str:
    store = getattr(value, "_IonPyDict__store", None)  # amazon-ion's multimap: name -> its values
    if store is not None:
        keys = _plain_keys_in_order(list(store))
        if keys is not None:
            return "{" + ", ".join([_encode_string(key) + ": " + _render(store[key][-1]) for key in keys]) + "}"
    return _struct(value.iteritems)  # the general case (and a future amazon-ion that renames the store)


def _sequence(items: Any) -> str:
    return "[" + ", ".join(map(_render, items)) + "]"


def _symbol(value: Any) -> str:
    return _string("$0" if value.text is None else value.text)


_RENDER: dict[type, Any] = {
    str: _string,
    int: str,
    bool: lambda v: "true" if v else "false",
    IonPyBool: lambda v: "true" if v else "false",
    type(None): lambda v: "null",
    IonPyNull: lambda v: "null",
    Decimal: _decimal,
    IonPyDecimal: _decimal,
    float: _float,
    IonPyFloat: _float,
    IonPyInt: lambda v: str(int(v)),
    IonPyText: lambda v: _string(str(v)),
    SymbolToken: _symbol,
    IonPySymbol: _symbol,
    Timestamp: lambda v: _string(timestamp_text(v)),
    IonPyTimestamp: lambda v: _string(timestamp_text(v)),
    _dt.datetime: lambda v: _string(timestamp_text(v)),
    bytes: lambda v: _string(base64.b64encode(v).decode("ascii")),
    IonPyBytes: lambda v: _string(base64.b64encode(bytes(v)).decode("ascii")),
    IonPyDict: _ion_struct,
    dict: lambda v: _struct(v.items),
    IonPyList: _sequence,
    list: _sequence,
    tuple: _sequence,
}


def _render(value: Any) -> str:
    kind = type(value)
    # the kinds a parsed document is mostly made of, without a table look-up
    if kind is str:
        return _string(value)
    if kind is IonPyDict:
        return _ion_struct(value)
    if value is None:
        return "null"
    if kind is Decimal:
        return _decimal(value)
    handler = _RENDER.get(kind)
    if handler is None:
        for klass in kind.__mro__:
            handler = _RENDER.get(klass)
            if handler is not None:
                break
        else:
            raise TypeError(f"no canonical JSON for {kind.__name__}")
    return handler(value)


def canonical_json(value: Any) -> str:
    return _render(value)
