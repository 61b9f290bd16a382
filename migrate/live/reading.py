"""The Ion a PostgreSQL-era revision hash covers: the stored JSONB document, read as Ion.

The application writes JSON; PostgreSQL stores it as jsonb, which rewrites
numbers (``1e2`` is stored as ``100``, ``1.50`` keeps its two places).  So
the hash is of the document **as stored**, read from its text: an object is
a struct, an array a list, a string a string, ``true``/``false`` a bool,
``null`` a null, a number with a decimal point (or an exponent) an Ion
decimal with exactly the digits and scale shown (``9500.00`` is ``9500.00``,
not ``9500``), a number without one an Ion int.  Reading the same text
always gives the same Ion, so anyone holding the row (or a GetRevision
output) recomputes the same hash, and ``canonical_json`` of that Ion is the
stored jsonb text again, which is what ``check`` compares.

A migrated document's Ion-only values (timestamps, blobs, symbols, typed
nulls, annotations) are kept in JSONB as strings (see ``pg.jsoncanon``):
once the application updates such a document, the new revision holds those
strings, not the original Ion types; the earlier revisions keep their exact
Ion in ``data_ion``.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from decimal import Decimal
from typing import Any

from amazon.ion.core import Timestamp, TimestampPrecision
from amazon.ion.simple_types import IonPyDict

from ..verify.ionparse import loads


def _struct(pairs: list[tuple[str, Any]]) -> IonPyDict:
    out = IonPyDict()
    for key, value in pairs:
        out.add_item(key, value)
    return out


def ion_reading(json_text: str) -> Any:
    """The Ion value of a stored jsonb document's text (module docstring)."""
    return json.loads(json_text, parse_float=Decimal, parse_int=int, object_pairs_hook=_struct)


def metadata(document_id: str, version: int, tx_time_ion: str, tx_id: str) -> IonPyDict:
    """QLDB's revision metadata: ``{id, version, txTime, txId}`` (txTime in milliseconds, UTC)."""
    return _struct([("id", document_id), ("version", version), ("txTime", millis_timestamp(tx_time_ion)),
                    ("txId", tx_id)])


_MILLIS = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{3})Z")


def millis_timestamp(text: str) -> Timestamp:
    """The Ion timestamp ``ion_millis`` wrote (``2026-12-01T09:30:00.123Z``), without a parser: the sealer reads one
    per revision.  Anything else is read by the Ion reader."""
    match = _MILLIS.fullmatch(text)
    if match is None:
        return loads(text)
    year, month, day, hour, minute, second, ms = map(int, match.groups())
    return Timestamp(year, month, day, hour, minute, second, ms * 1000, _dt.UTC, precision=TimestampPrecision.SECOND,
                     fractional_precision=3, fractional_seconds=Decimal(ms).scaleb(-3).quantize(_THOUSANDTH))


_THOUSANDTH = Decimal("0.001")


def millis_instant(text: str) -> _dt.datetime:
    """The instant of a timestamp text as a ``datetime`` in UTC: a plain one where the text has ``ion_millis``'s
    shape (the same instant and fields as ``millis_timestamp``'s Timestamp, for a fraction of its cost; the sealer
    stores one per block), else ``millis_timestamp``'s Timestamp."""
    match = _MILLIS.fullmatch(text)
    if match is None or not text.isascii():
        return millis_timestamp(text)
    year, month, day, hour, minute, second, ms = map(int, match.groups())
    return _dt.datetime(year, month, day, hour, minute, second, ms * 1000, _dt.UTC)


def ion_millis(moment: _dt.datetime) -> str:
    """A blockTimestamp / txTime as QLDB writes it: UTC, three fractional digits."""
    m = moment.astimezone(_dt.UTC)
    return (f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}."
            f"{m.microsecond // 1000:03d}Z")
