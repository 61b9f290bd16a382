"""Binary Ion framing: malformed lengths end in a named error, never a hung or crashed process.

amazon-ion 0.15's C reader loops forever on some malformed binary lengths and
crashes the interpreter on a local symbol table with non-UTF-8 text.  Each of
those inputs is run in a child process with a time limit, so a regression
fails the test instead of hanging the suite.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from amazon.ion import simpleion
from hypothesis import given, settings
from hypothesis import strategies as st
from qldb_migrate.sample.export import write_sample_export
from qldb_migrate.verify.ionframe import FramedReader, IonFramingError, check_framing
from qldb_migrate.verify.ionparse import IonParseError, iter_values, loads

from tests.conftest import run_cli
from tests.strategies import ion_values

IVM = "e00100ea"
HOSTILE = {
    # list > list > NOP pad of 3 bytes in a 1-byte list: the C reader never returns
    "nested NOP pad overrun": IVM + "b3" + "b103000000",
    "nested int overrun": IVM + "b3" + "b123000000",
    # $ion_symbol_table::{symbols:["k\xe3"]} then {$10: 0}: the C reader segfaults
    "symbol text not UTF-8": IVM + "e88183d587b3826be3" + "d28a20",
    "stream ends inside a value": IVM + "d6" + "8a21",
    "reserved type code": IVM + "b2" + "f0" + "00",
    "field name without a value": IVM + "d2" + "008a",
    "empty annotation wrapper": IVM + "b1" + "e0",
}

_CHILD = """
import io, sys
from qldb_migrate.verify.ionparse import IonParseError, iter_values, loads
data = bytes.fromhex(sys.argv[1])
for name, parse in (("loads", lambda: loads(data)),
                    ("iter_values", lambda: list(iter_values(lambda: io.BytesIO(data))))):
    try:
        parse()
        print(name, "parsed")
    except IonParseError as exc:
        print(name, "error", exc.index, exc)
"""


@pytest.mark.parametrize("name", list(HOSTILE))
def test_malformed_binary_is_an_error_not_a_hang_or_crash(name: str) -> None:
    proc = subprocess.run([sys.executable, "-c", _CHILD, HOSTILE[name]], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"{name}: child died with {proc.returncode}\n{proc.stderr}"
    lines = proc.stdout.splitlines()
    assert [line.split()[:3] for line in lines] == [["loads", "error", "0"], ["iter_values", "error", "0"]], lines


def test_error_names_the_byte_and_value_and_good_values_come_first() -> None:
    good = [simpleion.dumps(v, binary=True) for v in ({"a": 1}, [1, 2], "three")]
    body = b"".join(g[4:] for g in good)  # one IVM; each dump starts with its own
    data = bytes.fromhex(IVM) + body + bytes.fromhex("b3b103000000")
    bad_offset = len(data) - 6
    with pytest.raises(IonFramingError) as caught:
        check_framing(data)
    assert (caught.value.offset, caught.value.index) == (bad_offset + 2, 3)  # the inner list's NOP pad
    seen = []
    with pytest.raises(IonParseError, match=rf"byte {bad_offset + 2}, top-level value #3"):
        for value in iter_values(lambda: io.BytesIO(data)):
            seen.append(value)
    assert seen == [{"a": 1}, [1, 2], "three"]


@settings(max_examples=150, deadline=None)
@given(values=st.lists(ion_values, min_size=1, max_size=6), chunk=st.integers(1, 70))
def test_well_framed_binary_passes_unchanged_in_any_chunking(values: list, chunk: int) -> None:
    data = simpleion.dumps(values, binary=True, sequence_as_stream=True)
    check_framing(data)
    reader = FramedReader(io.BytesIO(data))
    reader.CHUNK = chunk
    out = bytearray()
    while piece := reader.read(chunk + 3):
        out += piece
    assert bytes(out) == data and reader.error is None
    assert len(list(iter_values(lambda: io.BytesIO(data)))) == len(values)


def test_text_ion_passes_through_untouched() -> None:
    text = b'$ion_1_0 {a: 1} [b, "c"] '
    reader = FramedReader(io.BytesIO(text))
    assert reader.read() == text and reader.error is None
    assert loads(b"$ion_1_0 {a: 1}") == {"a": 1}


def test_a_block_is_buffered_alone_not_the_object() -> None:
    """Streams stay streams: at most one top-level value (plus one chunk) is held back."""
    big = simpleion.dumps([{"i": i, "pad": "x" * 200} for i in range(2000)], binary=True, sequence_as_stream=True)
    reader = FramedReader(io.BytesIO(big))
    reader.CHUNK = 4096
    held = 0
    while reader.read(1000):
        held = max(held, len(reader._pending) + len(reader._ready))
    assert held < 2 * 4096 + 300, held


def _cut_line(raw: bytes, line: int) -> bytes:
    lines = raw.split(b"\n")
    lines[line] = lines[line][: len(lines[line]) // 2]
    return b"\n".join(lines)


def test_verify_names_the_object_of_a_hostile_binary_export(tmp_path: Path) -> None:
    """The case that hung CI: hypothesis's "cut-line" mutation of an ION_BINARY block object."""
    export = tmp_path / "export"
    write_sample_export(export, 120, "ion_binary", 1, seed=51)
    target = next(p for p in sorted(export.rglob("*.ion")) if "digests" not in p.parts and p.name[0].isalpha())
    raw = target.read_bytes()
    cut = next(c for c in (_cut_line(raw, i) for i in range(len(raw.split(b"\n")) - 1))
               if c != raw and _overruns(c))
    target.write_bytes(cut)
    proc = run_cli("verify", export, timeout=120)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    assert "Traceback" not in output
    assert str(target.relative_to(export)) in proc.stderr
    assert "past the end of its container" in proc.stderr


def _overruns(data: bytes) -> bool:
    try:
        check_framing(data)
    except IonFramingError as exc:
        return "past the end of its container" in str(exc) and exc.index > 0
    return False


@pytest.mark.parametrize("text", [b"[{},true,1", b"$ion_1_0 [1.5e+0,z", b"[1, 2"])
def test_text_cut_inside_a_container_is_an_error(text: bytes) -> None:
    """The pure-Python reader (the fallback) raises StopIteration here; it must come out as IonParseError."""
    with pytest.raises(IonParseError):
        loads(text)
    with pytest.raises(IonParseError):
        list(iter_values(lambda: io.BytesIO(text)))


@pytest.mark.parametrize("fmt", ["ION_TEXT", "ION_BINARY"])
def test_values_the_c_reader_refuses_are_read_by_the_fallback(fmt: str) -> None:
    """Valid Ion the C reader refuses (an extreme decimal exponent) must not make an object "corrupt".

    Before the framing reader, the fallback got a stream without seek() and every such object failed.
    """
    from decimal import Decimal

    from qldb_migrate.blockstream import StreamDigest, iter_blocks
    from qldb_migrate.ionwrite import dumps_binary

    values = [{"a": 1}, {"x": Decimal("1E-99999")}, {"b": 2}]
    if fmt == "ION_BINARY":  # the C writer refuses the value too: the exact writer, one stream per value
        data = b"".join(dumps_binary(v) for v in values)
    else:
        data = b"$ion_1_0 {a:1} {x:1d-99999} {b:2}"
    digest = StreamDigest()
    got = list(iter_blocks(lambda: io.BytesIO(data), fmt, digest))
    assert got == values
    import hashlib
    assert (digest.sha256, digest.size) == (hashlib.sha256(data).hexdigest(), len(data))
    assert loads(dumps_binary(values[1]) if fmt == "ION_BINARY" else b"{x:1d-99999}") == values[1]


@pytest.mark.parametrize("mode", ["binary", "text"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_mutations_never_hang_or_crash(mode: str, seed: int) -> None:
    """3,000 mutated streams per case, in a child process with a time limit.

    With the framing check and the fallback's wider error list taken out, 5 of these 6 cases failed
    (the three binary seeds and text seeds 1 and 2).
    """
    child = Path(__file__).with_name("ionmutate.py")
    try:
        proc = subprocess.run([sys.executable, str(child), str(seed), "3000", mode], capture_output=True, text=True,
                              timeout=180)
    except subprocess.TimeoutExpired as exc:
        last = (exc.stdout or b"").decode(errors="replace").strip().splitlines()[-1:]
        pytest.fail(f"hung on {last}")
    last = proc.stdout.strip().splitlines()[-1:]
    assert proc.returncode == 0 and last == ["DONE"], f"rc={proc.returncode} after {last}\n{proc.stderr[-3000:]}"


class _Endless(io.RawIOBase):
    """A stream that never ends: IVM, a struct declaring 2**40 bytes, then zeros for ever."""

    def __init__(self) -> None:
        self.served = 0
        self.head = bytes.fromhex(IVM + "de") + bytes([0x20, 0, 0, 0, 0, 0x80])  # VarUInt 2**40

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        data = self.head[: len(buf)] if self.served < len(self.head) else bytes(len(buf))
        self.head = self.head[len(data):]
        buf[: len(data)] = data
        self.served += len(data)
        return len(data)


def test_a_declared_length_beyond_any_block_is_refused_on_sight() -> None:
    """Memory stays flat on hostile input: the reader does not buffer towards a 1 TiB value."""
    raw = _Endless()
    with pytest.raises(IonParseError, match="more than any QLDB block can hold"):
        list(iter_values(lambda: io.BufferedReader(raw)))
    assert raw.served < 1 << 20, raw.served


# --- bounded cost on hostile text (each case took minutes, or memory without bound, before) ---------------------


def _read_all(data: bytes) -> int:
    from qldb_migrate.verify.ionparse import iter_values

    return sum(1 for _ in iter_values(lambda: io.BytesIO(data)))


@pytest.mark.timeout(60)
def test_a_large_text_value_is_read_in_c_in_linear_time() -> None:
    """Before: one text value over 1 MiB fell back to the pure-Python reader (1 MiB 38 s, 2 MiB > 120 s)."""
    assert _read_all(b'{a:"' + b"x" * (8 << 20) + b'"} {b:2}') == 2


@pytest.mark.timeout(120)
def test_a_text_value_past_the_cap_is_refused_without_buffering_it() -> None:
    from qldb_migrate.verify.ionparse import IonParseError

    with pytest.raises(IonParseError, match="larger than 64 MiB"):
        _read_all(b"[" + b'"abc",' * (12 << 20) + b"]")


@pytest.mark.timeout(60)
def test_a_value_only_the_slow_reader_reads_is_bounded() -> None:
    """More than 13 annotations (valid Ion the C reader refuses) on a 2 MiB value: refused in bounded time."""
    from qldb_migrate.verify.ionparse import IonParseError

    annotations = b"::".join(b"a%d" % i for i in range(14)) + b"::"
    assert _read_all(b"{x:1} " + annotations + b'{a:"small"} {b:2}') == 3  # small: still read
    with pytest.raises(IonParseError, match="pure-Python reader"):
        _read_all(annotations + b'{a:"' + b"x" * (2 << 20) + b'"}')


@pytest.mark.timeout(120)
def test_json_lines_are_read_in_linear_time_and_capped() -> None:
    """Before: the line reader was quadratic (a 64 MiB line took 25 s and 168 MB)."""
    from qldb_migrate.blockstream import MAX_JSON_LINE_BYTES, HashingReader, LineTooLong

    reader = HashingReader(io.BytesIO(b"x" * (32 << 20) + b"\n{}\n"))
    assert len(reader.readline(MAX_JSON_LINE_BYTES)) == (32 << 20) + 1 and reader.readline() == b"{}\n"
    with pytest.raises(LineTooLong):
        HashingReader(io.BytesIO(b"x" * (MAX_JSON_LINE_BYTES + 10) + b"\n")).readline(MAX_JSON_LINE_BYTES)
