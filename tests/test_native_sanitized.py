"""The C extension under AddressSanitizer and UBSan, on hostile input.

``hash_binary`` and ``binary_json`` read bytes from outside (``check`` reads ``data_ion`` from a
database anyone with write access could have changed), so its memory safety is
tested, not assumed: the extension is rebuilt with ``-fsanitize=address,undefined``
and a child process feeds it encodings corrupted as tests/ionmutate.py corrupts them, random values, deep nesting
and COPY rows.  Any out-of-bounds access or undefined behaviour aborts the child.
Skipped where gcc or its sanitizer runtimes are missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

CHILD = r"""
import datetime as dt, importlib.util, random, sys
spec = importlib.util.spec_from_file_location("qldb_migrate._native", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules["qldb_migrate._native"] = module
spec.loader.exec_module(module)
from amazon.ion import simpleion
from hypothesis import HealthCheck, given, settings
from qldb_migrate import native
from qldb_migrate.pg.copybinary import row_encoder
from tests.ionmutate import mutate
from tests.strategies import ion_values
assert native._native is module, "the sanitized build is not the one in use"
_native = module
rng = random.Random(11)
texts = [
    '{a: 1, b: "text", c: [1, 2.5e0, 12.30, -0.0, nan, +inf], d: 2024-01-02T03:04:05.678+01:00, e: 2024-02-03T,'
    ' f: x::y::{g: sym, h: {{aGVsbG8=}}, "$0": $0}, i: null.int, j: (a b), k: -123456789012345678901234567890,'
    ' l: {{"clob"}}, m: 1.5e-3, n: 2024-01-02T03:04Z}',
]
for text in texts:
    value = simpleion.loads(text)
    for base in (_native.encode(value), simpleion.dumps(value, binary=True)):
        for _ in range(6000):
            data = mutate(rng, base)  # the readers' fuzz mutations (tests/ionmutate.py)
            for identity in (False, True):
                try:
                    _native.hash_binary(data, identity=identity)
                except _native.NonCanonical:
                    pass
                try:
                    _native.binary_json(data, typed=identity)
                except _native.NonCanonical:
                    pass
# stream_record and stream_details read QLDB stream records from an archive anyone could have written
from qldb_migrate.sample.export import iter_ledger_blocks
from qldb_migrate.sample.stream import block_records, encode_record, stream_arn
records = [encode_record(r) for b in iter_ledger_blocks(30, 3) for r in block_records(b, stream_arn("l", 3))]
assert sum(_native.stream_record(record) is not None for record in records) >= 0.9 * len(records)
assert sum(_native.stream_details(record) is not None for record in records) > 0
for _ in range(6000):
    data = mutate(rng, rng.choice(records))
    _native.stream_record(data)
    _native.stream_details(data)
# the sealer's C writers read jsonb text and the trigger's strings: corrupted texts, deep nesting, odd times
jsonish = ['{"a": 1.50, "b": [-0, -0.0, 1e2, 1E-2, 123456789012345678901234567890], '
           '"cc": {"d": "\\u00e9\\ud83d\\ude00"}}',
           '{"": null, "k": [true, false, {}], "zz": "x\\"y"}']
for _ in range(6000):
    data = bytearray(rng.choice(jsonish).encode())
    for _edit in range(rng.randrange(1, 4)):
        at = rng.randrange(len(data) + 1)
        choice = rng.randrange(3)
        if choice == 0 and data:
            del data[at:at + rng.randrange(1, 4)]
        elif choice == 1:
            data[at:at] = bytes([rng.choice(b'{}[]",:\\.eE+-0123456789u ntf')])
        elif data:
            data[min(at, len(data) - 1)] = rng.randrange(128)
    try:
        _native.json_ion(data.decode("utf-8", "replace"))
    except _native.Declined:
        pass
for text in ("[" * 3000 + "]" * 3000, '{"a":' * 3000, '"\\ud800', '"\\u12', '-', '1e', '1.', '"'):
    try:
        _native.json_ion(text)
    except _native.Declined:
        pass
for _ in range(3000):
    t = "".join(rng.choice("0123456789-T:.Z") for _ in range(rng.choice((23, 24, 25))))
    try:
        _native.revision_metadata("d" * rng.randrange(30), rng.randrange(2**31), t, "x" * rng.randrange(300))
    except _native.Declined:
        pass
    docs = [(rng.choice(["a", "b", "tableName", "é", "x" * 40]), "n" * rng.randrange(20), "t")
            for _ in range(rng.randrange(40))]
    try:
        _native.tx_info(docs)
    except _native.Declined:
        pass
nested = []
for _ in range(3000):
    nested = [nested]
for call in (lambda: _native.encode(nested), lambda: native.canonical_json(nested),
             lambda: _native.hash_binary(b"\xe0\x01\x00\xea" + b"\xbe\x8f" * 1000 + b"\xb0"),
             lambda: _native.binary_json(b"\xe0\x01\x00\xea" + b"\xbe\x8f" * 1000 + b"\xb0"),
             lambda: _native.binary_json(b"\xe0\x01\x00\xea" + b"\xde\x82\x84" * 300 + b"\xd0")):
    try:
        call()
    except (ValueError, RecursionError):
        pass

@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(ion_values)
def values(value):
    try:
        encoded = _native.encode(value)
        _native.hash_binary(encoded)
        _native.hash_binary(encoded, identity=True)
        _native.binary_json(encoded)
        _native.binary_json(encoded, typed=True)
    except (TypeError, ValueError, OverflowError):
        pass
    native.canonical_json(value)
values()
encode = row_encoder(("text", "int4", "int8", "bytea", "bool", "jsonb", "timestamptz", "bytea[]", "text[]"), 1)
for i in range(500):
    encode(("x" * i, i, -i, b"y" * i, i % 2 == 0, "{}", dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
            [b"a", None] * (i % 5), ["b", None] * (i % 3)))
print("clean")
"""


def _runtime(name: str) -> str | None:
    out = subprocess.run(["gcc", f"-print-file-name={name}"], capture_output=True, text=True).stdout.strip()
    return out if out and os.path.isabs(out) and os.path.exists(out) else None


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc")
def test_extension_is_memory_safe_on_hostile_input(tmp_path: Path) -> None:
    asan, ubsan = _runtime("libasan.so"), _runtime("libubsan.so")
    if not (asan and ubsan):
        pytest.skip("gcc's sanitizer runtimes are not installed")
    built = tmp_path / ("_native" + sysconfig.get_config_var("EXT_SUFFIX"))
    compile_ = subprocess.run(
        ["gcc", "-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
         "-fno-omit-frame-pointer", "-fPIC", "-shared", f"-I{sysconfig.get_paths()['include']}",
         str(REPO / "migrate" / "_native.c"), "-lcrypto", "-o", str(built)],
        capture_output=True, text=True,
    )
    if compile_.returncode != 0:
        pytest.skip(f"cannot build the sanitized extension here: {compile_.stderr[-300:]}")
    # PYTHONMALLOC=malloc: every bytes object its own malloc block, so a read past its end is seen
    # (pymalloc's arenas would hide it from AddressSanitizer)
    env = {**os.environ, "LD_PRELOAD": f"{asan}:{ubsan}", "ASAN_OPTIONS": "detect_leaks=0", "PYTHONMALLOC": "malloc",
           "UBSAN_OPTIONS": "print_stacktrace=1", "PYTHONPATH": str(REPO)}
    env.pop("QLDB_MIGRATE_PURE_PYTHON", None)
    child = subprocess.run([sys.executable, "-c", CHILD, str(built)], capture_output=True, text=True, env=env,
                           cwd=REPO, timeout=900)
    assert child.returncode == 0 and child.stdout.strip().endswith("clean"), child.stderr[-4000:]
