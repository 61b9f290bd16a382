"""QLDB table names to PostgreSQL identifiers.

Table and field names come from the ledger: they are data.  They are mapped
to snake_case, cut to PostgreSQL's 63-byte limit without splitting a UTF-8
character, de-duplicated, recorded in ``qldb.ledger_table``, and only ever
reach SQL through ``psycopg.sql.Identifier`` (quoted), never interpolated.
"""

from __future__ import annotations

import hashlib
import re

MAX_IDENTIFIER_BYTES = 63
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_INVALID = re.compile(r"[^0-9a-z_]+")


def snake_case(name: str) -> str:
    """``VehicleRegistration`` -> ``vehicle_registration``; anything unusual becomes ``_``."""
    snake = _CAMEL.sub("_", name).lower()
    snake = _INVALID.sub("_", snake).strip("_")
    if not snake or snake[0].isdigit():
        snake = "t_" + snake
    return snake


def fit(name: str, suffix: str = "") -> str:
    """``name + suffix`` within 63 bytes; a long name keeps a hash of itself so cut names stay distinct."""
    full = name + suffix
    if len(full.encode()) <= MAX_IDENTIFIER_BYTES:
        return full
    tag = "_" + hashlib.sha256(name.encode()).hexdigest()[:8]
    room = MAX_IDENTIFIER_BYTES - len((tag + suffix).encode())
    cut = name.encode()[:room].decode("utf-8", errors="ignore")
    return cut + tag + suffix


def table_names(qldb_name: str, taken: set[str]) -> tuple[str, str]:
    """(current table, history table) names not in ``taken``."""
    base = snake_case(qldb_name)
    candidate = base
    n = 1
    while fit(candidate) in taken or fit(candidate, "_history") in taken:
        n += 1
        candidate = f"{base}_{n}"
    return fit(candidate), fit(candidate, "_history")
