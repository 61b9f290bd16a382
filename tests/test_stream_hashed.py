"""Revision data hashed from a stream record's bytes (``streamhashed``) against parsing the record whole.

The fast path (``native.stream_details``, ``iter_stream_blocks(hashed_data=True)``,
``hashed_prover``) must give exactly what the reference gives, the whole
record parsed by amazon-ion and its values hashed: on genuine and re-encoded
records, on unusual shapes and on thousands of corrupted ones record by
record, and block by block and verdict by verdict on clean and tampered
archives.  Each test fails if the two readings disagree anywhere.
"""

from __future__ import annotations

import random
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from amazon.ion import simpleion
from amazon.ion.simple_types import IonPyDict
from qldb_migrate import native
from qldb_migrate.sample.export import iter_ledger_blocks
from qldb_migrate.sample.stream import block_records, encode_record, reencode_record
from qldb_migrate.sources import SourceSpec
from qldb_migrate.streamhashed import HashedData, hashed_prover
from qldb_migrate.streamobjects import parse_record
from qldb_migrate.streams import _text, iter_stream_blocks
from qldb_migrate.verifier import verify_sources
from qldb_migrate.verify.block import check_block
from qldb_migrate.verify.ionhash import ion_hash
from qldb_migrate.verify.ionparse import VALUE_MODEL

from tests.ionmutate import mutate
from tests.test_streams import _ARN, _SHAPES, SEED, _is, _scan, _user_block, _write

pytestmark = pytest.mark.skipif(not native.AVAILABLE, reason="qldb_migrate._native is not built")

_REVISION = ('{{qldbStreamArn: "{arn}", recordType: REVISION_DETAILS, payload: {{revision: {{blockAddress: '
             '{{strandId: "s", sequenceNo: 4}}, hash: {{{{aGFzaA==}}}}, {fields}metadata: {{id: "d", version: 1}}'
             '}}}}}}')
#: REVISION_DETAILS records the C split must decline: data absent, null, not a struct, annotated, repeated.
_DECLINED = [_REVISION.format(arn=_ARN, fields=fields) for fields in (
    "", "data: null, ", "data: null.struct, ", "data: [1], ", "data: a::{x: 1}, ", "data: {x: 1}, data: {x: 2}, ",
    "data: {x: b::1}, ", "data: {x: 12345678901234567890123456789012345678.5}, ")]


def _without_data(revision: Any) -> list[tuple[str, bytes]]:
    """A revision's fields in order (repeated names kept), each with its value's hash, ``data`` left out."""
    return [(k, ion_hash(v)) for k, v in revision.iteritems() if k != "data"]


def _check_split(data: bytes) -> bool:
    """Whether ``stream_details`` answered; where it did, it must equal the record parsed whole."""
    split = native.stream_details(data)
    if split is None:
        return False
    stripped, digest = split
    record = parse_record(data)
    assert _text(record["recordType"]) == "REVISION_DETAILS", data.hex()
    revision = record["payload"]["revision"]
    assert [k for k in revision if k == "data"] == ["data"], data.hex()
    assert digest == ion_hash(revision["data"]), data.hex()
    alone = simpleion.loads(stripped, value_model=VALUE_MODEL)
    assert "data" not in alone and _without_data(alone) == _without_data(revision), data.hex()
    return True


def test_the_c_split_of_details_records_is_the_whole_records_reading() -> None:
    records = [r for block in list(iter_ledger_blocks(60, SEED)) for r in block_records(block, _ARN)]
    genuine = [encode_record(r) for r in records] + [reencode_record(r) for r in records[:40]]
    with_data = [r for r in map(parse_record, genuine)
                 if _text(r["recordType"]) == "REVISION_DETAILS" and "data" in r["payload"]["revision"]]
    assert sum(map(_check_split, genuine)) >= 0.9 * len(with_data) > 0  # the fast path is the common one
    shapes = [simpleion.dumps(simpleion.loads(text), binary=True) for text in _SHAPES + _DECLINED]
    for text in _DECLINED:
        assert native.stream_details(simpleion.dumps(simpleion.loads(text), binary=True)) is None, text
    for data in shapes:
        _check_split(data)
    rng = random.Random(17)
    answered = sum(_check_split(mutate(rng, rng.choice(genuine[:80]))) for _ in range(3000))
    assert answered > 0


def _block_outcome(block: Any, absent: dict[int, str], prove: Any) -> Any:
    check = check_block(block, "k", True, prove, absent)
    return (check.ok, check.computed_block_hash, check.computed_entries_hash,
            [(r.status, r.stored_hash, r.computed_hash, r.data_hash, r.metadata_hash, r.document_id, r.version)
             for r in check.revisions],
            [f.describe() for f in check.findings])


def _tamper_data(seq: int, value: Any) -> Any:
    def tamper(record: Any) -> Any:
        if _is(record, "REVISION_DETAILS", seq) and "data" in record["payload"]["revision"]:
            data = record["payload"]["revision"]["data"]
            data[next(iter(data.keys()))] = value
        return record
    return tamper


def _tamper_metadata(seq: int) -> Any:
    def tamper(record: Any) -> Any:
        if _is(record, "REVISION_DETAILS", seq) and "data" in record["payload"]["revision"]:
            record["payload"]["revision"]["metadata"]["txId"] = "tampered"
        return record
    return tamper


def _annotate_data(seq: int) -> Any:
    """Data that reads as the same value with an annotation: the split declines, the reference decides."""
    def tamper(record: Any) -> Any:
        if _is(record, "REVISION_DETAILS", seq) and "data" in record["payload"]["revision"]:
            revision = record["payload"]["revision"]
            copy = IonPyDict()
            for k, v in revision["data"].iteritems():
                copy.add_item(k, v)
            copy.ion_annotations = ("a",)
            revision["data"] = copy
        return record
    return tamper


_SEQ = _user_block()[0]
_TAMPERS = {
    "none": None,
    "changed data value": _tamper_data(_SEQ, "tampered"),
    "data value outside the C subset": _tamper_data(_SEQ, Decimal("12345678901234567890123456789012345678.5")),
    "changed metadata": _tamper_metadata(_SEQ),
    "annotated data": _annotate_data(_SEQ),
}


@pytest.mark.parametrize("tamper", list(_TAMPERS))
def test_hashed_blocks_check_exactly_as_parsed_ones(tamper: str, tmp_path: Path) -> None:
    options = {"transform": _TAMPERS[tamper]} if _TAMPERS[tamper] else {}
    out, _ = _write(tmp_path, duplicate_fraction=0.05, reorder_window=50, **options)
    archive = _scan(out, tmp_path)
    parsed = list(iter_stream_blocks(archive.spill_path, archive.first, archive.last))
    hashed = list(iter_stream_blocks(archive.spill_path, archive.first, archive.last, hashed_data=True))
    assert len(parsed) == len(hashed) > 0
    fast = hashed_prover(native.prove)
    split = 0
    for (block, absent), (quick, quick_absent) in zip(parsed, hashed, strict=True):
        assert quick_absent == absent
        split += sum(type(r.get("data")) is HashedData for r in quick.get("revisions", []))
        reference = _block_outcome(block, absent, None)
        assert _block_outcome(block, absent, native.prove) == reference
        assert _block_outcome(quick, absent, fast) == reference
    assert split > 0  # the fast path was taken
    if tamper != "none":
        by_seq = {b["blockAddress"]["sequenceNo"]: b for b, _ in hashed}
        assert not check_block(by_seq[_SEQ], "k", True, fast).ok


@pytest.mark.parametrize("tamper", ["none", "changed data value", "data value outside the C subset"])
def test_verify_of_an_archive_is_the_same_with_and_without_the_split(tamper: str, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    options = {"transform": _TAMPERS[tamper]} if _TAMPERS[tamper] else {}
    out, _ = _write(tmp_path, duplicate_fraction=0.05, **options)

    def verdict(name: str, reference: bool = False) -> Any:
        result = verify_sources([SourceSpec(str(out))], [], workers=1, workdir=tmp_path / name, reference=reference)
        return (result.findings.to_json(), result.statuses, result.revisions, result.blocks, result.error_count)

    calls = []
    real = native.stream_details
    monkeypatch.setattr(native, "stream_details", lambda data: calls.append(1) or real(data))
    fast = verdict("fast")
    assert calls
    monkeypatch.setattr(native, "stream_details", lambda data: None)
    assert verdict("parsed") == fast
    # the reference path (pure-Python Ion Hash of parsed values) never takes the split, and agrees
    monkeypatch.setattr(native, "stream_details", lambda data: calls.append(2) or real(data))
    calls.clear()
    assert verdict("reference", reference=True) == fast and not calls
    assert (fast[4] == 0) == (tamper == "none")
