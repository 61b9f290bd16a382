"""COPY-ready rows for one verified block, built (and encoded to COPY tuples) in the worker that checked it.

``data_ion`` (and ``metadata_ion``, ``transaction_info_ion``,
``redaction_info_ion``) is the binary Ion re-encoding of a value, and it is
proven: the Ion hash of those bytes is the hash the block commits to.  Mostly
the check already proved it (``check_block(..., prove=...)`` hashes the
encoding instead of the original); where no fast writer was exact (amazon-ion's
rounds decimals beyond 34 digits) the exact pure-Python writer is used here
and checked the same way.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Any

from amazon.ion import simpleion

from ..iontext import timestamp_text
from ..ionwrite import dumps_binary
from ..native import binary_json, canonical_json
from ..verify.block import BlockCheck, utc_instant
from ..verify.ionhash import ion_hash
from ..verify.ionparse import loads
from ..verify.ionvalue import as_bytes, field_or_none, is_null
from ..verify.revision import RevisionStatus
from .copybinary import field, row_encoder


class DataIonMismatch(ValueError):
    pass


@dataclass(slots=True)
class HistoryRow:
    table_id: str
    table_name: str
    document_id: str
    version: int
    data: str | None  # canonical JSON text
    data_ion: bytes | None
    metadata_ion: bytes
    revision_hash: bytes
    data_hash: bytes | None
    operation: str
    redacted: bool
    tx_id: str | None
    tx_time: _dt.datetime | None
    tx_time_ion: str | None
    block_sequence: int
    index_in_block: int

    def copy_values(self) -> tuple[Any, ...]:
        return (
            self.document_id, self.version, self.data, self.data_ion, self.metadata_ion, self.revision_hash,
            self.data_hash, self.operation, self.redacted, self.tx_id, self.tx_time, self.tx_time_ion,
            self.block_sequence, self.index_in_block,
        )


HISTORY_COLUMNS = (
    "document_id", "version", "data", "data_ion", "metadata_ion", "revision_hash", "data_hash", "operation",
    "redacted", "tx_id", "tx_time", "tx_time_ion", "block_sequence", "index_in_block",
)

HISTORY_TYPES = (
    "text", "int4", "jsonb", "bytea", "bytea", "bytea", "bytea", "text", "bool", "text", "timestamptz", "text",
    "int8", "int4",
)

BLOCK_COLUMNS = (
    "strand_id", "sequence_no", "block_hash", "entries_hash", "previous_block_hash", "entries_hash_list",
    "revision_hashes", "revision_documents", "transaction_id", "block_timestamp", "block_timestamp_ion",
    "transaction_info", "transaction_info_ion", "redaction_info_ion", "source_object", "run_id",
)

BLOCK_TYPES = (
    "text", "int8", "bytea", "bytea", "bytea", "bytea[]", "bytea[]", "text[]", "text", "timestamptz", "text", "jsonb",
    "bytea", "bytea", "text", "int8",
)


def exact_binary(value: Any, expected: bytes | None = None) -> bytes:
    """Binary Ion whose Ion hash is ``expected`` (by default, the value's own); raises if no writer manages it."""
    if expected is None:
        expected = ion_hash(value)
    fast = simpleion.dumps(value, binary=True)
    if ion_hash(loads(fast, own_encoding=True)) == expected:
        return fast
    exact = dumps_binary(value)
    if ion_hash(loads(exact, own_encoding=True)) == expected:
        return exact
    # amazon-ion's C reader, not the writer, may be what is inexact (ionparse.EXACT_READER_WHY)
    if ion_hash(loads(exact, own_encoding=True, exact=True)) == expected:
        return exact
    raise DataIonMismatch("no Ion writer reproduces the data's hash")


def _json(value: Any, encoded: bytes | None) -> str:
    """The jsonb text of a value: rendered in C from the binary Ion just proven to be it, where the C reader can
    (the same text: tests hold ``binary_json`` to ``canonical_json``), else from the parsed value."""
    if encoded is not None:
        text = binary_json(encoded)
        if text is not None:
            return text
    return canonical_json(value)


def _info_ion(check: BlockCheck, name: str, value: Any) -> bytes:
    return check.info_ion.get(name) or exact_binary(value, check.info_hashes.get(name))


def block_rows(
    block: Any, check: BlockCheck, tables: dict[str, tuple[str, str]]
) -> tuple[tuple[Any, ...], list[HistoryRow]]:
    """The qldb.block row (run_id filled in later) and the history rows of a block that verified.

    ``tables`` is ``document_tables(block)``, which the caller has already computed.
    """
    assert check.address is not None and check.computed_block_hash is not None
    seq = check.address.sequence_no
    revisions = field_or_none(block, "revisions")
    revisions = [] if is_null(revisions) else list(revisions)
    history: list[HistoryRow] = []
    for rev, rc in zip(revisions, check.revisions, strict=True):
        if rc.document_id is None or rc.version is None:
            continue  # system revision: its hash is kept in qldb.block.revision_hashes
        metadata = field_or_none(rev, "metadata")
        table_id, table_name = tables.get(rc.document_id, ("(unknown)", "(unknown)"))
        data = field_or_none(rev, "data")
        deleted = rc.status in (RevisionStatus.DELETED, RevisionStatus.NOT_RECOMPUTED,
                                RevisionStatus.AMBIGUOUS_DELETE) and data is None
        redacted = rc.status is RevisionStatus.REDACTED
        data_json = data_ion = None
        if not deleted and not redacted and rc.data_hash is not None:
            # proven already when check_revision hashed the encoding; else the exact writer, re-checked
            data_ion = rc.data_ion or exact_binary(data, rc.data_hash)
            data_json = _json(data, data_ion)
        elif rc.status is RevisionStatus.UNVERIFIABLE and data is not None:
            data_json = canonical_json(data)  # JSON export: queryable, but no exact Ion to keep
        tx_time = field_or_none(metadata, "txTime")
        history.append(
            HistoryRow(
                table_id, table_name, rc.document_id, rc.version, data_json, data_ion,
                rc.metadata_ion or exact_binary(metadata, rc.metadata_hash),
                rc.hash_for_root, rc.data_hash, "delete" if deleted else ("insert" if rc.version == 0 else "update"),
                redacted, check.transaction_id, utc_instant(tx_time),
                None if is_null(tx_time) else timestamp_text(tx_time), seq, rc.index,
            )
        )
    ts = field_or_none(block, "blockTimestamp")
    tx_info = field_or_none(block, "transactionInfo")
    redaction = field_or_none(block, "redactionInfo")
    entries = [as_bytes(e) or b"" for e in field_or_none(block, "entriesHashList")]
    tx_info_ion = None if is_null(tx_info) else _info_ion(check, "transactionInfo", tx_info)
    row = (
        check.address.strand_id, seq, check.computed_block_hash, check.computed_entries_hash,
        check.previous_block_hash, entries, [r.hash_for_root for r in check.revisions],
        [r.document_id for r in check.revisions], check.transaction_id,  # None: a system revision
        utc_instant(ts), None if is_null(ts) else timestamp_text(ts),
        None if is_null(tx_info) else _json(tx_info, tx_info_ion),
        tx_info_ion,
        None if is_null(redaction) else _info_ion(check, "redactionInfo", redaction),
        check.object_key or "",
    )
    return row, history


@dataclass(slots=True)
class TableRows:
    """One block's history rows of one QLDB table: COPY tuples for its history table, and what the summary needs."""

    table_name: str
    copy_data: bytes
    documents: list[str]  # one per row, in row order
    deleted: int
    redacted: list[tuple[str, int]]  # (document id, version) of each redacted revision
    reservations: list[tuple[str, int, str]]  # (document id, version, kind) of rows whose hash was not recomputed
    stage_digest: bytes | None = None  # staged by the worker (workerload): the digest of the rows it staged


#: RevisionStatus -> the reservation kind its row is recorded under (qldb.reservation)
RESERVATION_KINDS = {
    RevisionStatus.UNVERIFIABLE: "json-not-rehashed",
    RevisionStatus.NOT_RECOMPUTED: "deleted-hash-not-recomputed",
    RevisionStatus.AMBIGUOUS_DELETE: "ambiguous-delete",
    RevisionStatus.NOT_PRESENT: "not-present",
}


@dataclass(slots=True)
class BlockRows:
    """What the main process loads for one verified block; small to pickle, nothing left to adapt."""

    block_copy: bytes  # the qldb.block tuple without its last field, run_id, which the main process appends
    redaction: tuple[str, str, int] | None  # (table id, document id, version) that the block's redactionInfo names
    tables: dict[str, TableRows]  # by QLDB table id
    not_present: list[tuple[str, str]]  # (table id, document id) of revisions whose details never arrived
    stage_token: str | None = None  # the row bytes are staged in the target under this token (workerload)
    stage_digest: bytes | None = None  # and the digest of the block's staged qldb.block row


_history_tuple = row_encoder(HISTORY_TYPES)
_block_tuple = row_encoder(BLOCK_TYPES[:-1], extra_fields=1)
assert BLOCK_COLUMNS[-1] == "run_id"


def run_id_field(run_id: int) -> bytes:
    return field(BLOCK_TYPES[-1], run_id)


def pack_block(block: Any, check: BlockCheck, tables: dict[str, tuple[str, str]]) -> BlockRows:
    """``block_rows`` as COPY tuples, grouped by QLDB table."""
    block_row, history = block_rows(block, check, tables)
    grouped: dict[str, list[HistoryRow]] = {}
    for row in history:
        grouped.setdefault(row.table_id, []).append(row)
    kinds = {(r.document_id, r.version): RESERVATION_KINDS[r.status] for r in check.revisions
             if r.status in RESERVATION_KINDS and r.document_id is not None}
    packed = {
        table_id: TableRows(
            rows[0].table_name,
            b"".join([_history_tuple(r.copy_values()) for r in rows]),
            [r.document_id for r in rows],
            sum(1 for r in rows if r.operation == "delete"),
            [(r.document_id, r.version) for r in rows if r.redacted],
            [(r.document_id, r.version, kinds[(r.document_id, r.version)]) for r in rows
             if (r.document_id, r.version) in kinds],
        )
        for table_id, rows in grouped.items()
    }
    not_present = [(tables.get(r.document_id, ("(unknown)", ""))[0], r.document_id) for r in check.revisions
                   if r.status is RevisionStatus.NOT_PRESENT and r.document_id is not None]
    redaction = field_or_none(block, "redactionInfo")
    named = None
    if not is_null(redaction):
        named = (str(field_or_none(redaction, "tableId")), str(field_or_none(redaction, "documentId")),
                 int(field_or_none(redaction, "version")))
    return BlockRows(_block_tuple(block_row), named, packed, not_present)
