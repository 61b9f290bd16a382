"""Hypothesis strategies for Ion values and generated blocks."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from amazon.ion.core import IonType, Timestamp, TimestampPrecision
from amazon.ion.simple_types import IonPyBytes, IonPyDecimal, IonPyList, IonPyNull, IonPySymbol
from hypothesis import strategies as st
from qldb_migrate.sample.blocks import struct

_names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=8)

_timestamps = st.builds(
    lambda d, prec, frac: Timestamp(
        d.year, d.month, d.day, d.hour, d.minute, d.second, (frac * 1000) if prec == 4 else 0,
        dt.timezone(dt.timedelta(minutes=d.minute * 7 % 600 - 300)) if prec >= 3 else None,
        precision=TimestampPrecision(prec),
        fractional_precision=3 if prec == 4 else None,
        fractional_seconds=Decimal(frac).scaleb(-3) if prec == 4 else None,
    ),
    st.datetimes(min_value=dt.datetime(1900, 1, 2), max_value=dt.datetime(2100, 1, 1)),
    st.sampled_from([0, 1, 2, 3, 4]),
    st.integers(0, 999),
)

scalars = st.one_of(
    st.integers(min_value=-(2**80), max_value=2**80),
    st.booleans(),
    _names,
    st.floats(allow_nan=False),
    st.decimals(allow_nan=False, allow_infinity=False, places=None).map(lambda d: IonPyDecimal(d)),
    _timestamps,
    st.binary(max_size=16).map(lambda b: IonPyBytes.from_value(IonType.BLOB, b)),
    st.binary(max_size=16).map(lambda b: IonPyBytes.from_value(IonType.CLOB, b)),
    _names.map(lambda t: IonPySymbol(t, None)),
    st.sampled_from(list(IonType)).map(lambda t: IonPyNull.from_value(t, None)),
)

ion_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=4).map(lambda items: IonPyList.from_value(IonType.SEXP, items)),
        st.lists(st.tuples(_names, children), max_size=4).map(struct),
    ),
    max_leaves=12,
)

documents = st.lists(st.tuples(_names, ion_values), min_size=1, max_size=5).map(struct)
