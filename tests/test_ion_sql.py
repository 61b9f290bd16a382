"""The SQL helpers for Ion values in JSONB (schema 0004), on every test server, against amazon-ion's own reading."""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import os
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from amazon.ion import simpleion
from amazon.ion.core import IonType, Timestamp, TimestampPrecision
from amazon.ion.simple_types import IonPyBytes, IonPyDecimal
from hypothesis import given, settings
from hypothesis import strategies as st
from qldb_migrate.iontext import timestamp_text
from qldb_migrate.pg.jsoncanon import canonical_json
from qldb_migrate.pg.target import Target, upgrade_schema

from tests import strategies
from tests.conftest import _admin_servers, fresh_database

UTC = dt.UTC


@pytest.fixture(scope="module", params=_admin_servers())
def db(request: pytest.FixtureRequest) -> Iterator[psycopg.Connection]:
    """A fresh database at schema head, as the ordinary migration role, in a session time zone far from UTC."""
    if request.param == "embedded":
        admin = request.getfixturevalue("embedded_admin")
    elif request.param == "container":
        admin = request.getfixturevalue("container_admin")
    else:
        admin = os.environ["QLDB_MIGRATE_TEST_DSN"]
    with fresh_database(admin) as dsn:
        upgrade_schema(Target(dsn, "test database"))
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("SET TimeZone = 'Asia/Kathmandu'")  # +05:45: results must not depend on it
            yield conn


def python_instant(text: str) -> dt.datetime:
    """amazon-ion's reading of the Ion text as a UTC instant (no offset, or -00:00, read as UTC).

    Its pure-Python reader: the C extension's reads a fraction of more than 9 digits as zero
    (``...59.9999999999Z`` as ``...59.000000000Z``).
    """
    value = simpleion.load_python(io.BytesIO(text.encode()), single_value=True)
    assert isinstance(value, dt.datetime), text
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return dt.datetime(value.year, value.month, value.day, value.hour, value.minute, value.second,
                       value.microsecond, value.tzinfo).astimezone(UTC)


def sql_instants(db: psycopg.Connection, texts: list[str]) -> list[tuple[dt.datetime, dt.date]]:
    rows = db.execute("SELECT qldb.ion_timestamp(t), qldb.ion_date(t) FROM unnest(%s::text[]) WITH ORDINALITY AS "
                      "u(t, n) ORDER BY n", (texts,)).fetchall()
    return [(ts, day) for ts, day in rows]


TEXTS = [
    # every precision
    "2015T", "2015-05T", "2015-05-12T", "2015-05-12", "2015-05-12T10:11Z", "2015-05-12T10:11:12Z",
    # offsets: Z, +00:00, unknown -00:00, east and west, extremes, minutes that are not whole hours
    "2015-05-12T10:11:12+00:00", "2015-05-12T10:11:12-00:00", "2015-05-12T10:11-00:00",
    "2015-05-12T10:11:12+05:45", "2015-05-12T10:11:12-08:00", "2015-05-12T00:30+01:00", "2015-05-12T23:30-01:00",
    "2015-05-12T10:11+23:59", "2015-05-12T10:11-23:59", "2015-05-12T10:11+14:00", "2015-05-12T10:11-12:00",
    "2015-05-12T10:11:12+00:01", "2015-05-12T10:11:12-00:01",
    # fractions of 1 to 9 digits (and more), trailing zeros, truncation past microseconds
    "2015-05-12T10:11:12.1Z", "2015-05-12T10:11:12.12Z", "2015-05-12T10:11:12.123Z", "2015-05-12T10:11:12.1234Z",
    "2015-05-12T10:11:12.12345Z", "2015-05-12T10:11:12.123456Z", "2015-05-12T10:11:12.1234567Z",
    "2015-05-12T10:11:12.12345678Z", "2015-05-12T10:11:12.123456789+05:45", "2015-05-12T10:11:12.000000000Z",
    "2015-05-12T10:11:12.999999999-00:00", "2015-05-12T10:11:12.0000009Z", "2015-05-12T10:11:12.10Z",
    "2015-05-12T23:59:59.9999999999999999999999Z", "2015-05-12T10:11:12.5-03:30",
    # leap years and month ends
    "2016-02-29T", "2000-02-29", "2024-02-29T23:59:59.999999+01:00", "1900-02-28T", "2015-04-30T", "2015-12-31T",
    "2015-01-31T23:59-00:00", "2016-12-31T23:30-01:00", "2000-02-29T00:00+00:01",
    # the year range
    "0001T", "0001-01-01T", "0001-01-01T00:00-23:59", "0099-06T", "1969-12-31T23:59:59.999999Z", "1970T",
    "9999-12-31T", "9999-12-31T23:59:59.999999999+23:59", "9999T",
]


def test_ion_timestamp_agrees_with_amazon_ion(db: psycopg.Connection) -> None:
    results = sql_instants(db, TEXTS)
    for text, (ts, day) in zip(TEXTS, results, strict=True):
        expected = python_instant(text)
        assert ts == expected, text
        assert day == expected.date(), text


def test_documented_example(db: psycopg.Connection) -> None:
    assert db.execute("SELECT qldb.ion_timestamp('2015-05-12T') = '2015-05-12 00:00:00+00'").fetchone() == (True,)
    assert db.execute("SELECT qldb.ion_timestamp(NULL), qldb.ion_date(NULL)").fetchone() == (None, None)
    # the UTC date, not the local one
    assert db.execute("SELECT qldb.ion_date('2015-05-12T23:30-05:00')").fetchone() == (dt.date(2015, 5, 13),)


@st.composite
def _wide_timestamps(draw: st.DrawFn) -> Timestamp:
    """Ion timestamps of every precision, years 1 to 9999, 0 to 9 fraction digits, any offset or none."""
    moment = draw(st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30)))
    precision = draw(st.integers(0, 4))
    digits = draw(st.integers(0, 9)) if precision == 4 else 0
    fraction = draw(st.integers(0, 10**digits - 1))
    offset = draw(st.one_of(st.none(), st.integers(-(23 * 60 + 59), 23 * 60 + 59))) if precision >= 3 else None
    return Timestamp(
        moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second,
        int(str(fraction).rjust(digits, "0")[:6].ljust(6, "0")) if digits else 0,
        None if offset is None else dt.timezone(dt.timedelta(minutes=offset)),
        precision=TimestampPrecision(precision),
        fractional_precision=min(digits, 6) if digits else None,
        fractional_seconds=Decimal(fraction).scaleb(-digits) if digits else None,
    )


@settings(max_examples=300, deadline=None)
@given(st.one_of(strategies._timestamps, _wide_timestamps()))
def test_jsoncanon_timestamps_round_trip_through_jsonb(db: psycopg.Connection, value: Any) -> None:
    """The JSONB text of a timestamp, stored and read back by PostgreSQL, is the instant amazon-ion reads."""
    document = "{" + json.dumps("t") + ": " + canonical_json(value) + "}"
    text = json.loads(document)["t"]
    assert text == timestamp_text(value)
    ts, day = db.execute("SELECT qldb.ion_timestamp(d->>'t'), qldb.ion_date(d->>'t') FROM (SELECT %s::jsonb AS d) x",
                         (document,)).fetchone()  # type: ignore[misc]
    expected = python_instant(text)
    assert ts == expected and day == expected.date()


@pytest.mark.parametrize(
    ("text", "sqlstate"),
    [
        ("", "22007"), ("2015", "22007"), ("2015-05", "22007"), ("2015-05-12T10Z", "22007"),
        ("2015-05-12T10:11", "22007"), ("2015-05-12T10:11:12", "22007"), ("2015-05-12T10:11:12.Z", "22007"),
        ("2015-05-12T10:11:12.123", "22007"), ("2015-13T", "22007"), ("2015-00T", "22007"), ("0000T", "22007"),
        ("2015-05-00", "22007"), ("2015-05-32", "22008"), ("2015-04-31T", "22008"), ("2015-02-29T", "22008"),
        ("1900-02-29", "22008"), ("2015-05-12T24:00Z", "22007"), ("2015-05-12T10:60Z", "22007"),
        ("2015-05-12T10:11:60Z", "22007"), ("2015-05-12T10:11+24:00", "22007"), ("2015-05-12T10:11+05:60", "22007"),
        ("2015-05-12t10:11Z", "22007"), ("2015-05-12T10:11z", "22007"), (" 2015T", "22007"), ("2015T ", "22007"),
        ("hello", "22007"), ("１２３４T", "22007"), ("٢٠١٥T", "22007"), ("2015-05-12 10:11Z", "22007"),
        ("+2015T", "22007"), ("20150T", "22007"), ("2015-5-12T", "22007"), ("2015-05-12T10:11-0:00", "22007"),
        ("2015-05-12T10:11+05:45:00", "22007"), ("2015-05-12T10:11:12.1e3Z", "22007"), ("infinity", "22007"),
        ("now", "22007"), ("2015-05-12T10:11:12.123456Z\n", "22007"),
    ],
)
def test_not_an_ion_timestamp_raises_naming_the_value(db: psycopg.Connection, text: str, sqlstate: str) -> None:
    with pytest.raises(psycopg.Error) as caught:
        db.execute("SELECT qldb.ion_timestamp(%s)", (text,))
    assert caught.value.sqlstate == sqlstate
    message = caught.value.diag.message_primary or ""
    assert message.startswith("not an Ion timestamp") and message.endswith(f"'{text}'")
    try:  # amazon-ion does not read it as a timestamp either
        value = simpleion.loads(text, single_value=True)
    except Exception:
        return
    assert not isinstance(value, dt.datetime) or text != text.strip()


def test_long_values_are_cut_in_the_message(db: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.InvalidDatetimeFormat) as caught:
        db.execute("SELECT qldb.ion_timestamp(%s)", ("x" * 10_000,))
    assert len(str(caught.value)) < 400


def test_functions_are_immutable_strict_parallel_safe_and_index(db: psycopg.Connection) -> None:
    rows = db.execute("SELECT proname, provolatile, proisstrict, proparallel FROM pg_proc "
                      "WHERE pronamespace = 'qldb'::regnamespace AND proname IN ('ion_timestamp', 'ion_date') "
                      "ORDER BY proname").fetchall()
    assert rows == [("ion_date", "i", True, "s"), ("ion_timestamp", "i", True, "s")]
    db.execute("CREATE SCHEMA IF NOT EXISTS ion_sql_test")
    db.execute("CREATE TABLE ion_sql_test.doc (data jsonb)")
    db.execute("CREATE INDEX ON ion_sql_test.doc (qldb.ion_timestamp(data->>'t'))")
    db.execute("CREATE INDEX ON ion_sql_test.doc (qldb.ion_date(data->>'t'))")
    db.execute("INSERT INTO ion_sql_test.doc SELECT jsonb_build_object('t', t) FROM unnest(%s::text[]) t", (TEXTS,))
    db.execute("INSERT INTO ion_sql_test.doc VALUES ('{}'), ('{\"t\": null}')")  # STRICT: NULL in, NULL out
    count = db.execute("SELECT count(*) FROM ion_sql_test.doc WHERE qldb.ion_timestamp(data->>'t') "
                       ">= '2015-05-12T00:00Z' AND qldb.ion_date(data->>'t') < '2016-01-01'").fetchone()
    expected = sum(1 for t in TEXTS if python_instant(t) >= dt.datetime(2015, 5, 12, tzinfo=UTC)
                   and python_instant(t).date() < dt.date(2016, 1, 1))
    assert count == (expected,)


def test_other_ion_types_read_back_with_built_ins(db: psycopg.Connection) -> None:
    """What the migration's docstring promises for decimals, floats and blobs, on jsoncanon's output."""
    blob = bytes(range(256))
    values = {
        "d": IonPyDecimal(Decimal("-12345678901234567890.123456789012345678900")),
        "e": IonPyDecimal(Decimal("1.0E+3")),
        "i": 2**70,
        "nan": float("nan"), "pinf": float("inf"), "ninf": float("-inf"), "f": 1.5e-300,
        "b": IonPyBytes.from_value(IonType.BLOB, blob),
        "c": IonPyBytes.from_value(IonType.CLOB, b"clob \x00 bytes"),
        "empty": IonPyBytes.from_value(IonType.BLOB, b""),
    }
    document = canonical_json(values)
    row = db.execute(
        "SELECT (d->>'d')::numeric, (d->>'e')::numeric, (d->>'i')::numeric, (d->>'nan')::float8, "
        "(d->>'pinf')::float8, (d->>'ninf')::float8, (d->>'f')::float8, decode(d->>'b', 'base64'), "
        "decode(d->>'c', 'base64'), decode(d->>'empty', 'base64') FROM (SELECT %s::jsonb AS d) x", (document,)
    ).fetchone()
    assert row is not None
    d, e, i, nan, pinf, ninf, f, b, c, empty = row
    assert (d, e, i) == (Decimal("-12345678901234567890.123456789012345678900"), Decimal(1000), 2**70)
    assert nan != nan and (pinf, ninf, f) == (float("inf"), float("-inf"), 1.5e-300)
    assert (bytes(b), bytes(c), bytes(empty)) == (blob, b"clob \x00 bytes", b"")
    assert base64.b64decode(json.loads(document)["b"]) == blob


def test_downgrade_removes_the_functions(pg_dsn: str) -> None:
    from alembic import command
    from alembic.config import Config

    upgrade_schema(Target(pg_dsn, "test database"))
    config = Config()
    config.set_main_option("script_location", "qldb_migrate.schema:.")
    with psycopg.connect(pg_dsn) as conn:
        from sqlalchemy import create_engine
        from sqlalchemy.pool import NullPool

        engine = create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(pg_dsn), poolclass=NullPool)
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0003")
        engine.dispose()
        assert conn.execute("SELECT to_regprocedure('qldb.ion_timestamp(text)'), "
                            "to_regprocedure('qldb.ion_date(text)')").fetchone() == (None, None)
    upgrade_schema(Target(pg_dsn, "test database"))  # and back
