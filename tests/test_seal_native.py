"""The sealer's C writers (``_native.json_ion``, ``revision_metadata``, ``tx_info``) held to the Python path.

The Python path (``live.reading`` values, ``native.prove``, ``canonical_json``) is the reference: wherever a C
writer answers, its bytes, hash and text must be exactly the reference's; where it declines, the sealer takes the
reference.  It must also not decline what the sealer meets every day (jsonb's own text of ordinary documents).
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from amazon.ion.simple_types import IonPyDict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qldb_migrate import native
from qldb_migrate.live.reading import ion_millis, ion_reading, metadata
from qldb_migrate.live.sealer import _encoded, _struct

pytestmark = pytest.mark.skipif(not native.AVAILABLE, reason="the C extension is not built")

_SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))


def _reference(text: str) -> tuple[bytes, bytes] | None:
    try:
        return _encoded(ion_reading(text))
    except Exception:  # any failure of the reference (amazon-ion's IonException too): C must have declined
        return None


@st.composite
def _numbers(draw: st.DrawFn) -> str:
    """JSON numbers as written: ints and decimals of every spelling (exponents either case and sign, -0, 1.50)."""
    sign = draw(st.sampled_from(["", "-"]))
    whole = draw(st.one_of(st.just("0"), st.integers(1, 10**25).map(str), st.integers(1, 99).map(str)))
    frac = draw(st.one_of(st.just(""), st.text("0123456789", min_size=1, max_size=22).map(lambda d: "." + d)))
    exp = draw(st.one_of(st.just(""), st.builds(lambda e, s, n: e + s + str(n), st.sampled_from("eE"),
                                                 st.sampled_from(["", "+", "-"]), st.integers(0, 400))))
    return sign + whole + frac + exp


class _Number(str):
    """A JSON number's text, as drawn."""


_chars = st.characters(codec="utf-8", exclude_categories=("Cs",))


def _escaped(text: str, how: int) -> str:
    """A JSON string of ``text``: as jsonb writes it (how 0), or with every non-ASCII escaped (surrogate pairs)."""
    if how == 0:
        return json.dumps(text, ensure_ascii=False)
    return json.dumps(text, ensure_ascii=True)


def _render(value: object, how: int, sort: bool) -> str:
    if isinstance(value, dict):
        items = list(value.items())
        if sort:  # jsonb's order: shorter first, then by bytes
            items.sort(key=lambda kv: (len(kv[0].encode()), kv[0].encode()))
        sep = ", " if how == 0 else ","
        return "{" + sep.join(f"{_escaped(k, how)}: {_render(v, how, sort)}" for k, v in items) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_render(v, how, sort) for v in value) + "]"
    if isinstance(value, _Number):
        return str.__str__(value)  # written as drawn
    if isinstance(value, str):
        return _escaped(value, how)
    return json.dumps(value)


_leaves = st.one_of(_numbers().map(_Number), st.text(_chars, max_size=10), st.booleans(), st.none(),
                    st.integers(-(2**70), 2**70).map(lambda n: _Number(n)))
_values = st.recursive(_leaves, lambda children: st.one_of(
    st.lists(children, max_size=4), st.dictionaries(st.text(_chars, max_size=6), children, max_size=5)),
    max_leaves=20)


@_SETTINGS
@given(_values, st.integers(0, 1), st.booleans())
def test_json_ion_is_the_python_reading_or_declines(value: object, how: int, sort: bool) -> None:
    text = _render(value, how, sort)
    fast = native.json_ion(text)
    if fast is not None:
        assert fast == _reference(text), text


@_SETTINGS
@given(st.recursive(
    st.one_of(st.integers(-(10**17), 10**17).map(lambda n: _Number(n)), st.text(_chars, max_size=10),
              st.booleans(), st.none(),
              st.decimals(allow_nan=False, allow_infinity=False, places=4, min_value=-(10**12), max_value=10**12)
              .map(lambda d: _Number(d))),
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.text(_chars, max_size=6), children, max_size=5)),
    max_leaves=20))
def test_json_ion_takes_what_jsonb_prints(value: object) -> None:
    """Ordinary documents as jsonb prints them (keys in its order, at most 18 digits): the C reader answers."""
    text = _render(value, 0, True)
    fast = native.json_ion(text)
    assert fast is not None, text
    assert fast == _reference(text), text


@pytest.mark.parametrize("text", [
    '{"a": 1.50}', '{"a": -0}', '{"a": -0.0}', '{"a": 0.000}', '{"a": 1e2}', '{"a": 1E-2}', '{"a": -1.5e+3}',
    '{"a": 0e0}', '{"a": 0E+7}', '{"a": 999999999999999999}', '{"a": -999999999999999999}',
    '{"a": 9999999999999999999}', '{"a": 123456789012345678901234567890}', '{"a": 1.0000000000000000000001}',
    '{"a": 1e999999999999}', '{"a": "\\ud83d\\ude00 \\u00e9 \\u0000 \\/"}', '{"a": "\\ud83d"}', '{"a": "\\ude00x"}',
    '{"a": "tab\tinside"}', '{"b": 1, "a": 2}', '{"a": 1, "a": 2}', '{"aa": 1, "b": 2}', '{"a": 1, "bb": {"a": 2}}',
    '{"a": NaN}', '{"a": Infinity}', '{"a": 01}', '{"a": 1.}', '{"a": .5}', '{"a": +1}', '{"a": [1, 2,]}',
    '{"a": 1} x', '', ' ', '{', '[', '"', '{"a"', '{"a":', '{"a": tru}', 'null', '[]', '{}', ' {"a" : [ ] } ',
    "[" * 150 + "]" * 150, "[" * 250 + "]" * 250, '{"a": "\\u12"}', '{"a": "\\x"}', '{"é": 1, "z": 2}',
    '{"z": 1, "é": 2}', '{"": 0, "a": ""}',
])
def test_json_ion_tricky_texts(text: str) -> None:
    fast = native.json_ion(text)
    reference = _reference(text)
    if fast is not None:
        assert fast == reference
    if reference is None:
        assert fast is None  # what Python cannot read, C does not either


_times = st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31, 23, 59, 59),
                      timezones=st.just(dt.UTC)).map(ion_millis)


@_SETTINGS
@given(st.text(_chars, max_size=30), st.integers(0, 2**40), st.one_of(_times, st.text(max_size=26),
       _times.map(lambda t: t.replace("Z", "+00:00")), _times.map(lambda t: t[:5] + "13" + t[7:]),
       _times.map(lambda t: t[:8] + "31" + t[10:])), st.text(_chars, max_size=30))
def test_revision_metadata_is_the_python_metadata_or_declines(doc: str, version: int, tx_time: str,
                                                               tx_id: str) -> None:
    fast = native.revision_metadata(doc, version, tx_time, tx_id)
    if fast is not None:
        assert fast == _reference_metadata(doc, version, tx_time, tx_id)


@_SETTINGS
@given(st.text(_chars, max_size=30), st.integers(0, 2**31 - 1),
       st.datetimes(min_value=dt.datetime(1970, 1, 1), max_value=dt.datetime(2200, 1, 1),
                    timezones=st.just(dt.UTC)).map(ion_millis), st.text(_chars, max_size=30))
def test_revision_metadata_takes_what_the_trigger_writes(doc: str, version: int, tx_time: str, tx_id: str) -> None:
    fast = native.revision_metadata(doc, version, tx_time, tx_id)
    assert fast is not None and fast == _reference_metadata(doc, version, tx_time, tx_id)


def _reference_metadata(doc: str, version: int, tx_time: str, tx_id: str) -> tuple[bytes, bytes] | None:
    try:
        return _encoded(metadata(doc, version, tx_time, tx_id))
    except Exception:  # any failure of the reference: C must have declined
        return None


def test_revision_metadata_examples() -> None:
    for tx_time in ("2026-12-01T09:30:00.123Z", "2026-12-01T09:30:00.000Z", "1970-01-01T00:00:00.001Z",
                    "2199-12-31T23:59:59.999Z", "2024-02-29T12:00:00.500Z"):
        assert native.revision_metadata("d", 7, tx_time, "t") == _encoded(metadata("d", 7, tx_time, "t"))
    for tx_time in ("2023-02-29T12:00:00.500Z", "2026-12-01T24:00:00.000Z", "2026-12-01T09:30:00.12Z",
                    "2026-12-01T09:30:00Z", "２026-12-01T09:30:00.123Z", "0000-01-01T00:00:00.000Z"):
        assert native.revision_metadata("d", 7, tx_time, "t") is None
    assert native.revision_metadata("d", -1, "2026-12-01T09:30:00.123Z", "t") is None


def _reference_tx_info(documents: list[tuple[str, str, str]]) -> tuple[bytes, bytes, str]:
    ion_documents = IonPyDict()
    for doc, name, table in documents:
        ion_documents.add_item(doc, _struct([("tableName", name), ("tableId", table), ("statements", [])]))
    value = _struct([("statements", []), ("documents", ion_documents)])
    return (*_encoded(value), native.canonical_json(value))


_ids = st.one_of(st.text(_chars, max_size=24), st.sampled_from(["tableName", "tableId", "statements", "documents",
                                                                 "a", "b\x00"]))


@_SETTINGS
@given(st.lists(st.tuples(_ids, st.text(_chars, max_size=12), _ids), max_size=8))
def test_tx_info_is_the_python_transaction_info_or_declines(documents: list[tuple[str, str, str]]) -> None:
    fast = native.tx_info(documents)
    ids = [d for d, _n, _t in documents]
    if fast is None:
        assert len(set(ids)) < len(ids) or any("\x00" in d for d in ids)
        return
    assert fast == _reference_tx_info(documents)


_hashes = st.one_of(st.binary(min_size=32, max_size=32), st.binary(max_size=40))


@_SETTINGS
@given(_hashes, _hashes, st.integers(0, 3))
def test_dot_is_the_python_dot(a: bytes, b: bytes, shape: int) -> None:
    from qldb_migrate.verify.hashes import dot

    if shape == 1:
        b = a  # equal sides
    elif shape == 2:
        b = b[:1] + a  # one side's reversed bytes a prefix of the other's
    elif shape == 3 and a:
        b = bytes([a[0] ^ 0x80]) + a[1:]  # differing only in the sign of the last byte compared
    assert native.dot(a, b) == dot(a, b)
    assert native.dot(b, a) == dot(b, a)


@_SETTINGS
@given(_times)
def test_millis_instant_is_the_timestamps_instant(text: str) -> None:
    """The block timestamp the sealer stores: the same instant and fields as the Timestamp it replaces."""
    from qldb_migrate.live.reading import millis_instant, millis_timestamp

    reference, got = millis_timestamp(text), millis_instant(text)
    assert got == reference and got.utcoffset() == reference.utcoffset()
    assert got.timetuple() == reference.timetuple() and got.microsecond == reference.microsecond
