"""The restructured hasher agrees with the previous one on every value, byte for byte and error for error.

``verify/ionhash.py`` was rewritten for speed (exact-type dispatch, a decimal
read off its to-scientific-string, cached field hashes of repeating pairs).
The oracle is the implementation as it stood before, kept verbatim in
``tests/ionhash_previous.py``; it passed the official suite and the real QLDB
vectors, which still run unchanged beside this.  An oracle rather than only
amazon-ion round trips, because a round trip cannot see the traps this code
is about: 1.0 against 1.00, -0d0, -0.0 and NaN, precision and offsets of
timestamps, unknown symbol text, ``bool`` against ``int``, annotations.

Values are generated as objects (bare and ``IonPy*``, annotated or not, with
marker bytes in text and blobs, repeated struct fields) and also as amazon-ion
readers deliver them: binary Ion read back by the C extension in each value
model and by the pure-Python reader.  Every value is hashed twice by the new
code, so the second pass runs on warm caches; caches also persist across
examples, so cached pairs and texts are hit from earlier values.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import hashlib
import io
import math
import os
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from amazon.ion import simpleion
from amazon.ion.core import IonType, Timestamp, TimestampPrecision
from amazon.ion.simple_types import (
    IonPyBool,
    IonPyBytes,
    IonPyDecimal,
    IonPyDict,
    IonPyFloat,
    IonPyInt,
    IonPyList,
    IonPyNull,
    IonPyStdDict,
    IonPySymbol,
    IonPyText,
    IonPyTimestamp,
)
from amazon.ion.simpleion import IonPyValueModel
from amazon.ion.symbols import SymbolToken
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from qldb_migrate.ionwrite import dumps_binary
from qldb_migrate.verify import ionhash as new

from tests import ionhash_previous as old

# EQ_EXAMPLES=5000 for a deeper run than CI's.
SETTINGS = settings(max_examples=int(os.environ.get("EQ_EXAMPLES", "300")), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

# --- values ----------------------------------------------------------------------

# Few names and values, so (name, value) pairs and texts repeat and the caches are hit.
_texts = st.one_of(
    st.sampled_from(["", "a", "WA", "State", "é", "\x0b", "\x0c", "\x0e", "a\x0bb\x0c\x0e", "x" * 33, "😀"]),
    st.text(st.sampled_from("ab\x0b\x0c\x0e\x00é€😀"), max_size=40),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12),
)
_names = st.one_of(st.sampled_from(["a", "b", "State", "", "\x0b", "é"]), _texts)
_symbol_tokens = st.one_of(
    _names.map(lambda t: SymbolToken(t, None)),
    st.just(SymbolToken(None, 0)),  # $0: unknown text, hashed as the unknown symbol
    st.just(SymbolToken(None, 10)),  # unknown text with a sid: cannot be hashed (both must refuse)
)
_annotations = st.lists(st.one_of(_names, _symbol_tokens.filter(lambda s: s.sid != 10)), min_size=1, max_size=3)

_ints = st.one_of(
    st.integers(-1100, 66000),  # around the small-int caches' bounds
    st.integers(-(2**80), 2**80),
    st.sampled_from([0, -1, 1, -1024, -1025, 65535, 65536, 127, 128, 255, 256]),
)
_floats = st.one_of(st.floats(), st.sampled_from([0.0, -0.0, math.nan, -math.nan, math.inf, -math.inf, 5e-324]))


def _decimal_from(sign: int, digits: list[int], exponent: int) -> Decimal:
    return Decimal((sign, tuple(digits), exponent))


_decimals = st.one_of(
    st.decimals(allow_nan=False, allow_infinity=False, places=None),
    st.builds(_decimal_from, st.integers(0, 1), st.lists(st.integers(0, 9), max_size=45),
              st.integers(-(10**6), 10**6)),
    st.builds(_decimal_from, st.integers(0, 1), st.lists(st.integers(0, 9), max_size=6), st.integers(-130, 130)),
    st.sampled_from([Decimal("0"), Decimal("-0"), Decimal("0.00"), Decimal("-0.00"), Decimal("0E+3"),
                     Decimal("-0E-7"), Decimal("1.0"), Decimal("1.00"), Decimal("1E+1"), Decimal("10"),
                     Decimal("0.000001"), Decimal("0.0000001"), Decimal("123E-10"), Decimal("1.2E+3"),
                     Decimal("NaN"), Decimal("-sNaN12"), Decimal("Infinity"), Decimal("-Infinity"),
                     Decimal((0, (1,) * 5000, -3))]),  # 5000 digits: past int()'s string limit
)

_offsets = st.one_of(
    st.none(),
    st.sampled_from([0, 1, -1, 330, -480, 1439, -1439, 64, -64]).map(lambda m: dt.timezone(dt.timedelta(minutes=m))),
    st.integers(-86399, 86399).map(lambda s: dt.timezone(dt.timedelta(seconds=s))),  # offsets with seconds
    st.integers(-(10**6), 10**6).map(lambda us: dt.timezone(dt.timedelta(microseconds=us))),  # and microseconds
)


@st.composite
def _timestamps(draw: st.DrawFn) -> dt.datetime:
    when = draw(st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30)))
    precision = draw(st.sampled_from(list(TimestampPrecision)))
    tz = draw(_offsets)  # at any precision: a date with a tzinfo must still hash without an offset
    kind = draw(st.sampled_from(["plain", "fraction", "micro", "datetime", "zero-fraction"]))
    if kind == "datetime":
        return when.replace(tzinfo=tz)
    if precision < TimestampPrecision.SECOND or kind == "plain":
        return Timestamp(when.year, when.month, when.day, when.hour, when.minute, when.second, None, tz,
                         precision=precision)
    if kind == "micro":
        digits = draw(st.integers(0, 6))
        micro = draw(st.integers(0, 10**digits - 1)) * 10 ** (6 - digits)
        return Timestamp(when.year, when.month, when.day, when.hour, when.minute, when.second, micro, tz,
                         precision=precision, fractional_precision=digits)
    if kind == "zero-fraction":
        frac = draw(st.sampled_from([Decimal("0"), Decimal("0.0"), Decimal("0.000000000"), Decimal("0E+2")]))
    else:
        places = draw(st.integers(1, 12))
        frac = Decimal(draw(st.integers(0, 10**places - 1))).scaleb(-places)
    return Timestamp(when.year, when.month, when.day, when.hour, when.minute, when.second, None, tz,
                     precision=precision, fractional_seconds=frac)


def _annotate(draw: st.DrawFn, make: Callable[[tuple], Any]) -> Any:
    annotations = tuple(draw(_annotations)) if draw(st.booleans()) else ()
    return make(annotations)


@st.composite
def _leaves(draw: st.DrawFn) -> Any:
    kind = draw(st.sampled_from(["int", "bool", "float", "decimal", "timestamp", "string", "symbol",
                                 "blob", "clob", "null"]))
    bare = draw(st.booleans())
    if kind == "int":
        v = draw(_ints)
        return v if bare else _annotate(draw, lambda a: IonPyInt.from_value(IonType.INT, v, a))
    if kind == "bool":
        v = draw(st.booleans())
        return v if bare else _annotate(draw, lambda a: IonPyBool.from_value(IonType.BOOL, v, a))
    if kind == "float":
        v = draw(_floats)
        return v if bare else _annotate(draw, lambda a: IonPyFloat.from_value(IonType.FLOAT, v, a))
    if kind == "decimal":
        v = draw(_decimals)
        return v if bare else _annotate(draw, lambda a: IonPyDecimal.from_value(IonType.DECIMAL, v, a))
    if kind == "timestamp":
        v = draw(_timestamps())
        if bare or type(v) is not Timestamp:
            return v
        return _annotate(draw, lambda a: IonPyTimestamp.from_value(IonType.TIMESTAMP, v, a))
    if kind == "string":
        v = draw(_texts)
        return v if bare else _annotate(draw, lambda a: IonPyText.from_value(IonType.STRING, v, a))
    if kind == "symbol":
        if draw(st.booleans()):  # symbol text in an IonPyText, as SYMBOL_AS_TEXT readers deliver it
            t = draw(_names)
            return _annotate(draw, lambda a: IonPyText.from_value(IonType.SYMBOL, t, a))
        v = draw(_symbol_tokens)
        return v if bare else _annotate(draw, lambda a: IonPySymbol.from_value(IonType.SYMBOL, v, a))
    if kind in ("blob", "clob"):
        v = draw(st.one_of(st.binary(max_size=40), st.sampled_from([b"", b"\x0b", b"\x0c\x0e", b"\x0e\x0b"])))
        if bare and kind == "blob":
            return v
        ion_type = IonType.BLOB if kind == "blob" else IonType.CLOB
        return _annotate(draw, lambda a: IonPyBytes.from_value(ion_type, v, a))
    if bare:
        return None
    ion_type = draw(st.sampled_from(list(IonType)))
    return _annotate(draw, lambda a: IonPyNull.from_value(ion_type, None, a))


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    @st.composite
    def make(draw: st.DrawFn) -> Any:
        kind = draw(st.sampled_from(["list", "tuple", "ionlist", "sexp", "struct", "struct", "stddict", "dict"]))
        if kind in ("list", "tuple", "ionlist", "sexp"):
            items = draw(st.lists(children, max_size=5))
            if kind == "list":
                return items
            if kind == "tuple":
                return tuple(items)
            ion_type = IonType.LIST if kind == "ionlist" else IonType.SEXP
            return _annotate(draw, lambda a: IonPyList.from_value(ion_type, items, a))
        fields = draw(st.lists(st.tuples(st.one_of(_names, _symbol_tokens, st.none()), children), max_size=6))
        if kind == "struct":  # repeated names kept, as the readers keep them
            value = IonPyDict()
            for name, field in fields:
                value.add_item(name, field)
            value.ion_annotations = tuple(draw(_annotations)) if draw(st.booleans()) else ()
            return value
        if kind == "stddict":
            value = IonPyStdDict()
            value.update(fields)
            value.ion_annotations = tuple(draw(_annotations)) if draw(st.booleans()) else ()
            return value
        return dict(fields)

    return make()


ion_objects = st.recursive(_leaves(), _containers, max_leaves=25)

# --- comparison ------------------------------------------------------------------------


def _outcome(fn: Callable[[Any], Any], value: Any) -> tuple:
    try:
        return ("ok", fn(value))
    except Exception as exc:  # the same refusal, with the same message, is part of agreeing
        return ("error", type(exc).__name__, str(exc))


def _count_fields(value: Any) -> int:
    """Struct fields anywhere in ``value``: how many times the specification calls ``h`` before the top level."""
    if isinstance(value, IonPyDict):
        return sum(1 + _count_fields(v) for _, v in value.iteritems())
    if isinstance(value, dict):
        return sum(1 + _count_fields(v) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(_count_fields(v) for v in value)
    return 0


def _md5(data: bytes) -> bytes:
    return hashlib.md5(data).digest()


def assert_agrees(value: Any) -> None:
    expected = _outcome(old.ion_hash, value)
    assert _outcome(new.ion_hash, value) == expected
    assert _outcome(new.ion_hash, value) == expected  # again, on warm caches
    assert _outcome(new.serialize, value) == _outcome(old.serialize, value)
    for h in (_md5, lambda b: bytes(b)):
        assert _outcome(lambda v, h=h: new.ion_hash_with(v, h), value) == _outcome(
            lambda v, h=h: old.ion_hash_with(v, h), value
        )
    if expected[0] == "ok":
        # Any hash function but SHA-256 sees every call the specification makes: no cached field hashes.
        calls: list[bytes] = []
        new.ion_hash_with(value, lambda b: calls.append(b) or hashlib.sha256(b).digest())
        assert len(calls) == _count_fields(value) + 1


_MODELS = [IonPyValueModel(0), IonPyValueModel.MAY_BE_BARE, IonPyValueModel.STRUCT_AS_STD_DICT,
           IonPyValueModel.MAY_BE_BARE | IonPyValueModel.SYMBOL_AS_TEXT,
           IonPyValueModel.MAY_BE_BARE | IonPyValueModel.STRUCT_AS_STD_DICT]


def _as_read(value: Any) -> list[Any]:
    """``value`` as amazon-ion's readers deliver it, in every value model (what it can write).

    Written with the project's exact writer (amazon-ion's pure-Python one): the C writer rounds long
    decimals, and hangs on some.
    """
    try:
        data = dumps_binary(value)
    except Exception:
        return []
    out = []
    for model in _MODELS:
        with contextlib.suppress(Exception):  # what a reader refuses is not a value to hash
            out.append(simpleion.loads(data, value_model=model))
    with contextlib.suppress(Exception):
        out.append(simpleion.load_python(io.BytesIO(data)))
    return out


@SETTINGS
@given(ion_objects)
@example(Decimal("1.0"))
@example(IonPyBool.from_value(IonType.BOOL, True, ()))
@example([True, 1, IonPyInt.from_value(IonType.INT, 1, ())])
def test_agrees_with_previous_implementation_on_objects(value: Any) -> None:
    assert_agrees(value)


@SETTINGS
@given(ion_objects)
def test_agrees_with_previous_implementation_on_values_as_read(value: Any) -> None:
    for read in _as_read(value):
        assert_agrees(read)


_few_names = st.sampled_from(["a", "b", "State", "", "\x0b", "é"])


@st.composite
def _flat_structs(draw: st.DrawFn) -> Any:
    """Leaves of every kind straight in a struct (the inlined per-field paths) and in a list."""
    value = IonPyDict()
    for name, field in draw(st.lists(st.tuples(_few_names, _leaves()), min_size=1, max_size=10)):
        value.add_item(name, field)
    value.add_item("list", draw(st.lists(_leaves(), max_size=6)))
    return value


@SETTINGS
@given(_flat_structs())
def test_agrees_on_every_kind_of_leaf_as_a_field(value: Any) -> None:
    assert_agrees(value)


_UTC_PLUS_HALF_SECOND = dt.timezone(dt.timedelta(microseconds=500000))


@SETTINGS
@given(_timestamps())
@example(Timestamp(2020, 1, 1, 0, 0, 5, 700000, _UTC_PLUS_HALF_SECOND, precision=TimestampPrecision.SECOND,
                   fractional_precision=6))  # the microseconds borrow across the offset's fraction of a second
@example(dt.datetime(2020, 1, 1, 0, 0, 5, 700000, tzinfo=_UTC_PLUS_HALF_SECOND))
@example(Timestamp(1, 1, 1, 0, 30, 0, None, dt.timezone(dt.timedelta(hours=1)), precision=TimestampPrecision.MINUTE))
@example(Timestamp(9999, 12, 31, 23, 30, 0, None, dt.timezone(dt.timedelta(hours=-1)),
                   precision=TimestampPrecision.MINUTE))  # both: outside years 1-9999 in UTC
@example(Timestamp(2020, 2, 3, 4, 5, 6, None, dt.timezone(dt.timedelta(hours=3)), precision=TimestampPrecision.DAY))
def test_agrees_on_timestamps(value: Any) -> None:
    assert_agrees(value)
    annotated = IonPyTimestamp.from_value(IonType.TIMESTAMP, value, ("a",)) if type(value) is Timestamp else value
    assert_agrees(annotated)


def test_repeated_pairs_inside_one_value() -> None:
    """A cached field hash is the field's hash: the same pair twice, and a pair seen before, hash alike."""
    inner = simpleion.loads('{State: "WA", version: 3, n: -1024, big: 65536, flag: true, one: 1}',
                            value_model=IonPyValueModel.MAY_BE_BARE)
    outer = simpleion.loads('{a: {State: "WA", version: 3}, b: {State: "WA", version: 3}, c: [{version: 3}]}',
                            value_model=IonPyValueModel.MAY_BE_BARE)
    for value in (inner, outer, inner, outer):
        assert_agrees(value)
    # bool and int are different Ion types: a cached `one: 1` must not answer for `one: true`.
    as_int = IonPyDict()
    as_int.add_item("one", 1)
    as_bool = IonPyDict()
    as_bool.add_item("one", True)
    assert new.ion_hash(as_int) != new.ion_hash(as_bool)
    for value in (as_int, as_bool, as_int):
        assert_agrees(value)
    # A name past the per-name limit of distinct values stops being cached; its hashes stay the same.
    for i in list(range(300)) + list(range(300)):
        value = IonPyDict()
        value.add_item("many", f"v{i}")
        value.add_item("many_ints", i)
        value.add_item("few", ["x", "y", "z"][i % 3])
        value.add_item("few_ints", i % 3)
        assert new.ion_hash(value) == old.ion_hash(value)


@pytest.mark.parametrize("capitals", [0, 1])
@SETTINGS
@given(st.one_of(_decimals, st.decimals(places=None)))
def test_decimal_parts_agree_with_as_tuple(capitals: int, value: Decimal) -> None:
    """The to-scientific-string reading gives ``as_tuple``'s parts (or declines, and as_tuple answers)."""
    with decimal.localcontext() as ctx:
        ctx.capitals = capitals
        assert _outcome(new._decimal, value) == _outcome(old._decimal, value)
        text = Decimal.__str__(value)
        if value.is_finite() and capitals and len(text) < 4000:
            sign, digits, exponent = value.as_tuple()
            coefficient = int("".join(map(str, digits)))
            assert new._decimal_parts(text) == (bool(sign), coefficient, exponent)
