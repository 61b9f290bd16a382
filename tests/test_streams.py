"""QLDB stream archives: KPL de-aggregation, every archive layout, and every tamper class.

The sample ledger is written twice, as a journal export and as a stream
archive of the same blocks; every layout must rebuild blocks that are
Ion-equal to the export's and chain with the export's block hashes, and
every tamper must come out as an error naming the object, the record and the
block.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from amazon.ion.simple_types import IonPyDict
from qldb_migrate.blockstream import StreamDigest, iter_blocks
from qldb_migrate.kpl import KPL_MAGIC, KplError, deaggregate
from qldb_migrate.sample.export import iter_ledger_blocks, write_sample_export
from qldb_migrate.sample.stream import (
    block_records,
    encode_record,
    kpl_aggregate,
    reencode_record,
    stream_arn,
    write_stream_archive,
)
from qldb_migrate.sources import LocalSource
from qldb_migrate.streamobjects import RawRecord, RecordError, iter_object_records
from qldb_migrate.streams import (
    is_stream_archive,
    iter_stream_blocks,
    match_revisions,
    record_origins,
    scan_stream_archive,
)
from qldb_migrate.verify.block import check_block
from qldb_migrate.verify.findings import Severity
from qldb_migrate.verify.ionhash import ion_hash

REVISIONS = 500
SEED = 11
LEDGER = "vehicle-registration"

# --- KPL ------------------------------------------------------------------------------------------

#: Written by AWS's own aws-kinesis-agg 1.2.3 (RecordAggregator): user records b"first" (partition key
#: "pk-1", explicit hash key "123"), b"second" ("pk-2"), b"third" ("pk-1").  A vector from the reference
#: producer, so reader and our writer cannot share one misreading of the format.
AWS_AGGREGATED = bytes.fromhex(
    "f3899ac20a04706b2d310a04706b2d3212033132331a0b080010001a0566697273741a0a08011a067365636f6e641a0908001a05"
    "7468697264cdfa9adefe583e861cdba9fde17f40e2"
)


def _with_md5(message: bytes) -> bytes:
    return KPL_MAGIC + message + hashlib.md5(message).digest()


def test_kpl_reads_the_reference_aggregator_output() -> None:
    assert deaggregate(AWS_AGGREGATED) == [b"first", b"second", b"third"]


def test_kpl_passes_plain_records_through() -> None:
    record = encode_record(IonPyDict())
    assert deaggregate(record) == [record]
    assert deaggregate(b"") == [b""]


def test_kpl_writer_and_reader_agree() -> None:
    records = [b"a" * 300, b"", b"\xe0\x01\x00\xea" + bytes(range(256))]
    assert deaggregate(kpl_aggregate(records, ["k1", "k2", "k1"])) == records


def test_kpl_bad_md5_is_an_error_not_a_plain_record() -> None:
    bad = AWS_AGGREGATED[:-1] + bytes([AWS_AGGREGATED[-1] ^ 1])
    with pytest.raises(KplError, match="MD5"):
        deaggregate(bad)


@pytest.mark.parametrize(
    ("message", "match"),
    [
        (bytes.fromhex(AWS_AGGREGATED[4:-16].hex())[:-3], "declares"),  # a field cut short (MD5 recomputed)
        (b"\x1a\x05\x08\x00\x1a", "declares"),  # a record's length runs past the message
        (b"\x08" + b"\xff" * 11, "varint"),  # a varint longer than 10 bytes
        (b"\x08\xff\xff", "varint"),  # a varint cut by the end of the message
        (b"\x0a\x02pk\x1a\x04\x08\x05\x1a\x00", "partition key #5"),  # index outside its table
        (b"\x0a\x02pk\x1a\x02\x08\x00", "lacks its required data"),
        (b"\x0b", "wire type 3"),  # a group: not in the format
    ],
)
def test_kpl_corruption_is_an_error(message: bytes, match: str) -> None:
    with pytest.raises(KplError, match=match):
        deaggregate(_with_md5(message))


def test_kpl_too_short_for_its_digest() -> None:
    with pytest.raises(KplError, match="shorter"):
        deaggregate(KPL_MAGIC + b"\x00" * 5)


# --- the ledger, as an export and as blocks -----------------------------------------------------------


@pytest.fixture(scope="module")
def export_blocks(tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    """The export's own blocks (written by write_sample_export, read back as the verifier reads them)."""
    out = tmp_path_factory.mktemp("stream-export") / "export"
    write_sample_export(out, REVISIONS, "ion_binary", 1, SEED)
    blocks = []
    for path in sorted(out.rglob("*.ion"), key=lambda p: int(p.name.split(".")[1].split("-")[0])):
        blocks.extend(iter_blocks(lambda p=path: open(p, "rb"), "ION_BINARY", StreamDigest()))  # noqa: SIM115
    assert [b["blockAddress"]["sequenceNo"] for b in blocks] == list(range(len(blocks)))
    return blocks


def _write(tmp: Path, name: str = "archive", **options: Any) -> tuple[Path, Any]:
    out = tmp / name
    summary = write_stream_archive(out, iter_ledger_blocks(REVISIONS, SEED), LEDGER, SEED, **options)
    return out, summary


def _scan(out: Path, tmp: Path) -> Any:
    return scan_stream_archive(LocalSource(out), tmp / f"work-{out.name}")


def _as_delivered(block: Any) -> Any:
    """The export block with blockAddress in each document revision, as REVISION_DETAILS carry it."""
    copy = IonPyDict()
    for name, value in block.iteritems():
        if name == "revisions":
            revisions = []
            for rev in value:
                if "metadata" in rev:
                    with_address = IonPyDict()
                    with_address.add_item("blockAddress", block["blockAddress"])
                    for k, v in rev.iteritems():
                        with_address.add_item(k, v)
                    rev = with_address
                revisions.append(rev)
            value = revisions
        copy.add_item(name, value)
    return copy


def _errors(archive: Any) -> list[str]:
    return [f.describe() for f in archive.findings if f.is_error]


def test_iter_ledger_blocks_are_the_exports_blocks(export_blocks: list[Any]) -> None:
    built = list(iter_ledger_blocks(REVISIONS, SEED))
    assert len(built) == len(export_blocks)
    assert all(ion_hash(a) == ion_hash(b) for a, b in zip(built, export_blocks, strict=True))


VARIANTS = {
    "firehose": {},
    "firehose-gzip": {"gzip_fraction": 1.0},
    "firehose-newline": {"newline": True, "gzip_fraction": 0.5},
    "get-records": {"layout": "get-records"},
    "get-records-kpl": {"layout": "get-records", "aggregate": True},
    "lambda": {"layout": "lambda"},
    "lambda-kpl": {"layout": "lambda", "aggregate": True},
    "duplicates-reordered": {"duplicate_fraction": 0.15, "reorder_window": 300, "records_per_object": 150,
                             "gzip_fraction": 0.3},
    "kpl-duplicates-reordered": {"layout": "get-records", "aggregate": True, "duplicate_fraction": 0.15,
                                 "reorder_window": 300},
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_layout_rebuilds_the_exports_blocks(variant: str, export_blocks: list[Any], tmp_path: Path) -> None:
    out, written = _write(tmp_path, **VARIANTS[variant])
    assert is_stream_archive(LocalSource(out))
    archive = _scan(out, tmp_path)
    assert _errors(archive) == []
    assert [f.code for f in archive.findings if f.severity is Severity.WARNING] == []
    assert archive.strand_id == export_blocks[0]["blockAddress"]["strandId"]
    assert (archive.first, archive.last, archive.blocks) == (0, len(export_blocks) - 1, len(export_blocks))
    assert archive.stream_arns == {written.stream_arn}
    assert archive.duplicates == written.duplicates
    assert sum(o.records for o in archive.objects) == archive.records == written.records
    assert all(len(o.sha256) == 64 and o.size > 0 for o in archive.objects)
    rebuilt = list(iter_stream_blocks(archive.spill_path, archive.first, archive.last))
    assert len(rebuilt) == len(export_blocks)
    previous = b""
    system_revisions = 0
    for (block, not_present), expected in zip(rebuilt, export_blocks, strict=True):
        assert not_present == {}
        assert ion_hash(block) == ion_hash(_as_delivered(expected))
        check = check_block(block)
        assert check.ok, [f.describe() for f in check.findings]
        assert check.computed_block_hash == bytes(expected["blockHash"])
        assert check.previous_block_hash == previous
        previous = check.computed_block_hash
        system_revisions += sum(1 for r in block.get("revisions", []) if "metadata" not in r)
    assert system_revisions > 0  # system revisions came through as {hash}, from summaries alone


def test_ranges_split_across_workers_join_up(tmp_path: Path) -> None:
    out, _ = _write(tmp_path, duplicate_fraction=0.1, reorder_window=100, records_per_object=100)
    archive = _scan(out, tmp_path)
    alone = scan_stream_archive(LocalSource(out), tmp_path / "alone", workers=1)
    assert [f.describe() for f in alone.findings] == [f.describe() for f in archive.findings]
    assert (alone.objects, alone.duplicates, alone.first, alone.last) == (
        archive.objects, archive.duplicates, archive.first, archive.last)
    whole = [ion_hash(b) for b, _ in iter_stream_blocks(archive.spill_path, archive.first, archive.last)]
    assert whole == [ion_hash(b) for b, _ in iter_stream_blocks(alone.spill_path, alone.first, alone.last)]
    middle = (archive.first + archive.last) // 2
    parts = [ion_hash(b) for b, _ in iter_stream_blocks(archive.spill_path, archive.first, middle)]
    parts += [ion_hash(b) for b, _ in iter_stream_blocks(archive.spill_path, middle + 1, archive.last)]
    assert parts == whole


def test_an_export_is_not_a_stream_archive(tmp_path: Path) -> None:
    export = tmp_path / "export"
    write_sample_export(export, 40, "ion_binary", 1, 3)
    assert not is_stream_archive(LocalSource(export))
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("hello\n")
    (other / "digest.json").write_text('{"Digest": "abc"}\n')
    assert not is_stream_archive(LocalSource(other))


def test_unrelated_files_are_skipped_with_a_note(tmp_path: Path) -> None:
    out, _ = _write(tmp_path)
    (out / "README.txt").write_text("copied from s3\n")
    (out / "digest.json").write_text('{"Digest": "abc"}\n')
    archive = _scan(out, tmp_path)
    assert _errors(archive) == []
    assert [f.code for f in archive.findings if f.severity is Severity.NOTE] == ["stream-objects-skipped"]


def test_reencoded_copies_collapse_by_content(tmp_path: Path) -> None:
    out, _ = _write(tmp_path, records_per_object=10_000)
    blocks = list(iter_ledger_blocks(REVISIONS, SEED))
    arn = stream_arn(LEDGER, SEED)
    copies = b"".join(reencode_record(r) for r in block_records(blocks[5], arn))
    assert copies not in (out / _firehose_keys(out)[0]).read_bytes()  # other bytes, same content
    _extra_object(out, copies)
    archive = _scan(out, tmp_path)
    assert _errors(archive) == []
    assert archive.duplicates == len(block_records(blocks[5], arn))


def test_a_cancelled_stream_is_a_warning(tmp_path: Path) -> None:
    out, _ = _write(tmp_path, completed=False)
    archive = _scan(out, tmp_path)
    assert _errors(archive) == []
    warnings = [f for f in archive.findings if f.severity is Severity.WARNING]
    assert [f.code for f in warnings] == ["stream-not-completed"]


# --- tampering ------------------------------------------------------------------------------------------


def _items(path: Path, key: str) -> list[Any]:
    with open(path, "rb") as fh:
        return list(iter_object_records(fh, key))


def _firehose_keys(out: Path) -> list[str]:
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())


def _extra_object(out: Path, data: bytes) -> str:
    """One more Firehose object, named to sort after every other (delivered last)."""
    key = "2099/01/01/00/qldb-journal-archive-1-2099-01-01-00-00-00-00000000-0000-4000-8000-000000000000"
    (out / key).parent.mkdir(parents=True, exist_ok=True)
    (out / key).write_bytes(data)
    return key


def _is(record: Any, kind: str, seq: int) -> bool:
    payload = record["payload"]
    if record["recordType"] != kind:
        return False
    address = payload["revision"]["blockAddress"] if kind == "REVISION_DETAILS" else payload["blockAddress"]
    return address["sequenceNo"] == seq


def _user_block(seq_from: int = 20) -> tuple[int, Any]:
    """A block with at least one document revision that carries data."""
    for block in iter_ledger_blocks(REVISIONS, SEED):
        seq = block["blockAddress"]["sequenceNo"]
        if seq >= seq_from and any("data" in r for r in block.get("revisions", [])):
            return seq, block
    raise AssertionError("no user block")


def _findings(archive: Any, code: str) -> list[Any]:
    return [f for f in archive.findings if f.code == code]


def test_changed_revision_value_is_delivered_unchanged_for_check_block(tmp_path: Path) -> None:
    seq, _ = _user_block()

    def tamper(record: Any) -> Any:
        if _is(record, "REVISION_DETAILS", seq) and "data" in record["payload"]["revision"]:
            data = record["payload"]["revision"]["data"]
            field = next(iter(data.keys()))
            data[field] = "tampered"
        return record

    out, _ = _write(tmp_path, transform=tamper)
    archive = _scan(out, tmp_path)
    assert _errors(archive) == []  # the envelope agrees: only the content hash can tell
    by_seq = {b["blockAddress"]["sequenceNo"]: b for b, _ in iter_stream_blocks(archive.spill_path, seq, seq)}
    check = check_block(by_seq[seq])
    assert not check.ok
    assert {f.code for f in check.findings if f.is_error} >= {"revision-hash-mismatch"}
    origins = record_origins(archive.spill_path, seq)
    bad = next(f for f in check.findings if f.code == "revision-hash-mismatch")
    origin = next(o for o in origins if o.revision_index == bad.location.revision_index)
    assert origin.object_key in _firehose_keys(out) and origin.label.startswith("record #")


def test_dropped_block_summary(tmp_path: Path) -> None:
    seq, _ = _user_block()
    out, _ = _write(tmp_path, transform=lambda r: None if _is(r, "BLOCK_SUMMARY", seq) else r)
    archive = _scan(out, tmp_path)
    missing = _findings(archive, "stream-summary-missing")
    assert len(missing) == 1 and missing[0].is_error
    assert missing[0].location.block.sequence_no == seq
    assert missing[0].location.object_key in _firehose_keys(out) and "record #" in missing[0].message
    assert _errors(archive) == [missing[0].describe()]
    seqs = [b["blockAddress"]["sequenceNo"] for b, _ in iter_stream_blocks(archive.spill_path, archive.first,
                                                                            archive.last)]
    assert seq not in seqs and len(seqs) == archive.blocks == archive.last - archive.first  # the gap


def test_details_past_the_last_summary_of_a_running_stream_are_a_warning(tmp_path: Path) -> None:
    last = len(list(iter_ledger_blocks(REVISIONS, SEED))) - 1
    out, _ = _write(tmp_path, completed=False,
                    transform=lambda r: None if _is(r, "BLOCK_SUMMARY", last) else r)
    archive = _scan(out, tmp_path)
    assert _errors(archive) == []
    codes = {f.code for f in archive.findings if f.severity is Severity.WARNING}
    assert codes == {"stream-not-completed", "stream-details-beyond-summaries"}


@pytest.mark.parametrize("how", ["strand", "arn"])
def test_a_summary_of_another_ledger(how: str, tmp_path: Path) -> None:
    out, _ = _write(tmp_path)
    if how == "strand":
        other = list(iter_ledger_blocks(60, SEED + 1))[7]  # another ledger: another strand
        record = block_records(other, stream_arn("other-ledger", SEED + 1))[0]
    else:
        mine = list(iter_ledger_blocks(REVISIONS, SEED))[7]
        record = block_records(mine, stream_arn("vehicle-registration-copy", SEED))[0]
    key = _extra_object(out, encode_record(record))
    archive = _scan(out, tmp_path)
    foreign = _findings(archive, "stream-record-other-ledger")
    assert len(foreign) == 1 and foreign[0].is_error
    assert foreign[0].location.object_key == key and foreign[0].location.block.sequence_no == 7
    assert "record #0" in foreign[0].message
    assert _errors(archive) == [foreign[0].describe()]
    rebuilt = {b["blockAddress"]["sequenceNo"]: b for b, _ in iter_stream_blocks(archive.spill_path, 7, 7)}
    assert check_block(rebuilt[7]).ok  # the archive's own block, not the other ledger's


def test_truncated_records(tmp_path: Path) -> None:
    out, _ = _write(tmp_path, records_per_object=200)
    keys = _firehose_keys(out)
    # the last record of one object cut in half, and one record in the middle of another cut short
    tail = out / keys[0]
    data = tail.read_bytes()
    tail_records = [r for r in _items(tail, keys[0]) if isinstance(r, RawRecord)]
    tail.write_bytes(data[: len(data) - len(tail_records[-1].data) // 2])
    middle = out / keys[1]
    data = middle.read_bytes()
    records = [r for r in _items(middle, keys[1]) if isinstance(r, RawRecord)]
    start = data.index(records[50].data)
    middle.write_bytes(data[: start + len(records[50].data) - 40] + data[start + len(records[50].data):])
    archive = _scan(out, tmp_path)
    corrupt = _findings(archive, "stream-record-corrupt")
    assert {(f.location.object_key, f.message.split(" ")[1]) for f in corrupt} == {
        (keys[0], f"#{len(tail_records) - 1}"), (keys[1], "#50")}
    assert all("truncated" in f.message for f in corrupt)
    middle_records = [r for r in _items(middle, keys[1]) if isinstance(r, RawRecord)]
    assert len(middle_records) == 199  # the records after the damage were recovered
    # the lost records' blocks: a block short of its details, or details short of their summary
    rebuilt = list(iter_stream_blocks(archive.spill_path, archive.first, archive.last))
    assert any(not_present for _, not_present in rebuilt) or _findings(archive, "stream-summary-missing")


def test_bad_kpl_digest(tmp_path: Path) -> None:
    out, _ = _write(tmp_path, layout="get-records", aggregate=True)
    key = _firehose_keys(out)[1]
    document = json.loads((out / key).read_text())
    entry = document["Records"][3]
    raw = base64.b64decode(entry["Data"])
    assert raw[:4] == KPL_MAGIC
    entry["Data"] = base64.b64encode(raw[:-1] + bytes([raw[-1] ^ 0xFF])).decode()
    (out / key).write_text(json.dumps(document))
    archive = _scan(out, tmp_path)
    corrupt = _findings(archive, "stream-record-corrupt")
    assert len(corrupt) == 1 and corrupt[0].location.object_key == key
    assert "Records[3]" in corrupt[0].message and "MD5" in corrupt[0].message
    rebuilt = list(iter_stream_blocks(archive.spill_path, archive.first, archive.last))
    assert any(np for _, np in rebuilt) or _findings(archive, "stream-summary-missing")  # its records are lost


def test_conflicting_duplicates(tmp_path: Path) -> None:
    out, _ = _write(tmp_path)
    seq, block = _user_block()
    arn = stream_arn(LEDGER, SEED)
    details = next(r for r in block_records(block, arn)[1:] if "data" in r["payload"]["revision"])
    data = details["payload"]["revision"]["data"]
    data[next(iter(data.keys()))] = "a different value"
    key = _extra_object(out, encode_record(details))
    archive = _scan(out, tmp_path)
    conflicts = _findings(archive, "stream-record-conflict")
    assert len(conflicts) == 1 and conflicts[0].is_error
    assert conflicts[0].location.object_key == key and conflicts[0].location.block.sequence_no == seq
    assert "record #0" in conflicts[0].message and details["payload"]["revision"]["metadata"]["id"] in \
        conflicts[0].message
    rebuilt = {b["blockAddress"]["sequenceNo"]: b for b, _ in iter_stream_blocks(archive.spill_path, seq, seq)}
    assert check_block(rebuilt[seq]).ok  # the first copy is used; the conflict is the error


def test_details_that_contradict_their_summary(tmp_path: Path) -> None:
    seq, _ = _user_block()

    def tamper(record: Any) -> Any:
        if _is(record, "REVISION_DETAILS", seq):
            record["payload"]["revision"]["hash"] = hashlib.sha256(b"forged").digest()
        return record

    out, _ = _write(tmp_path, transform=tamper)
    archive = _scan(out, tmp_path)
    mismatches = _findings(archive, "stream-details-hash-mismatch")
    assert mismatches and all(f.is_error and f.location.block.sequence_no == seq for f in mismatches)
    block = next(b for b, _ in iter_stream_blocks(archive.spill_path, seq, seq))
    assert not check_block(block).ok  # delivered as received: the block check fails too


def test_match_revisions_tells_system_revisions_from_missing_details() -> None:
    from qldb_migrate.streams import DetailsRef

    h = [hashlib.sha256(bytes([i])).digest() for i in range(4)]
    entries = [(h[0], "docA"), (h[1], None), (h[2], "docB"), (h[3], "docC")]
    details = [DetailsRef(1, "docA", 0, h[0]), DetailsRef(2, "docC", 3, h[3]), DetailsRef(3, "docZ", 0, h[1])]
    assigned, problems = match_revisions(entries, details)
    assert [a.id if a else None for a in assigned] == [1, None, None, 2]
    assert [p.code for p in problems] == ["stream-details-not-in-summary"]  # a system revision takes no details


def test_json_with_invalid_base64_names_the_record(tmp_path: Path) -> None:
    out, _ = _write(tmp_path, layout="lambda")
    key = _firehose_keys(out)[0]
    document = json.loads((out / key).read_text())
    document["Records"][2]["kinesis"]["data"] = "***"
    (out / key).write_text(json.dumps(document))
    items = _items(out / key, key)
    errors = [i for i in items if isinstance(i, RecordError)]
    assert len(errors) == 1 and "Records[2]" in errors[0].label and "base64" in errors[0].message


def test_gzip_objects_are_read_whatever_their_name(tmp_path: Path) -> None:
    out, written = _write(tmp_path)
    key = _firehose_keys(out)[0]
    (out / key).write_bytes(gzip.compress((out / key).read_bytes()))  # gzip without the .gz suffix
    archive = _scan(out, tmp_path)
    assert _errors(archive) == [] and archive.records == written.records


def test_concatenated_get_records_responses(tmp_path: Path) -> None:
    out, written = _write(tmp_path, layout="get-records", aggregate=True)
    keys = _firehose_keys(out)
    joined = "".join((out / k).read_text() for k in keys)  # `aws kinesis get-records ... >> one.json`
    single = tmp_path / "single"
    single.mkdir()
    (single / "all-responses.json").write_text(joined)
    shutil.rmtree(out)
    archive = _scan(single, tmp_path)
    assert _errors(archive) == [] and archive.records == written.records


def test_an_archive_in_s3(export_blocks: list[Any], tmp_path: Path, s3_server: str, s3_env: dict[str, str]) -> None:
    from qldb_migrate.sources import SourceSpec

    from tests.conftest import upload

    out, written = _write(tmp_path, gzip_fraction=0.5, duplicate_fraction=0.05, reorder_window=50)
    upload(s3_server, out, "qldb-stream-archive", "firehose/")
    source = SourceSpec("s3://qldb-stream-archive/firehose/", endpoint_url=s3_server).open()
    assert is_stream_archive(source)
    archive = scan_stream_archive(source, tmp_path / "work")
    assert _errors(archive) == [] and archive.records == written.records
    assert all(o.etag for o in archive.objects)  # S3's ETag recorded for the report
    rebuilt = [b for b, _ in iter_stream_blocks(archive.spill_path, archive.first, archive.last)]
    assert [ion_hash(b) for b in rebuilt] == [ion_hash(_as_delivered(b)) for b in export_blocks]


# --- the C reading of records against the reference ----------------------------------------------------------

_ARN = stream_arn(LEDGER, SEED)
_H = "{{" + base64.b64encode(b"h" * 32).decode() + "}}"
#: Records of unusual shape, as Ion text: each is read by C as the reference reads it, or left to the reference.
_SHAPES = [
    f'{{qldbStreamArn: "{_ARN}", recordType: BLOCK_SUMMARY, payload: {{blockAddress: {{strandId: "s", '
    f'sequenceNo: 3}}, revisionSummaries: [{{hash: {_H}}}, {{hash: {_H}, documentId: null}}, '
    f'{{hash: {_H}, documentId: null.int}}, {{hash: {_H}, documentId: d1}}, {{hash: {_H}, documentId: "d2"}}]}}}}',
    f'{{qldbStreamArn: {_ARN!r}, recordType: "BLOCK_SUMMARY", payload: {{blockAddress: {{strandId: s, '
    f'sequenceNo: 0}}}}}}',
    f'{{qldbStreamArn: "{_ARN}", recordType: BLOCK_SUMMARY, payload: {{blockAddress: {{strandId: "s", '
    f'sequenceNo: 1}}, revisionSummaries: null.list}}}}',
    f'{{qldbStreamArn: "{_ARN}", recordType: BLOCK_SUMMARY, payload: {{blockAddress: {{strandId: "s", '
    f'sequenceNo: 1}}, revisionSummaries: ({{hash: {_H}}})}}}}',
    f'{{qldbStreamArn: "{_ARN}", recordType: BLOCK_SUMMARY, payload: {{blockAddress: {{strandId: "s", '
    f'sequenceNo: 1}}, revisionSummaries: [{{hash: {_H}, documentId: 5}}]}}}}',
    f'{{qldbStreamArn: "{_ARN}", recordType: BLOCK_SUMMARY, payload: {{blockAddress: {{strandId: "s", '
    f'sequenceNo: 1}}, revisionSummaries: [{{hash: {{{{"clob"}}}}}}]}}}}',
    f'{{qldbStreamArn: "{_ARN}", recordType: BLOCK_SUMMARY, payload: {{blockAddress: {{strandId: "s", '
    f'sequenceNo: -1}}}}}}',
    f'{{qldbStreamArn: "{_ARN}", recordType: BLOCK_SUMMARY, payload: {{blockAddress: {{strandId: "s", '
    f'sequenceNo: 1.0}}}}}}',
    f'{{qldbStreamArn: "{_ARN}", recordType: BLOCK_SUMMARY, payload: {{blockAddress: {{strandId: "s", '
    f'sequenceNo: 99999999999999999999999}}}}}}',
    f'{{qldbStreamArn: "{_ARN}", recordType: BLOCK_SUMMARY, payload: {{blockAddress: {{strandId: "s", '
    f'sequenceNo: 1, sequenceNo: 2}}}}}}',
    f'{{qldbStreamArn: "{_ARN}", recordType: BLOCK_SUMMARY, recordType: BLOCK_SUMMARY, payload: {{blockAddress: '
    f'{{strandId: "s", sequenceNo: 1}}}}}}',
    f'{{qldbStreamArn: "{_ARN}", recordType: BLOCK_SUMMARY, payload: a::{{blockAddress: {{strandId: "s", '
    f'sequenceNo: 1}}}}}}',
    f'{{qldbStreamArn: "{_ARN}", recordType: BLOCK_SUMMARY, payload: {{blockAddress: {{strandId: "s", '
    f'sequenceNo: 1}}, x: a::b::7}}}}',
    f'{{qldbStreamArn: "{_ARN}", recordType: BLOCK_SUMMARY, payload: null.struct}}',
    f'{{qldbStreamArn: "{_ARN}", recordType: BLOCK_SUMMARY}}',
    f'{{qldbStreamArn: "{_ARN}", recordType: OTHER, payload: {{}}}}',
    '{qldbStreamArn: "arn:aws:qldb:us-east-1:1:ledger/x", recordType: CONTROL, payload: {controlRecordType: '
    'CREATED}}',
    f'{{qldbStreamArn: "{_ARN}", recordType: CONTROL, payload: {{controlRecordType: "PAUSED"}}}}',
    f'{{qldbStreamArn: "{_ARN}", recordType: CONTROL, payload: {{controlRecordType: COMPLETED}}}}',
    f'{{qldbStreamArn: "{_ARN}", recordType: CONTROL, payload: {{controlRecordType: $0}}}}',
    f'{{qldbStreamArn: "{_ARN}", recordType: REVISION_DETAILS, payload: {{tableInfo: {{tableName: "T"}}, '
    f'revision: {{blockAddress: {{strandId: "s", sequenceNo: 4}}, hash: {_H}, data: {{a: 1}}, '
    f'metadata: {{id: "d", version: -2}}}}}}}}',
    f'{{qldbStreamArn: "{_ARN}", recordType: REVISION_DETAILS, payload: {{revision: {{blockAddress: '
    f'{{strandId: "s", sequenceNo: 4}}, hash: {_H}, metadata: {{id: d, version: 1}}}}}}}}',
    f'{{qldbStreamArn: "{_ARN}", recordType: REVISION_DETAILS, payload: {{revision: {{blockAddress: '
    f'{{strandId: "s", sequenceNo: 4}}, hash: null.blob, metadata: {{id: "d", version: 1}}}}}}}}',
    f'{{qldbStreamArn: "{_ARN}", recordType: REVISION_DETAILS, payload: {{revision: {{blockAddress: '
    f'{{strandId: "s", sequenceNo: 4}}, hash: {_H}, metadata: {{id: "d", version: true}}}}}}}}',
    f'{{qldbStreamArn: "{_ARN}", recordType: REVISION_DETAILS, payload: {{revision: {{blockAddress: '
    f'{{strandId: "s", sequenceNo: 4}}, hash: {_H}, metadata: {{id: "d"}}}}}}}}',
    f'{{qldbStreamArn: "{_ARN}", recordType: REVISION_DETAILS, payload: {{revision: [1]}}}}',
    f'{{qldbStreamArn: "{_ARN}", recordType: REVISION_DETAILS, payload: {{revision: {{blockAddress: '
    f'{{strandId: "s", sequenceNo: 4}}, hash: {_H}, data: {{a: 12345678901234567890123456789012345678.5}}, '
    f'metadata: {{id: "d", version: 1}}}}}}}}',
]


def _reference(data: bytes) -> Any:
    """What the reader and ``_interpret`` make of a record: a _Parsed, or the exception's class."""
    from qldb_migrate.streamobjects import parse_record
    from qldb_migrate.streams import _interpret
    from qldb_migrate.verify.ionparse import IonParseError

    try:
        return _interpret(parse_record(data))
    except IonParseError:
        return IonParseError
    except ValueError as exc:  # _Invalid
        return type(exc)
    except Exception as exc:
        return type(exc)


def test_c_reading_of_records_agrees_with_the_reference() -> None:
    """``native.stream_record`` answers only where the reference reads the same fields; else it leaves it.

    Genuine records (and re-encoded ones, and records of unusual shape) and
    thousands of corrupted ones: wherever C returns fields, the reader must
    parse the record and ``_interpret`` must give the same result, and the
    C payload key must be the Ion hash of the parsed payload.
    """
    import random

    from amazon.ion import simpleion
    from qldb_migrate import native
    from qldb_migrate.streams import _from_fast, _payload_key

    from tests.ionmutate import mutate

    if not native.AVAILABLE:
        pytest.skip("qldb_migrate._native is not built")
    records = [r for block in list(iter_ledger_blocks(60, SEED)) for r in block_records(block, _ARN)]
    genuine = [encode_record(r) for r in records] + [reencode_record(r) for r in records[:40]]
    shapes = [simpleion.dumps(simpleion.loads(text), binary=True) for text in _SHAPES]
    rng = random.Random(5)
    mutated = [mutate(rng, rng.choice(genuine[:80])) for _ in range(3000)]
    answered = {"genuine": 0, "shapes": 0, "mutated": 0}
    for group, datas in (("genuine", genuine), ("shapes", shapes), ("mutated", mutated)):
        for data in datas:
            fast = native.stream_record(data)
            if fast is None:
                continue
            answered[group] += 1
            try:
                mine: Any = _from_fast(fast)
            except Exception as exc:
                mine = type(exc)
            assert mine == _reference(data), data.hex()
            from qldb_migrate.streamobjects import parse_record

            assert _payload_key(data) == ion_hash(parse_record(data)["payload"]), data.hex()
    assert answered["genuine"] >= len(genuine) * 0.9  # the fast path is the common one
    assert 0 < answered["shapes"] < len(shapes)  # some unusual shapes are read in C, the rest left to the reader
    assert answered["mutated"] > 0


def test_the_plain_matching_shortcut_is_match_revisions() -> None:
    """``_matched`` answers only where ``match_revisions`` assigns the same rows and finds no problem."""
    import random

    from qldb_migrate.streams import DetailsRef, _matched

    rng = random.Random(3)
    answered = 0
    for _ in range(3000):
        hashes = [bytes([rng.randrange(4)]) for _ in range(rng.randint(0, 4))]
        entries = [(h, rng.choice([None, "a", "b", "c"])) for h in hashes]
        rows = [(1, 2, i, None, rng.choice(["a", "b", "c"]), 0, bytes([rng.randrange(4)]), 0, "")
                for i in range(rng.randint(0, 4))]
        fast = _matched(entries, rows)
        assigned, problems = match_revisions(entries, [DetailsRef(r[2], r[4], r[5], r[6]) for r in rows])
        if fast is not None:
            answered += 1
            assert problems == []
            assert [None if r is None else r[2] for r in fast] == [None if d is None else d.id for d in assigned]
    assert answered > 100
