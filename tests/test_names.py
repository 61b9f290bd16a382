"""QLDB table names are data: they become safe, distinct, 63-byte identifiers."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st
from qldb_migrate.pg.names import fit, snake_case, table_names


def test_examples() -> None:
    assert snake_case("VehicleRegistration") == "vehicle_registration"
    assert snake_case("DriversLicense") == "drivers_license"
    assert snake_case('x"; DROP TABLE qldb.block; --') == "x_drop_table_qldb_block"
    assert table_names("VehicleRegistration", set()) == ("vehicle_registration", "vehicle_registration_history")
    # a name reused after a drop (another table id) gets its own tables
    assert table_names("Person", {"person", "person_history"}) == ("person_2", "person_2_history")


@given(st.text(min_size=1, max_size=200), st.sets(st.text(max_size=70), max_size=5))
def test_any_name_maps_to_a_safe_distinct_identifier(name: str, taken: set[str]) -> None:
    current, history = table_names(name, taken)
    for ident in (current, history):
        assert re.fullmatch(r"[a-z_][a-z0-9_]*", ident), ident
        assert len(ident.encode()) <= 63
        assert ident not in taken
    assert history != current


def test_long_names_stay_distinct() -> None:
    a, b = "A" * 100 + "x", "A" * 100 + "y"
    assert fit(snake_case(a)) != fit(snake_case(b))
    assert len(fit(snake_case(a), "_history").encode()) <= 63
