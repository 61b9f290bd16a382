"""Parse Ion with the C extension, falling back to the pure-Python reader.

amazon-ion's C extension is several times faster, but refuses valid Ion that
the pure-Python reader accepts: text values over its buffer limit (4 KiB by
default), more than 13 annotations on a value, decimal exponents beyond its
numeric range.  A valid export must never fail for that (DESIGN §2), so a
value the C extension rejects is parsed again in pure Python, and only a
value *both* readers reject is an error.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import IO, Any

from amazon.ion import simpleion
from amazon.ion.exceptions import IonException

#: Strings up to this size go through the C extension; larger ones fall back.
C_TEXT_BUFFER_LIMIT = 1 << 20

#: Plain Python values wherever the Ion type stays unambiguous (int, str, Decimal,
#: Timestamp, SymbolToken, bytes for blobs, list for lists, None for null);
#: annotated values, clobs, s-expressions and typed nulls stay IonPy objects.
#: Parsing is ~3x faster than with the IonPy wrappers and hashing is unchanged:
#: ``ionhash`` dispatches on both.
VALUE_MODEL = simpleion.IonPyValueModel.MAY_BE_BARE

__all__ = ["IonParseError", "iter_values", "loads"]


class IonParseError(ValueError):
    """Input that neither amazon-ion reader accepts; ``index`` is the top-level value where it failed."""

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


_C_ERRORS = (IonException, OverflowError, ValueError, MemoryError)
_PY_ERRORS = (IonException, OverflowError, ValueError, TypeError, IndexError, KeyError, UnicodeDecodeError,
              RecursionError, AttributeError)


def loads(data: bytes | str) -> Any:
    """One Ion value."""
    if simpleion.c_ext:
        try:
            return simpleion.loads(data, text_buffer_size_limit=C_TEXT_BUFFER_LIMIT, value_model=VALUE_MODEL)
        except _C_ERRORS:
            pass
    raw = data.encode("utf-8") if isinstance(data, str) else data
    try:
        return simpleion.load_python(io.BytesIO(raw))
    except _PY_ERRORS as exc:
        raise IonParseError(f"invalid Ion: {exc}", 0) from exc


def iter_values(open_stream: Callable[[], IO[bytes]]) -> Iterator[Any]:
    """Every top-level value of a stream, lazily.

    ``open_stream`` is called again if the C extension rejects a value: the
    pure-Python reader then resumes at that value, so the stream is never
    held in memory whole.
    """
    done = 0
    if simpleion.c_ext:
        with open_stream() as fh:
            try:
                for value in simpleion.load(
                    fh,
                    single_value=False,
                    parse_eagerly=False,
                    text_buffer_size_limit=C_TEXT_BUFFER_LIMIT,
                    value_model=VALUE_MODEL,
                ):
                    yield value
                    done += 1
                return
            except _C_ERRORS:
                pass
    with open_stream() as fh:
        index = 0
        try:
            for value in simpleion.load_python(fh, single_value=False, parse_eagerly=False):
                if index >= done:
                    yield value
                index += 1
        except _PY_ERRORS as exc:
            raise IonParseError(f"invalid Ion at top-level value #{index}: {exc}", index) from exc
