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
from decimal import Decimal
from typing import Any

from amazon.ion.core import IonType, Timestamp
from amazon.ion.simple_types import IonPyNull
from amazon.ion.symbols import SymbolToken

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


def _string(text: str) -> str:
    return json.dumps(text.replace("\x00", "\\u0000"), ensure_ascii=False)


def _key_order(key: str) -> tuple[int, bytes]:
    raw = key.encode("utf-8")
    return len(raw), raw


def _render(value: Any, out: list[str]) -> None:
    if value is None or isinstance(value, IonPyNull):
        out.append("null")
        return
    ion_type = getattr(value, "ion_type", None)
    if isinstance(value, bool) or ion_type is IonType.BOOL:
        out.append("true" if value else "false")
    elif isinstance(value, dict) or hasattr(value, "iteritems"):
        fields: dict[str, Any] = {}
        pairs = value.iteritems() if hasattr(value, "iteritems") else value.items()
        for key, item in pairs:
            name = "$0" if key is None else (key.text if isinstance(key, SymbolToken) else str(key))
            fields[name.replace("\x00", "\\u0000")] = item
        out.append("{")
        for i, key in enumerate(sorted(fields, key=_key_order)):
            if i:
                out.append(", ")
            out.append(json.dumps(key, ensure_ascii=False))
            out.append(": ")
            _render(fields[key], out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(", ")
            _render(item, out)
        out.append("]")
    elif isinstance(value, SymbolToken):
        out.append(_string("$0" if value.text is None else value.text))
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, Decimal):
        out.append(_decimal(value))
    elif isinstance(value, float):
        out.append(_float(value))
    elif isinstance(value, int):
        out.append(str(int(value)))
    elif isinstance(value, Timestamp | _dt.datetime):
        out.append(_string(dumps_text(value)))
    elif isinstance(value, bytes | bytearray):
        out.append(_string(base64.b64encode(bytes(value)).decode("ascii")))
    else:
        raise TypeError(f"no canonical JSON for {type(value).__name__}")


def canonical_json(value: Any) -> str:
    out: list[str] = []
    _render(value, out)
    return "".join(out)
