"""Ion text for a timestamp, written directly (exactly what amazon-ion reads back as the same value).

amazon-ion's exact (pure-Python) writer costs a writer pipeline per value;
timestamps are written for every revision (tx_time_ion) and inside JSONB, so
they get this small formatter.  Local fields and offset are kept as they are;
the fraction keeps its precision.
"""

from __future__ import annotations

import datetime as _dt
from decimal import Decimal
from typing import Any

from amazon.ion.core import TimestampPrecision


def _offset(ts: _dt.datetime) -> str:
    delta = ts.utcoffset()
    if delta is None:
        return "-00:00"
    minutes = int(delta.total_seconds()) // 60
    if minutes == 0:
        return "Z"
    sign = "+" if minutes > 0 else "-"
    minutes = abs(minutes)
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def _fraction(ts: Any) -> str:
    frac = getattr(ts, "fractional_seconds", None)
    if frac is not None:
        _sign, digits, exponent = Decimal(frac).as_tuple()
        if not isinstance(exponent, int) or exponent >= 0:
            return ""
        places = -exponent
        text = "".join(map(str, digits)).rjust(places, "0")[-places:] if digits else "0" * places
        return "." + text
    precision = getattr(ts, "fractional_precision", None) or 0
    if precision <= 0:
        return ""
    return "." + f"{ts.microsecond:06d}"[:precision]


def timestamp_text(ts: _dt.datetime) -> str:
    precision = getattr(ts, "precision", None)
    if precision is None:
        precision = TimestampPrecision.SECOND
    if precision == TimestampPrecision.YEAR:
        return f"{ts.year:04d}T"
    if precision == TimestampPrecision.MONTH:
        return f"{ts.year:04d}-{ts.month:02d}T"
    date = f"{ts.year:04d}-{ts.month:02d}-{ts.day:02d}"
    if precision == TimestampPrecision.DAY:
        return date + "T"
    if precision == TimestampPrecision.MINUTE:
        return f"{date}T{ts.hour:02d}:{ts.minute:02d}{_offset(ts)}"
    return f"{date}T{ts.hour:02d}:{ts.minute:02d}:{ts.second:02d}{_fraction(ts)}{_offset(ts)}"
