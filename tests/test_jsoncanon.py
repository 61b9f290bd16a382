"""``canonical_json`` is exactly what PostgreSQL prints for the jsonb it becomes (what ``check`` compares)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import psycopg
import pytest
from amazon.ion.core import IonType
from amazon.ion.simple_types import IonPyDict
from amazon.ion.symbols import SymbolToken
from hypothesis import HealthCheck, given, settings
from qldb_migrate.pg.jsoncanon import canonical_json

from tests.strategies import documents, ion_values


def _struct(*pairs: tuple[Any, Any]) -> IonPyDict:
    value = IonPyDict.from_value(IonType.STRUCT, {})
    for name, item in pairs:
        value.add_item(name, item)
    return value


EDGES = [
    _struct(("bb", 1), ("a", 2), ("c", 3), ("B", 4), ("ab", 5)),  # plain ASCII names: shorter first, then bytes
    _struct(("b", 1), ("a", 2), ("aa", 3), ("é", 4), ("z", 5), ("b", 6)),  # order by bytes, repeat keeps last
    _struct((SymbolToken(None, 0), 1), (SymbolToken("x", None), 2), ("x\x00", 3)),  # $0, symbol names, U+0000
    _struct(("s", "tab\t quote\" backslash\\ nul\x00 del\x7f é ☃ 𝄞")),
    [Decimal("1.0E+3"), Decimal("-0.0"), Decimal("1E-5"), Decimal("123456789012345678901234567890123456789.5")],
    [Decimal("1E+200000"), float("nan"), float("inf"), float("-inf"), -0.0, 1e300, 5e-324],
]


@pytest.fixture()
def pg(pg_dsn: str):
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        yield conn


def _round_trip(conn: psycopg.Connection, value: Any) -> None:
    text = canonical_json(value)
    assert conn.execute("SELECT %s::jsonb::text", (text,)).fetchone()[0] == text


@pytest.mark.parametrize("index", range(len(EDGES)))
def test_edge_values_print_back_identically(pg: psycopg.Connection, index: int) -> None:
    _round_trip(pg, EDGES[index])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ion_values)
def test_any_value_prints_back_identically(pg: psycopg.Connection, value: Any) -> None:
    _round_trip(pg, value)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(documents)
def test_any_document_prints_back_identically(pg: psycopg.Connection, value: Any) -> None:
    _round_trip(pg, value)
