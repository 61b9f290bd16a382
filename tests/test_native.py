"""The C accelerator agrees with the pure-Python reference, byte for byte, or declines.

``_native.hash_binary`` is what proves the bytes ``migrate`` stores, so it is
held to three things: the official Ion Hash suite (through binary Ion written
three ways, including the suite's own hand-made binary cases); agreement with
``ionhash`` on random values; and, on random corruptions of its input, either
the hash ``ionhash`` gives for what amazon-ion reads, or a refusal — never a
hash for bytes amazon-ion would not read as that value.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import random
import subprocess
import sys
from decimal import Decimal

import pytest
from amazon.ion import simpleion
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from qldb_migrate import native
from qldb_migrate.pg import jsoncanon
from qldb_migrate.verify.ionhash import ion_hash
from qldb_migrate.verify.ionparse import IonParseError, loads

from tests.strategies import documents, ion_values
from tests.test_ion_hash_suite import CASES, ION_BVM, _bytes
from tests.test_jsoncanon import EDGES

pytestmark = pytest.mark.skipif(not native.AVAILABLE, reason="qldb_migrate._native is not built")

if native.AVAILABLE:
    from qldb_migrate import _native


def _final(case) -> bytes | None:
    finals = [b for kind, b in case.expectations if kind == "final_digest"]
    digests = [b for kind, b in case.expectations if kind == "digest"]
    return finals[-1] if finals else (digests[-1] if digests else None)


def _suite_inputs():
    from qldb_migrate.verify.ionparse import iter_values

    from tests.vectors import ION_HASH_TESTS

    raw = list(iter_values(lambda: open(ION_HASH_TESTS, "rb")))  # noqa: SIM115 (iter_values closes it)
    by_index = {}
    for i, case in enumerate(raw):
        if "10n" in case:
            by_index[i] = ION_BVM + _bytes(case["10n"])
    return by_index


def test_hash_binary_on_the_ion_hash_suite() -> None:
    """Every identity/sha256 case: bytes from amazon-ion's writer, ours and the suite's own."""
    ten_n = _suite_inputs()
    accepted = refused = 0
    for case in CASES:
        if case.algorithm not in ("identity", "sha256"):
            continue
        expected = _final(case)
        index = int(case.name.split(":", 1)[0])
        inputs = [simpleion.dumps(case.source, binary=True)]
        with contextlib.suppress(TypeError, ValueError):
            inputs.append(_native.encode(case.source))
        if index in ten_n:
            inputs.append(ten_n[index])
        for data in inputs:
            try:
                got = _native.hash_binary(data, identity=case.algorithm == "identity")
            except _native.NonCanonical:
                refused += 1
                continue
            accepted += 1
            assert got == expected, (case.name, data.hex())
    # the subset must cover the suite, not decline it
    assert accepted >= 250 and refused <= accepted // 5, (accepted, refused)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ion_values)
@example(Decimal("120.89151897270293711661965792810110"))  # 35 digits: the C hasher declines, its bytes still serve
def test_encode_and_hash_binary_agree_with_the_reference(value) -> None:
    encoded, digest = native.prove(value)
    assert digest == ion_hash(value)
    if encoded is not None:
        assert ion_hash(loads(encoded)) == digest  # amazon-ion reads the bytes back as the same value


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_c_encoder_handles_documents(value) -> None:
    """Documents of the common kinds take the C path (not the fallback) and prove their own hash."""
    encoded = _native.encode(value)
    try:
        digest = _native.hash_binary(encoded)
    except _native.NonCanonical as exc:
        assert "decimal beyond 34 digits" in str(exc)  # amazon-ion's reader is not exact there
        return
    assert digest == ion_hash(value) == ion_hash(loads(encoded))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ion_values)
def test_canonical_json_matches_the_python_renderer(value) -> None:
    assert native.canonical_json(value) == jsoncanon.canonical_json(value)


def test_canonical_json_edges() -> None:
    for value in EDGES:
        assert native.canonical_json(value) == jsoncanon.canonical_json(value)


def test_hash_binary_on_corrupted_bytes_agrees_or_refuses() -> None:
    """Random byte flips of real encodings: the C hash is amazon-ion's reading's hash, or a refusal."""
    rng = random.Random(7)
    samples = [
        '{a: 1, b: "text", c: [1, 2.5e0, 12.30, -0.0], d: 2024-01-02T03:04:05.678+01:00, e: 2024-02-03T,'
        ' f: x::y::{g: sym, h: {{aGVsbG8=}}}, i: null.int, j: (a b), k: -123456789012345678901234567890}',
        '{VIN: "1N4AL11D75C109151", LicensePlateNumber: "LEWISR261LL", State: "WA", PendingPenaltyTicketAmount:'
        ' 90.25, ValidFromDate: 2017-08-21T, ValidToDate: 2020-05-11T, Owners: {PrimaryOwner: {PersonId: "294jJ"},'
        ' SecondaryOwners: []}}',
    ]
    agreed = refused = 0
    for text in samples:
        good = _native.encode(simpleion.loads(text))
        for _ in range(4000):
            data = bytearray(good)
            for _ in range(rng.choice((1, 1, 2))):
                data[rng.randrange(4, len(data))] = rng.randrange(256)
            data = bytes(data)
            try:
                got = _native.hash_binary(data)
            except _native.NonCanonical:
                refused += 1
                continue
            try:
                reading = loads(data)
            except IonParseError:
                pytest.fail(f"C hash given for bytes amazon-ion refuses: {data.hex()}")
            assert got == ion_hash(reading), data.hex()
            agreed += 1
    assert agreed > 1000 and refused > 1000, (agreed, refused)


_fractions = st.builds(
    lambda d, places, frac, offset: simpleion.loads(
        f"{d.year:04d}-{d:%m-%dT%H:%M:%S}.{frac % 10**places:0{places}d}{offset}"),
    st.datetimes(min_value=dt.datetime(2, 1, 2), max_value=dt.datetime(9998, 12, 30)),
    st.integers(1, 9), st.integers(0, 10**9), st.sampled_from(["Z", "-00:00", "+05:30", "-23:59", "+23:59"]))


def _binary_json_agrees(data: bytes) -> bool:
    """binary_json renders ``data`` exactly as jsoncanon renders both readings of it, or declines (False)."""
    try:
        got = _native.binary_json(data)
    except _native.NonCanonical:
        return False
    assert got == jsoncanon.canonical_json(loads(data, own_encoding=True)), data.hex()
    assert got == jsoncanon.canonical_json(loads(data, exact=True)), data.hex()
    return True


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(ion_values, documents, _fractions))
def test_binary_json_matches_the_python_renderer(value) -> None:
    """check trusts binary_json where it equals the stored jsonb: it must be jsoncanon's rendering, byte for byte."""
    for data in (_native.encode(value), simpleion.dumps(value, binary=True)):
        _binary_json_agrees(data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_binary_json_renders_most_documents(value) -> None:
    """The common kinds take the C path; what it declines is the kinds left to Python (floats, big numbers)."""
    data = _native.encode(value)
    try:
        _native.binary_json(data)
    except _native.NonCanonical as exc:
        assert any(why in str(exc) for why in ("float", "over 64 bits", "U+0000", "beyond 6000")), str(exc)


def test_binary_json_on_corrupted_bytes_agrees_or_refuses() -> None:
    rng = random.Random(11)
    text = ('{a: 1, b: "te\\"xt", c: [1, 12.30, -0.0, 1.5d-7, 5d3], d: 2024-01-02T03:04:05.678+01:00, e: 2024-02-03T,'
            ' f: x::y::{g: sym, h: {{aGVsbG8=}}, h: "again"}, i: null.int, j: (a b), k: -1234567890123,'
            ' l: 2024-03-01T09:00:35.180Z, m: {{"clob"}}, n: true, o: 2024-03-01T09:00-00:00}')
    good = _native.encode(simpleion.loads(text))
    assert _binary_json_agrees(good)
    agreed = refused = 0
    for _ in range(6000):
        data = bytearray(good)
        for _ in range(rng.choice((1, 1, 2))):
            data[rng.randrange(4, len(data))] = rng.randrange(256)
        try:
            agreed += _binary_json_agrees(bytes(data))
        except IonParseError:
            # bytes amazon-ion refuses: check trusts a rendering only beside a hash the C hasher gave, and it
            # gives none for such bytes (test_hash_binary_on_corrupted_bytes_agrees_or_refuses)
            with pytest.raises(_native.NonCanonical):
                _native.hash_binary(bytes(data))
            refused += 1
    assert agreed > 500, (agreed, refused)


def test_binary_json_typed_tells_kinds_apart() -> None:
    """The metadata key: a string is not a timestamp, an int not a decimal; annotations and repeats are refused."""
    def typed(text: str) -> str:
        return _native.binary_json(_native.encode(simpleion.loads(text)), typed=True)

    assert typed('{id: "d", version: 3, txTime: 2024-03-01T09:00:35.180Z, txId: "t"}') == \
        '{"id": s"d", "txId": s"t", "txTime": t"2024-03-01T09:00:35.180Z", "version": i3}'
    assert typed('{txTime: "2024-03-01T09:00:35.180Z"}') == '{"txTime": s"2024-03-01T09:00:35.180Z"}'
    assert typed("{version: 3.}") == '{"version": d3}'
    assert typed("{id: d}") == '{"id": y"d"}'
    for text in ("{id: a::\"d\"}", '{id: "d", id: "e"}'):
        with pytest.raises(_native.NonCanonical):
            typed(text)
    # untyped, the last of a repeated name wins, as in jsonb
    assert _native.binary_json(_native.encode(simpleion.loads('{id: "d", id: "e"}'))) == '{"id": "e"}'


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "version marker"),
        (b"\xe0\x01\x00\xea", "no value"),
        (b"\xe0\x01\x00\xea\x21\x01\x21\x02", "more than one"),
        (b"\xe0\x01\x00\xea\x22\x00\x01", "leading zero"),
        (b"\xe0\x01\x00\xea\xb3\x00\x00\x00", "NOP"),
        (b"\xe0\x01\x00\xea\xb3\x21\x01", "past its container"),
        (b"\xe0\x01\x00\xea\xb2\x71\x0a", "unknown text"),
        (b"\xe0\x01\x00\xea\x71\x02", "top-level symbol"),
        (b"\xe0\x01\x00\xea\x82\xff\xfe", "UTF-8"),
        # 2024-03-01T10:11:12Z with its minute zero-padded: amazon-ion's C reader reads 10:00:11 (red-team finding)
        (bytes.fromhex("e00100ea69800fe883818a008b8c"), "zero-padded VarUInt"),
        (bytes.fromhex("e00100ea53408105"), "zero-padded VarInt"),  # 5d-1 with its exponent padded
        (bytes.fromhex("e00100ea6b800fe88310000000818080"), "date out of range"),  # day 2**32 + 1
    ],
)
def test_hash_binary_refuses_with_a_reason(data: bytes, why: str) -> None:
    with pytest.raises(_native.NonCanonical, match=why):
        _native.hash_binary(data)
    with pytest.raises(_native.NonCanonical):
        _native.binary_json(data)


def test_binary_json_refuses_what_the_readers_refuse() -> None:
    with pytest.raises(_native.NonCanonical, match="annotation of unknown text"):
        _native.binary_json(bytes.fromhex("e00100eada8652c18189e482878bd0"))  # annotation symbol 11 is undefined
    nul = _native.encode(simpleion.loads('{id: "ab\\x00cd"}'))
    assert _native.binary_json(nul) == '{"id": "ab\\\\u0000cd"}'  # jsonb's stand-in, as jsoncanon writes it
    with pytest.raises(_native.NonCanonical, match=r"U\+0000"):
        _native.binary_json(nul, typed=True)  # the metadata key must not take it for the six characters \u0000


def test_check_reads_bytes_the_c_reader_misreads_exactly() -> None:
    """A stored timestamp in a valid encoding that amazon-ion's C reader misreads: check compares the exact value."""
    from qldb_migrate.pg.checker import CheckResult, _read
    from qldb_migrate.verify.findings import Location

    data = bytes.fromhex("e00100ea69800fe883818a008b8c")
    exact = loads(data, exact=True)
    assert jsoncanon.canonical_json(exact) == '"2024-03-01T10:11:12Z"'
    value, digest = _read(data, "data_ion", Location(), CheckResult(), ion_hash(exact))
    assert jsoncanon.canonical_json(value) == '"2024-03-01T10:11:12Z"' and digest == ion_hash(exact)


def test_pure_python_switch() -> None:
    """QLDB_MIGRATE_PURE_PYTHON=1 turns the extension off (the CI run of test_migrate uses it too)."""
    code = "from qldb_migrate import native; print(native.AVAILABLE)"
    env = {**os.environ, "QLDB_MIGRATE_PURE_PYTHON": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


_ROW_TYPES = ("text", "int4", "int8", "bytea", "bool", "jsonb", "timestamptz", "bytea[]", "text[]")


@settings(max_examples=300, deadline=None)
@given(st.tuples(
    st.none() | st.text(),
    st.none() | st.integers(-(2**31), 2**31 - 1),
    st.none() | st.integers(-(2**63), 2**63 - 1),
    st.none() | st.binary(max_size=40),
    st.none() | st.booleans(),
    st.none() | st.text(),
    st.none() | st.datetimes(timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=5))])),
    st.none() | st.lists(st.none() | st.binary(max_size=8), max_size=4),
    st.none() | st.lists(st.none() | st.text(max_size=8), max_size=4),
))
def test_copy_tuple_matches_the_python_encoder(row) -> None:
    from qldb_migrate.pg.copybinary import python_row_encoder, row_encoder

    assert row_encoder(_ROW_TYPES, 1)(row) == python_row_encoder(_ROW_TYPES, 1)(row)


def test_migrate_takes_the_c_path_for_a_real_revision() -> None:
    """The speed claim rests on prove() using the C writer and hasher, not quietly falling back."""
    from tests.test_real_vector import _saved

    block, _ = _saved("get-block.json", "Block")
    for value in (block["revisions"][0]["data"], block["revisions"][0]["metadata"], block["transactionInfo"]):
        encoded, digest = native.prove(value)
        assert encoded == _native.encode(value)
        assert digest == _native.hash_binary(encoded) == ion_hash(value)
