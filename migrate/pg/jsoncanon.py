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
import re
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


_NEEDS_ESCAPE = re.compile(r'[\x00-\x1f"\\]').search


def _string(text: str) -> str:
    if _NEEDS_ESCAPE(text) is None:
        return '"' + text + '"'
    return json.dumps(text.replace("\x00", "\\u0000"), ensure_ascii=False)


def _key_order(key: str) -> tuple[int, bytes]:
    raw = key.encode("utf-8")
    return len(raw), raw


def _struct(pairs: Any, out: list[str]) -> None:
    fields: dict[str, Any] = {}
    for key, item in pairs:
        name = "$0" if key is None else (key.text if isinstance(key, SymbolToken) else key)
        if "\x00" in name:
            name = name.replace("\x00", "\\u0000")
        fields[name] = item
    out.append("{")
    first = True
    for key in sorted(fields, key=_key_order) if len(fields) > 1 else fields:
        if not first:
            out.append(", ")
        first = False
        out.append(_string(key))
        out.append(": ")
        _render(fields[key], out)
    out.append("}")


def _sequence(items: Any, out: list[str]) -> None:
    out.append("[")
    first = True
    for item in items:
        if not first:
            out.append(", ")
        first = False
        _render(item, out)
    out.append("]")


def _bool(value: Any, out: list[str]) -> None:
    out.append("true" if value else "false")


_RENDER: dict[type, Any] = {
    str: lambda v, out: out.append(_string(v)),
    int: lambda v, out: out.append(str(v)),
    bool: _bool,
    IonPyBool: _bool,
    type(None): lambda v, out: out.append("null"),
    IonPyNull: lambda v, out: out.append("null"),
    Decimal: lambda v, out: out.append(_decimal(v)),
    IonPyDecimal: lambda v, out: out.append(_decimal(v)),
    float: lambda v, out: out.append(_float(v)),
    IonPyFloat: lambda v, out: out.append(_float(v)),
    IonPyInt: lambda v, out: out.append(str(int(v))),
    IonPyText: lambda v, out: out.append(_string(str(v))),
    SymbolToken: lambda v, out: out.append(_string("$0" if v.text is None else v.text)),
    IonPySymbol: lambda v, out: out.append(_string("$0" if v.text is None else v.text)),
    Timestamp: lambda v, out: out.append(_string(timestamp_text(v))),
    IonPyTimestamp: lambda v, out: out.append(_string(timestamp_text(v))),
    _dt.datetime: lambda v, out: out.append(_string(timestamp_text(v))),
    bytes: lambda v, out: out.append(_string(base64.b64encode(v).decode("ascii"))),
    IonPyBytes: lambda v, out: out.append(_string(base64.b64encode(bytes(v)).decode("ascii"))),
    IonPyDict: lambda v, out: _struct(v.iteritems(), out),
    dict: lambda v, out: _struct(v.items(), out),
    IonPyList: _sequence,
    list: _sequence,
    tuple: _sequence,
}


def _render(value: Any, out: list[str]) -> None:
    handler = _RENDER.get(type(value))
    if handler is None:
        for klass in type(value).__mro__:
            handler = _RENDER.get(klass)
            if handler is not None:
                break
        else:
            raise TypeError(f"no canonical JSON for {type(value).__name__}")
    handler(value, out)


def canonical_json(value: Any) -> str:
    out: list[str] = []
    _render(value, out)
    return "".join(out)
