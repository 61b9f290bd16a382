"""The C accelerator (``_native``) behind one small interface, with the pure-Python paths as fallback.

``migrate`` must store every revision's data as binary Ion whose hash is the
ledger's (DESIGN §4).  In Python that means writing with amazon-ion, parsing
the output back and hashing the parsed value again: more than verification
itself costs.  ``_native`` writes the binary Ion and hashes *those bytes*
directly (Ion Hash over binary Ion, no Python objects), so the hash that
proves the revision is taken over exactly the bytes that will be stored.
Anything it does not handle (values it cannot write, bytes outside the
canonical subset it hashes) goes down the pure-Python path, which stays the
reference; so do all bytes when the extension is not built or
``QLDB_MIGRATE_PURE_PYTHON`` is set.
"""

from __future__ import annotations

import decimal
import os
from typing import Any

from amazon.ion import simple_types as st
from amazon.ion import simpleion
from amazon.ion.core import IonType, Timestamp
from amazon.ion.symbols import SymbolToken

from .pg import jsoncanon
from .verify.revision import encoded_hash

try:
    from . import _native
except ImportError:  # not built (no compiler or no OpenSSL headers at install)
    _native = None  # type: ignore[assignment]

if os.environ.get("QLDB_MIGRATE_PURE_PYTHON"):
    _native = None  # type: ignore[assignment]

AVAILABLE = _native is not None

if _native is not None:
    _native.setup({
        **{name: getattr(st, name) for name in (
            "IonPyDict", "IonPyList", "IonPyText", "IonPySymbol", "IonPyInt", "IonPyBool", "IonPyFloat",
            "IonPyDecimal", "IonPyTimestamp", "IonPyBytes", "IonPyNull")},
        "SymbolToken": SymbolToken, "Timestamp": Timestamp, "Decimal": decimal.Decimal,
        "SYMBOL": IonType.SYMBOL, "SEXP": IonType.SEXP, "CLOB": IonType.CLOB,
        "NULL_CODES": {t: code for code, t in enumerate(
            (IonType.NULL, IonType.BOOL, IonType.INT, None, IonType.FLOAT, IonType.DECIMAL, IonType.TIMESTAMP,
             IonType.SYMBOL, IonType.STRING, IonType.CLOB, IonType.BLOB, IonType.LIST, IonType.SEXP,
             IonType.STRUCT)) if t is not None},
    })


#: ``_native.copy_tuple`` (used by ``pg.copybinary``), or None without the extension
copy_tuple = _native.copy_tuple if _native is not None else None


def _c_writer(value: Any) -> bytes:
    return simpleion.dumps(value, binary=True)


def prove(value: Any) -> tuple[bytes | None, bytes]:
    """(binary Ion of ``value``, the Ion hash of those bytes); ``(None, H(value))`` if no writer manages it.

    The hash is never of ``value`` itself when bytes are returned: what is
    proven against the ledger is what will be stored.
    """
    if _native is not None:
        try:
            encoded = _native.encode(value)
        except (TypeError, ValueError, OverflowError):
            return encoded_hash(value, _c_writer)  # a value the C writer does not handle
        try:
            return encoded, _native.hash_binary(encoded)
        except ValueError:
            # Bytes outside the C hasher's subset (a decimal beyond 34 digits, say): these same bytes, parsed
            # back and hashed in Python. amazon-ion's writer would round such a decimal, and lose the C path's
            # exact bytes for a fallback that cannot match.
            return encoded_hash(value, lambda _value: encoded)
    return encoded_hash(value, _c_writer)


def hash_binary(data: bytes) -> bytes | None:
    """Ion hash of the one value in binary Ion ``data``; None where only parsing can tell (or no extension)."""
    if _native is None:
        return None
    try:
        return _native.hash_binary(data)
    except ValueError:
        return None


def binary_json(data: bytes, typed: bool = False) -> str | None:
    """``jsoncanon.canonical_json`` of the one value in binary Ion ``data``, rendered from the bytes in C.

    None where the Python rendering must decide (floats, integers over 64 bits, unusual timestamps, …) or
    without the extension.  ``typed`` marks every scalar with its Ion type and refuses annotations and
    repeated field names, so that a string is never taken for a timestamp.  A caller may trust a rendering
    only where it *equals* what it is compared with; a difference is for the parsed value to settle.
    """
    if _native is None:
        return None
    try:
        return _native.binary_json(data, typed)
    except ValueError:
        return None


def stream_record(data: bytes) -> tuple[Any, ...] | None:
    """A QLDB stream record's fields, read in C (``streams._parse_fast``); None where the reader must decide."""
    if _native is None:
        return None
    return _native.stream_record(data)


def stream_details(data: bytes) -> tuple[bytes, bytes] | None:
    """A REVISION_DETAILS record split in C (``streamhashed``): (its revision without ``data`` as binary Ion, the
    data's Ion hash); None where the whole record must be parsed (or no extension)."""
    if _native is None:
        return None
    return _native.stream_details(data)


def canonical_json(value: Any) -> str:
    """``jsoncanon.canonical_json``, the common kinds rendered in C."""
    if _native is None:
        return jsoncanon.canonical_json(value)
    try:
        return _native.canonical_json(value, jsoncanon.canonical_json)
    except ValueError:  # nested deeper than the C renderer goes: the Python one decides
        return jsoncanon.canonical_json(value)


def json_ion(text: str) -> tuple[bytes, bytes] | None:
    """(binary Ion, Ion hash) of a stored jsonb document's text read as ``live.reading.ion_reading`` reads it, in C
    without Python values; None where the C reader declines (the caller then reads it in Python, the reference).

    It declines everything it does not state for certain: numbers beyond 18 significant digits, keys not in jsonb's
    order (so never a repeated key), lone surrogates, control characters, nesting beyond its depth, non-JSON.
    """
    if _native is None:
        return None
    try:
        return _native.json_ion(text)
    except ValueError:
        return None


def revision_metadata(document_id: str, version: int, tx_time_ion: str, tx_id: str) -> tuple[bytes, bytes] | None:
    """(binary Ion, Ion hash) of ``live.reading.metadata(...)``, written in C; None where it declines (a txTime
    not in the trigger's ``yyyy-mm-ddThh:mm:ss.sssZ`` shape, say)."""
    if _native is None:
        return None
    try:
        return _native.revision_metadata(document_id, version, tx_time_ion, tx_id)
    except ValueError:
        return None


def tx_info(documents: list[tuple[str, str, str]]) -> tuple[bytes, bytes, str] | None:
    """(binary Ion, Ion hash, ``canonical_json``) of the transactionInfo of a block without statements, whose
    revisions are ``documents`` as (document id, table name, table id) in block order, written in C; None where it
    declines (a document twice, U+0000 in an id)."""
    if _native is None:
        return None
    try:
        return _native.tx_info(documents)
    except ValueError:
        return None


def _python_dot(a: bytes, b: bytes) -> bytes:
    from .verify.hashes import dot as reference

    return reference(a, b)


#: QLDB's ``dot`` (``verify.hashes.dot``, the reference) in C: the sealer takes three or four per revision
dot = _native.dot if _native is not None else _python_dot
