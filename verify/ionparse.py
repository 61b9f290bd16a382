"""Parse Ion with the C extension, falling back to the pure-Python reader.

amazon-ion's C extension is several times faster, but refuses valid Ion that
the pure-Python reader accepts: text values over its buffer limit (4 KiB by
default), more than 13 annotations on a value, decimal exponents beyond its
numeric range.  A valid export must never fail for that (DESIGN §2), so a
value the C extension rejects is parsed again in pure Python, and only a
value *both* readers reject is an error.

Binary Ion from outside (export objects, database columns, digest files) is
first checked by ``ionframe``: the C reader hangs on some malformed binary
lengths instead of failing.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import IO, Any

from amazon.ion import simpleion
from amazon.ion.exceptions import IonException

from .ionframe import BINARY_IVM, FramedReader, IonFramingError, check_framing

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
# What the pure-Python reader raises on malformed input, found by fuzzing: besides IonException, e.g.
# decimal.InvalidOperation (an ArithmeticError) for a bad timestamp fraction, StopIteration for text
# cut inside a container (a RuntimeError once it crosses a generator), RecursionError for deep nesting.
_PY_ERRORS = (IonException, ArithmeticError, ValueError, TypeError, IndexError, KeyError, UnicodeDecodeError,
              RuntimeError, StopIteration, AttributeError)


def loads(data: bytes | str, *, own_encoding: bool = False) -> Any:
    """One Ion value.

    ``own_encoding``: bytes amazon-ion's writer produced in this process,
    well framed by construction, so the framing walk is skipped (it is on the
    hot path of every revision's parse-back).
    """
    if not own_encoding and isinstance(data, bytes | bytearray | memoryview) and data[:4] == BINARY_IVM:
        try:
            check_framing(bytes(data))
        except IonFramingError as exc:
            raise IonParseError(f"invalid binary Ion: {exc}", exc.index) from exc
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
    held in memory whole.  Either reader sees binary Ion only through a
    ``FramedReader``: a framing error ends its input after the last
    well-framed value and is raised here once it has yielded them.
    """
    done = 0
    if simpleion.c_ext:
        with FramedReader(open_stream()) as fh:
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
            except _C_ERRORS:
                pass
            else:
                _raise_framing(fh)
                return
    with FramedReader(open_stream()) as fh:
        index = 0
        try:
            for value in simpleion.load_python(fh, single_value=False, parse_eagerly=False):
                if index >= done:
                    yield value
                index += 1
        except _PY_ERRORS as exc:
            if fh.error is not None:  # the reader failed on the framed stream's early end
                _raise_framing(fh)
            raise IonParseError(f"invalid Ion at top-level value #{index}: {exc}", index) from exc
        _raise_framing(fh)


def _raise_framing(fh: FramedReader) -> None:
    if fh.error is not None:
        raise IonParseError(f"invalid binary Ion: {fh.error}", fh.error.index) from fh.error
