"""The official Ion Hash test suite (``ion_hash_tests.ion``), every case.

Each case gives a source value and the calls a hasher must see.  We run our
implementation with the suite's hash functions, record every call to ``h``
(one per struct field, depth first, then the top-level value), and compare:

* ``digest::`` entries — the whole sequence of hash outputs, in order;
* ``final_digest::`` — the last output;
* ``update::`` entries — where one hasher sees them all (no struct fields),
  their concatenation must equal the identity digest.

Skipped cases are listed in ``SKIPPED`` with the reason; there are none that
apply to Ion 1.0 values today, and a case that stops parsing is a failure.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from amazon.ion import simpleion
from amazon.ion.simple_types import IonPyDict
from qldb_migrate.verify.ionhash import serialize
from qldb_migrate.verify.ionparse import iter_values, loads

from tests.vectors import ION_HASH_TESTS

ION_BVM = b"\xe0\x01\x00\xea"

#: name -> reason.  Kept empty on purpose: every case of the suite applies to
#: Ion 1.0 values and runs.  Add a case here only with the reason it cannot.
SKIPPED: dict[str, str] = {}

HASHERS: dict[str, Callable[[bytes], bytes]] = {
    "identity": lambda b: bytes(b),
    "md5": lambda b: hashlib.md5(b).digest(),
    "sha256": lambda b: hashlib.sha256(b).digest(),
}


@dataclass
class Case:
    name: str
    source: Any
    algorithm: str
    expectations: list[tuple[str, bytes]]


def _bytes(sexp: Any) -> bytes:
    return bytes(int(x) for x in sexp)


def _name(case: Any) -> str:
    if case.ion_annotations:
        return str(case.ion_annotations[0].text)
    if "ion" in case:
        return simpleion.dumps(case["ion"], binary=False, omit_version_marker=True)
    return "10n:" + _bytes(case["10n"]).hex()


def load_cases() -> list[Case]:
    raw = list(iter_values(lambda: open(ION_HASH_TESTS, "rb")))  # noqa: SIM115 (iter_values closes it)
    cases = []
    for i, case in enumerate(raw):
        if "ion" in case:
            source = case["ion"]
        else:
            source = loads(ION_BVM + _bytes(case["10n"]))
        name = f"{i:03d}:{_name(case)}"
        expect = case["expect"]
        assert isinstance(expect, IonPyDict)
        for algorithm, calls in expect.iteritems():
            expectations = [(str(c.ion_annotations[0].text), _bytes(c)) for c in calls]
            cases.append(Case(name, source, str(algorithm), expectations))
    return cases


CASES = load_cases()


def test_suite_is_complete() -> None:
    """Guards against the loader silently dropping cases."""
    assert len(CASES) >= 170
    assert {c.algorithm for c in CASES} <= set(HASHERS)


@pytest.mark.parametrize("case", CASES, ids=[f"{c.name[:60]}.{c.algorithm}" for c in CASES])
def test_ion_hash_case(case: Case) -> None:
    if case.name in SKIPPED:
        pytest.skip(SKIPPED[case.name])
    hasher = HASHERS[case.algorithm]
    outputs: list[bytes] = []
    inputs: list[bytes] = []

    def recording(data: bytes) -> bytes:
        inputs.append(data)
        out = hasher(data)
        outputs.append(out)
        return out

    top = serialize(case.source, recording)
    recording(top)

    digests = [b for kind, b in case.expectations if kind == "digest"]
    finals = [b for kind, b in case.expectations if kind == "final_digest"]
    updates = [b for kind, b in case.expectations if kind == "update"]
    assert digests or finals, "case has no digest expectation"
    if digests:
        assert outputs == digests
    for final in finals:
        assert outputs[-1] == final
    if updates and case.algorithm == "identity" and len(outputs) == 1:
        # Identity with no struct fields: one hasher saw every update, so
        # the updates concatenate to the digest.  (Struct fields feed
        # nested hashers; their digests are checked above instead.)
        assert b"".join(updates) == outputs[-1]
