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

from .ionframe import BINARY_IVM, MAX_TOP_LEVEL_BYTES, FramedReader, IonFramingError, IonLimitError, check_framing

#: The C extension's limit on one text token (a string, a blob): the same cap as a whole top-level value,
#: so that any string a block can hold is read in C (its pure-Python reader is slow on long strings:
#: 2.4 s for one of 128 KiB, 16 s for 512 KiB, growing faster than linearly).
C_TEXT_BUFFER_LIMIT = MAX_TOP_LEVEL_BYTES

#: Where amazon-ion's C reader refuses valid Ion (more than 13 annotations on a value, a decimal exponent
#: beyond its range), its pure-Python reader takes over, at ~60 KB/s.  Bounded so that hostile input cannot
#: make that hours: the value it must read may be at most this large ...
PURE_PYTHON_VALUE_LIMIT = 256 << 10
#: ... and the pure-Python reader reads at most this much of the object (it re-reads what precedes the value and
#: goes on to the object's end).
PURE_PYTHON_PREFIX_LIMIT = 8 << 20

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


def loads(data: bytes | str, *, own_encoding: bool = False, exact: bool = False) -> Any:
    """One Ion value.

    ``own_encoding``: bytes amazon-ion's writer produced in this process,
    well framed by construction, so the framing walk is skipped (it is on the
    hot path of every revision's parse-back).  ``exact``: the pure-Python
    reader only (``EXACT_READER_WHY``), within its bounds.
    """
    if not own_encoding and isinstance(data, bytes | bytearray | memoryview) and data[:4] == BINARY_IVM:
        try:
            check_framing(bytes(data))
        except IonFramingError as exc:
            raise IonParseError(f"invalid binary Ion: {exc}", exc.index) from exc
    if simpleion.c_ext and not exact:
        try:
            return simpleion.loads(data, text_buffer_size_limit=C_TEXT_BUFFER_LIMIT, value_model=VALUE_MODEL)
        except _C_ERRORS:
            pass
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if len(raw) > PURE_PYTHON_VALUE_LIMIT:
        raise IonParseError(_too_slow(), 0)
    try:
        return simpleion.load_python(io.BytesIO(raw))
    except _PY_ERRORS as exc:
        raise IonParseError(f"invalid Ion: {exc}", 0) from exc


#: Why a value whose hash does not match is read again with the pure-Python reader before anything is decided:
#: amazon-ion's C reader is inexact for some valid Ion — it reads a timestamp's fraction of more than nine digits
#: as zero (text) or cuts it to nine (binary) — and a real ledger must not be called corrupt for its reader.
EXACT_READER_WHY = ("amazon-ion's C reader misreads some valid values (a timestamp fraction of more than nine "
                    "digits); read again with its exact pure-Python reader")


def iter_values(open_stream: Callable[[], IO[bytes]], exact: bool = False) -> Iterator[Any]:
    """Every top-level value of a stream, lazily.

    ``open_stream`` is called again if the C extension rejects a value: the
    pure-Python reader then resumes at that value, so the stream is never
    held in memory whole.  Either reader sees binary Ion only through a
    ``FramedReader``: a framing error ends its input after the last
    well-framed value and is raised here once it has yielded them.
    """
    done = 0
    if simpleion.c_ext and not exact:
        with FramedReader(open_stream()) as fh:
            try:
                for value in simpleion.load(
                    fh,
                    single_value=False,
                    parse_eagerly=False,
                    text_buffer_size_limit=C_TEXT_BUFFER_LIMIT,
                    value_model=VALUE_MODEL,
                ):
                    fh.mark()
                    yield value
                    done += 1
            except _C_ERRORS:
                _raise_framing(fh)
                if fh.since_mark > PURE_PYTHON_VALUE_LIMIT or fh.marked > PURE_PYTHON_PREFIX_LIMIT:
                    raise IonParseError(_too_slow(done), done) from None
            else:
                _raise_framing(fh)
                return
    slow = FramedReader(open_stream(), PURE_PYTHON_VALUE_LIMIT, PURE_PYTHON_PREFIX_LIMIT + PURE_PYTHON_VALUE_LIMIT,
                        _too_slow(done))
    with slow as fh:
        index = 0
        try:
            for value in simpleion.load_python(fh, single_value=False, parse_eagerly=False):
                fh.mark()
                if index >= done:
                    yield value
                index += 1
        except IonParseError:
            raise
        except _PY_ERRORS as exc:
            if fh.error is not None:  # the reader failed on the framed stream's early end
                _raise_framing(fh)
            raise IonParseError(f"invalid Ion at top-level value #{index}: {exc}", index) from exc
        _raise_framing(fh)


def _too_slow(index: int = 0) -> str:
    return (f"top-level value #{index}, or one after it, is one amazon-ion's C reader "
            "refuses (more than 13 annotations, or a decimal exponent beyond its range); its pure-Python reader, "
            f"~60 KB/s, is used only for values up to {PURE_PYTHON_VALUE_LIMIT >> 10} KiB in the first "
            f"{PURE_PYTHON_PREFIX_LIMIT >> 20} MiB of an object (a QLDB export with such values in larger objects: "
            "export it again as ION_BINARY)")


def _raise_framing(fh: FramedReader) -> None:
    if fh.error is not None:
        what = "cannot read Ion" if isinstance(fh.error, IonLimitError) else "invalid binary Ion"
        raise IonParseError(f"{what}: {fh.error}", fh.error.index) from fh.error
