"""Hostile and broken exports: mutated sample exports never crash, never pass unless still whole,
never make the reader open a file outside the export's root.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sys
from pathlib import Path

import pytest
from amazon.ion import simpleion
from amazon.ion.equivalence import ion_equals
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qldb_migrate.exports import ManifestError
from qldb_migrate.ionwrite import dumps_binary
from qldb_migrate.sample.export import write_sample_export
from qldb_migrate.sources import SourceError, SourceSpec
from qldb_migrate.verifier import verify_source

_OPENED: list[str] = []
_AUDITING = False


def _audit(event: str, args: tuple) -> None:
    if _AUDITING and event == "open" and isinstance(args[0], str | bytes | os.PathLike):
        _OPENED.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = {}
    for fmt in ("ion_text", "ion_binary", "json"):
        path = tmp_path_factory.mktemp(f"fuzz-{fmt}") / "export"
        write_sample_export(path, 120, fmt, 1, seed=51)
        out[fmt] = path
    return out


def _objects(export: Path) -> list[Path]:
    # digests/ and proofs/ lie beside the export (sample-export's files to try verify-proof with), not in it
    return sorted(p for p in export.rglob("*") if p.suffix in (".ion", ".json") and "digests" not in p.parts
                  and "proofs" not in p.parts
                  and p.name[0].isalpha() and not p.name.endswith("proofs.json"))


def _manifest(export: Path) -> Path:
    return next(export.glob("*.completed.manifest"))


MUTATIONS = ["flip", "truncate", "insert-garbage", "cut-line", "huge-string", "extreme-decimal", "deep-nesting",
             "wrong-type", "manifest-escape", "manifest-absolute", "manifest-other-prefix", "swap-lines"]


def _mutate(export: Path, kind: str, data: st.DataObject) -> str | None:
    """Apply one mutation; returns the object it changed (relative), or None for manifest mutations."""
    objects = _objects(export)
    target = objects[data.draw(st.integers(0, len(objects) - 1), label="object")]
    raw = target.read_bytes()
    if kind == "flip":
        pos = data.draw(st.integers(0, len(raw) - 1), label="pos")
        raw = raw[:pos] + bytes([raw[pos] ^ (1 << data.draw(st.integers(0, 7), label="bit"))]) + raw[pos + 1:]
    elif kind == "truncate":
        raw = raw[: data.draw(st.integers(0, len(raw) - 1), label="cut")]
    elif kind == "insert-garbage":
        pos = data.draw(st.integers(0, len(raw)), label="pos")
        raw = raw[:pos] + data.draw(st.binary(min_size=1, max_size=40), label="garbage") + raw[pos:]
    elif kind == "cut-line":
        lines = raw.split(b"\n")
        i = data.draw(st.integers(0, max(0, len(lines) - 2)), label="line")
        lines[i] = lines[i][: len(lines[i]) // 2]
        raw = b"\n".join(lines)
    elif kind == "swap-lines":
        lines = raw.split(b"\n")
        if len(lines) > 3:
            lines[0], lines[1] = lines[1], lines[0]
        raw = b"\n".join(lines)
    elif kind in ("huge-string", "extreme-decimal", "deep-nesting", "wrong-type"):
        payload = {
            "huge-string": b'{x:"' + b"y" * 70000 + b'"}',
            "extreme-decimal": b"{x:1d-999999999, y:7d999999999}",
            "deep-nesting": b"[" * 3000 + b"]" * 3000,
            "wrong-type": b'{blockAddress:"not a struct", blockHash:12, entriesHashList:"x"}',
        }[kind]
        if target.suffix == ".json":
            payload = json.dumps({"blockAddress": "x", "blockHash": 12, "pad": "y" * 70000}).encode()
        if raw[:4] == b"\xe0\x01\x00\xea":  # binary Ion: append the same value in binary where it encodes
            with contextlib.suppress(Exception):
                payload = dumps_binary(simpleion.load_python(io.BytesIO(payload)))
        raw = raw + b"\n" + payload
    else:
        manifest = _manifest(export)
        doc = json.loads(manifest.read_text())
        escape = {"manifest-escape": "qldb-exports/vehicle-registration/../../../../etc/passwd",
                  "manifest-absolute": "/etc/passwd",
                  "manifest-other-prefix": "another-bucket-prefix/2024/03/01/09/x.0-1.ion"}[kind]
        doc["keys"].insert(data.draw(st.integers(0, len(doc["keys"])), label="at"), escape)
        manifest.write_text(json.dumps(doc))
        return None
    target.write_bytes(raw)
    return str(target.relative_to(export))


UNHASHED = ("blockTimestamp", "transactionId")  # DESIGN §1: in no hash; consistency-checked only


def _strip_unhashed(block):
    if hasattr(block, "keys"):
        for name in UNHASHED:
            if name in block:
                del block[name]
    return block


def _same_blocks(original: Path, mutated: Path) -> bool:
    """True when the mutated object holds the same Ion values, but for fields no hash covers.

    Those fields (blockTimestamp, transactionId) are listed as unproven in every report; a change
    to them that stays consistent with the hashed times and ids cannot be detected by anyone.
    """
    try:
        if original.suffix == ".json":
            a = [json.loads(line) for line in original.read_text().splitlines() if line.strip()]
            b = [json.loads(line) for line in mutated.read_text().splitlines() if line.strip()]
            return [_strip_unhashed(x) for x in a] == [_strip_unhashed(y) for y in b]
        with open(original, "rb") as fa, open(mutated, "rb") as fb:
            a = simpleion.load(fa, single_value=False, text_buffer_size_limit=1 << 20)
            b = simpleion.load(fb, single_value=False, text_buffer_size_limit=1 << 20)
        return len(a) == len(b) and all(
            ion_equals(_strip_unhashed(x), _strip_unhashed(y)) for x, y in zip(a, b, strict=True)
        )
    except Exception:
        return False


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(fmt=st.sampled_from(["ion_text", "ion_binary", "json"]), kind=st.sampled_from(MUTATIONS), data=st.data())
def test_mutated_exports(pristine: dict[str, Path], tmp_path_factory, fmt: str, kind: str,
                         data: st.DataObject) -> None:
    global _AUDITING
    work = tmp_path_factory.mktemp("mut") / "export"
    shutil.copytree(pristine[fmt], work)
    changed = _mutate(work, kind, data)
    root = str(work.resolve())
    _OPENED.clear()
    _AUDITING = True
    try:
        result = verify_source(SourceSpec(str(work)), [], workers=1)
    except (SourceError, ManifestError):
        return  # a clear, named refusal (exit 1 or 3), never a traceback
    finally:
        _AUDITING = False
    outside = [p for p in _OPENED if not os.path.realpath(p).startswith(root)
               and not p.startswith(sys.prefix) and not p.startswith(sys.base_prefix) and "/proc/" not in p
               and not p.endswith((".py", ".pyc", ".so"))]  # module imports, not data
    assert outside == [], f"{kind}: opened outside the export: {outside}"
    # --strict semantics: a JSON export's user data is "unverifiable" and says so; a verdict of
    # "verified in full" (no errors, no reservations) is only allowed when nothing changed.
    passed = not result.errors and not result.states()
    if passed:
        assert changed is not None and _same_blocks(pristine[fmt] / changed, work / changed), (
            f"{kind} on {fmt}: verified in full although the export changed")
    elif result.errors:
        named = [f for f in result.errors if f.location.object_key or f.location.block]
        assert named, [f.describe() for f in result.errors]
    else:
        assert result.states(), "neither verified in full nor any error or reservation"
