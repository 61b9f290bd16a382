"""Length framing of binary Ion, checked before amazon-ion's C reader sees it.

amazon-ion 0.15's C reader never returns on some malformed binary Ion: a NOP
pad nested two containers deep whose length runs past its container's end
(``E0 01 00 EA B3 B1 03 00 00 00``) makes it loop forever.  Hostile or damaged
input must end in an error naming the object, not a hung cut-over, so every
binary Ion byte is first walked here: each value's declared length must stay
inside its container.  The walk only reads type descriptors and lengths; it
decodes no value, and it accepts everything well-framed (the readers still
judge the contents).  Two more checks ride along: the strings of annotated
top-level values (possible local symbol tables) must be UTF-8 — otherwise
the C reader crashes the process with SIGSEGV — and no top-level value may
declare more than ``MAX_TOP_LEVEL_BYTES``, so hostile input cannot make the
reader buffer without bound.

Text Ion passes through untouched: these failures are specific to binary.
"""

from __future__ import annotations

import io
from typing import IO

__all__ = ["BINARY_IVM", "MAX_TOP_LEVEL_BYTES", "FramedReader", "IonFramingError", "IonLimitError", "check_framing"]

BINARY_IVM = b"\xe0\x01\x00\xea"

#: The largest top-level value (one block) a stream may hold.  QLDB caps a transaction at 4 MB and a
#: document at 128 KB (Ion binary), so a block is a few MB at most; a declared length beyond this is
#: damage or hostility, refused on sight rather than buffered until the object ends.
MAX_TOP_LEVEL_BYTES = 64 << 20

_SYMBOL_TABLE_SID = 3  # $ion_symbol_table: such a top-level struct is no user value


class IonFramingError(ValueError):
    """A binary Ion value whose length does not fit; ``offset`` is its byte, ``index`` its top-level value."""

    def __init__(self, message: str, offset: int, index: int) -> None:
        super().__init__(f"{message} (byte {offset}, top-level value #{index})")
        self.reason = message
        self.offset = offset
        self.index = index


class IonLimitError(IonFramingError):
    """Input past a size limit (no QLDB block is that large, or reading it would take too long), not malformed."""


def _varuint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    value = 0
    while pos < end:
        byte = buf[pos]
        pos += 1
        value = (value << 7) | (byte & 0x7F)
        if byte & 0x80:
            return value, pos
    raise _Overrun(pos, "a length runs past the end of its container")


class _Overrun(Exception):
    def __init__(self, offset: int, message: str) -> None:
        self.offset = offset
        self.message = message


def _fixed_size(descriptor: int) -> int:
    kind, size = descriptor >> 4, descriptor & 0x0F
    if kind == 1 or size == 15:  # bool, or a typed null: the descriptor is all of it
        return 0
    if kind >= 11 or size == 14 or (kind == 13 and size == 1):
        return -1  # a container, a wrapper, a reserved type, or a VarUInt length follows
    return size


#: Bytes after the descriptor for the scalars whose length is in the descriptor
#: (most values), -1 where the walk must look closer.
_FIXED = tuple(_fixed_size(d) for d in range(256))
#: The same, but every string looked at closer: its text is decoded.
_FIXED_BUT_STRINGS = tuple(-1 if d >> 4 == 8 and d & 0x0F != 15 else size for d, size in enumerate(_FIXED))


def _check_body(buf: bytes, pos: int, end: int, in_struct: bool, *, strings: bool = False) -> None:
    """Every value nested in ``buf[pos:end]`` ends inside the container that holds it.

    An explicit stack rather than recursion: nesting depth is the input's to
    choose, and a deep one must be an error message, not a RecursionError.

    ``strings``: also require every string to be UTF-8.  The C reader crashes
    the process (SIGSEGV) when a local symbol table defines a symbol whose
    text is not UTF-8 and a field name then uses it.  Only annotated top-level
    values can be symbol tables and QLDB blocks never are, so real exports
    never pay for it.
    """
    stack: list[tuple[int, bool]] = []
    fixed = _FIXED_BUT_STRINGS if strings else _FIXED
    while True:
        if pos >= end:
            if not stack:
                return
            end, in_struct = stack.pop()
            continue
        start = pos
        if in_struct:  # field name: one VarUInt symbol id, almost always one byte
            if buf[pos] & 0x80:
                pos += 1
            else:
                _, pos = _varuint(buf, pos, end)
            if pos >= end:
                raise _Overrun(start, "a struct field has a name but no value")
        descriptor = buf[pos]
        pos += 1
        size = fixed[descriptor]
        if size >= 0:
            pos += size
            if pos > end:
                raise _Overrun(pos - size - 1, f"a value of {size} bytes runs {pos - end} bytes past the end "
                                               f"of its container")
            continue
        kind = descriptor >> 4
        if kind == 15:
            raise _Overrun(pos - 1, f"reserved type descriptor 0x{descriptor:02x}")
        size = descriptor & 0x0F
        if size == 14 or (kind == 13 and size == 1):
            if pos < end and buf[pos] & 0x80:  # a length under 128: one byte
                size = buf[pos] & 0x7F
                pos += 1
            else:
                size, pos = _varuint(buf, pos, end)
        value_end = pos + size
        if value_end > end:
            raise _Overrun(start,
                           f"a value of {size} bytes runs {value_end - end} bytes past the end of its container")
        if kind == 8 and strings:
            try:
                buf[pos:value_end].decode("utf-8")
            except UnicodeDecodeError:
                raise _Overrun(start, "a string in an annotated value (a symbol table?) is not UTF-8") from None
        if 11 <= kind <= 13:  # list, sexp, struct: walk inside, then resume here
            stack.append((end, in_struct))
            end, in_struct = value_end, kind == 13
        elif kind == 14:  # annotation wrapper: annotation list, then exactly one value
            if size == 0:
                raise _Overrun(start, "an empty annotation wrapper")
            length, pos = _varuint(buf, pos, value_end)
            pos += length
            if pos >= value_end:
                raise _Overrun(start, "an annotation wrapper holds no value")
            stack.append((end, in_struct))
            end, in_struct = value_end, False
        else:
            pos = value_end


def _top_level_end(buf: bytes, pos: int, end: int) -> tuple[int, bool] | None:
    """(end of the top-level value at ``pos``, whether it counts as a user value), None if incomplete.

    IVMs, NOP pads and local symbol tables are not user values: the index in
    messages counts what the readers yield.
    """
    descriptor = buf[pos]
    if descriptor == 0xE0:
        if end - pos < 4:
            return None
        if buf[pos:pos + 4] != BINARY_IVM:
            raise _Overrun(pos, f"unsupported Ion version marker {buf[pos:pos + 4].hex()}")
        return pos + 4, False
    kind, size = descriptor >> 4, descriptor & 0x0F
    body = pos + 1
    if kind == 1 or size == 15:
        return body, True
    if kind == 15:
        raise _Overrun(pos, f"reserved type descriptor 0x{descriptor:02x}")
    if size == 14 or (kind == 13 and size == 1):
        try:
            size, body = _varuint(buf, body, end)
        except _Overrun:
            if end - body > 10:  # no real length needs more bytes than that
                raise
            return None
    if size > MAX_TOP_LEVEL_BYTES:
        raise _Overrun(pos, f"a top-level value declares {size} bytes, more than any QLDB block can hold "
                            f"({MAX_TOP_LEVEL_BYTES} bytes)")
    value_end = body + size
    if value_end > end:
        return None
    counts = kind != 0
    if kind == 14:  # $ion_symbol_table::{…} is no user value
        try:
            length, annotations = _varuint(buf, body, value_end)
            first, _ = _varuint(buf, annotations, min(annotations + length, value_end))
            wrapped = annotations + length
            counts = not (first == _SYMBOL_TABLE_SID and wrapped < value_end and buf[wrapped] >> 4 == 13)
        except _Overrun:
            pass  # malformed: _check_body says how
    return value_end, counts


def _walk(buf: bytes, end: int, index: int, *,
          at_eof: bool) -> tuple[int, int, IonFramingError | None]:
    """Check whole top-level values from the start of ``buf``.

    Returns the end of the last whole, well-framed one, the user values
    counted, and the error that stopped the walk, if any.
    """
    pos = 0
    while pos < end:
        try:
            found = _top_level_end(buf, pos, end)
            if found is None:
                if not at_eof:
                    break
                raise _Overrun(pos, "the stream ends inside a value")
            value_end, counts = found
            if buf[pos] != 0xE0:  # an IVM has no length to check
                # the value as the one child of a container that fits it; annotated, it may be a symbol table
                _check_body(buf, pos, value_end, False, strings=buf[pos] >> 4 == 14)
        except _Overrun as exc:
            return pos, index, IonFramingError(exc.message, exc.offset, index)
        pos = value_end
        index += counts
    return pos, index, None


def check_framing(data: bytes) -> None:
    """Raise IonFramingError unless every length in this binary Ion fits its container."""
    error = _walk(data, len(data), 0, at_eof=True)[2]
    if error is not None:
        raise error


class FramedReader:
    """A file object that hands out binary Ion only a whole, well-framed top-level value at a time.

    Streams stay streams: one top-level value (one block) is buffered, never
    the object.  Text Ion is passed through as read.  A framing error ends the
    stream after the last good value and is kept in ``error`` (raised inside
    the C reader's read call it would come out as an unrelated message), for
    the caller to raise once the reader has stopped.
    """

    CHUNK = 1 << 16

    def __init__(self, raw: IO[bytes], value_limit: int = MAX_TOP_LEVEL_BYTES, total_limit: int | None = None,
                 limit_reason: str | None = None) -> None:
        """``value_limit``: bytes one top-level value may span (counted from the last ``mark``; binary values are
        also capped by their declared lengths); ``total_limit``: bytes the whole stream may hand out.  Past
        either the stream ends with ``error`` set (``limit_reason`` says why)."""
        self.raw = raw
        self.value_limit = value_limit
        self.total_limit = total_limit
        self.limit_reason = limit_reason
        self.error: IonFramingError | None = None
        self._binary: bool | None = None
        self._pending = b""  # read, not yet checked
        self._ready = bytearray()  # checked, not yet handed out
        self._offset = 0  # stream offset of _pending[0]
        self._index = 0  # user values before _pending[0]
        self._eof = False
        self._handed = 0  # bytes returned by read()
        self._last = b""  # what the last read() returned: seek() may step back into it
        self.marked = 0  # bytes handed out when the reader last completed a top-level value (``mark``)

    def mark(self) -> None:
        """The reader completed a top-level value: text read from here on counts toward the next one's size."""
        self.marked = self._handed

    @property
    def since_mark(self) -> int:
        """Bytes handed out since the last completed value: an upper bound on the size of the value being read
        (plus the reader's read-ahead)."""
        return self._handed - self.marked

    def _fill(self) -> None:
        """Move at least one more checked byte to ``_ready``, unless the stream has ended."""
        while not self._eof and self.error is None:
            # a value larger than a chunk is read in growing steps: linear, not quadratic, in its size
            chunk = self.raw.read(max(self.CHUNK, len(self._pending)))
            self._eof = not chunk
            buf = self._pending + chunk
            if self._binary is None:
                if len(buf) < 4 and not self._eof:
                    self._pending = buf
                    continue
                self._binary = buf[:4] == BINARY_IVM
            if not self._binary:
                if self._over_limit(len(buf)):
                    return
                self._ready += buf
                self._pending = b""
                return
            done, self._index, error = _walk(buf, len(buf), self._index, at_eof=self._eof)
            if error is not None:
                self.error = IonFramingError(error.reason, self._offset + error.offset, error.index)
            if self._over_limit(done):
                return
            self._ready += buf[:done]
            self._pending = buf[done:]
            self._offset += done
            if done:
                return

    def _over_limit(self, more: int) -> bool:
        """Would handing out ``more`` bytes pass a limit?  Then the stream ends here, with the reason kept."""
        queued = self._handed + len(self._ready) + more
        if queued - self.marked > self.value_limit:
            reason = self.limit_reason or f"a top-level value larger than {self.value_limit >> 20} MiB"
        elif self.total_limit is not None and queued > self.total_limit:
            reason = self.limit_reason or f"more than {self.total_limit >> 20} MiB"
        else:
            return False
        # text has no lengths to check, but a value this large is no QLDB block: refuse to buffer it
        self.error = IonLimitError(reason, self.marked, self._index)
        self._eof = True
        return True

    def read(self, size: int | None = -1) -> bytes:
        everything = size is None or size < 0
        while (everything or len(self._ready) < size) and not self._eof and self.error is None:
            self._fill()
        if everything:
            size = len(self._ready)
        data = bytes(self._ready[:size])
        del self._ready[:size]
        self._handed += len(data)
        self._last = data
        return data

    def tell(self) -> int:
        return self._handed

    def seek(self, pos: int, whence: int = 0) -> int:
        """Only back into the last read: the pure-Python reader peeks at the first 4 bytes that way."""
        if whence != 0 or not self._handed - len(self._last) <= pos <= self._handed:
            raise io.UnsupportedOperation("a FramedReader can only seek back within its last read")
        back = self._handed - pos
        if back:
            self._ready[0:0] = self._last[len(self._last) - back:]
            self._handed = pos
        self._last = b""
        return pos

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self.raw.close()

    def __enter__(self) -> FramedReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
