"""Building QLDB journal blocks with correct hashes, for sample exports and tests.

This is the *writer's* side of the hashing and is deliberately written apart
from ``verify/``: its own dot (integers, not byte translation), its own
Merkle tree (recursive RFC 6962 split, not level pairing).  If either side
got the arithmetic wrong, the two would disagree and the generated exports
would fail verification.  Only Ion Hash is shared: it is proven separately
against the official suite and a real QLDB block.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from amazon.ion.core import IonType, Timestamp, TimestampPrecision
from amazon.ion.simple_types import IonPyBytes, IonPyDict, IonPyList, IonPyNull

from ..verify.ionhash import ion_hash


def _signed_le_key(h: bytes) -> tuple[int, ...]:
    return tuple((b - 256 if b > 127 else b) for b in reversed(h))


def writer_dot(a: bytes, b: bytes) -> bytes:
    if not a:
        return b
    if not b:
        return a
    first, second = (a, b) if _signed_le_key(a) <= _signed_le_key(b) else (b, a)
    return hashlib.sha256(first + second).digest()


def writer_merkle(leaves: list[bytes]) -> bytes:
    """RFC 6962 §2.1: split at the largest power of two below n."""
    n = len(leaves)
    if n == 0:
        return b""
    if n == 1:
        return leaves[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return writer_dot(writer_merkle(leaves[:k]), writer_merkle(leaves[k:]))


def blob(data: bytes) -> IonPyBytes:
    return IonPyBytes.from_value(IonType.BLOB, data)


def ion_list(items: list[Any]) -> IonPyList:
    return IonPyList.from_value(IonType.LIST, items)


def struct(pairs: dict[str, Any] | list[tuple[str, Any]]) -> IonPyDict:
    out = IonPyDict()
    for key, value in pairs.items() if isinstance(pairs, dict) else pairs:
        out.add_item(key, value)
    return out


def timestamp_ms(moment: _dt.datetime) -> Timestamp:
    """A millisecond-precision UTC timestamp, as QLDB writes blockTimestamp and txTime."""
    ms = moment.microsecond // 1000
    return Timestamp(
        moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second, ms * 1000,
        _dt.UTC, precision=TimestampPrecision.SECOND, fractional_precision=3,
        fractional_seconds=Decimal(ms).scaleb(-3).quantize(Decimal("0.001")),
    )


@dataclass
class RevisionSpec:
    """One revision to put in a block.

    ``data`` None with ``deleted`` False means a system revision (hash only);
    ``redacted`` keeps only ``dataHash``.  ``hash_override`` lets the
    generator write a system or deleted revision whose hash it cannot derive.
    """

    metadata: Any = None
    data: Any = None
    deleted: bool = False
    redacted: bool = False
    system_hash: bytes | None = None
    table_name: str | None = None
    table_id: str | None = None
    statement_index: int | None = None  # the statement that wrote it

    def revision_hash(self) -> bytes:
        if self.metadata is None:
            assert self.system_hash is not None
            return self.system_hash
        meta = ion_hash(self.metadata)
        if self.deleted:
            return writer_dot(meta, b"")
        return writer_dot(meta, ion_hash(self.data))

    def to_ion(self) -> IonPyDict:
        h = self.revision_hash()
        if self.metadata is None:
            return struct({"hash": blob(h)})
        pairs: list[tuple[str, Any]] = [("hash", blob(h))]
        if self.redacted:
            pairs.append(("dataHash", blob(ion_hash(self.data))))
        elif not self.deleted:
            pairs.append(("data", self.data))
        pairs.append(("metadata", self.metadata))
        return struct(pairs)


@dataclass
class BlockSpec:
    strand_id: str
    sequence_no: int
    timestamp: _dt.datetime
    transaction_id: str | None
    statements: list[tuple[str, list[Any]]] = field(default_factory=list)  # (text, parameters)
    revisions: list[RevisionSpec] = field(default_factory=list)
    redaction_info: Any = None
    internal_entries: list[bytes] = field(default_factory=list)

    def transaction_info(self) -> IonPyDict | None:
        if not self.statements and not self.revisions:
            return None
        statements = ion_list(
            [
                struct(
                    {
                        "statement": text,
                        "startTime": timestamp_ms(self.timestamp),
                        "statementDigest": blob(statement_digest(text, params)),
                    }
                )
                for text, params in self.statements
            ]
        )
        documents = IonPyDict()
        for rev in self.revisions:
            if rev.metadata is None or rev.table_name is None:
                continue
            doc_id = str(rev.metadata["id"])
            written_by = [rev.statement_index] if rev.statement_index is not None else list(range(len(self.statements)))
            documents.add_item(
                doc_id,
                struct(
                    {
                        "tableName": rev.table_name,
                        "tableId": rev.table_id or "",
                        "statements": ion_list(written_by),
                    }
                ),
            )
        return struct({"statements": statements, "documents": documents})


def statement_digest(text: str, parameters: list[Any]) -> bytes:
    """What QLDB drivers compute for a statement: H(statement) dot H(parameter 1) dot ...

    With no parameters it is H(statement), which ``verify`` recomputes; with
    parameters it cannot be recomputed from the journal, which holds none.
    """
    digest = ion_hash(text)
    for parameter in parameters:
        digest = writer_dot(digest, ion_hash(parameter))
    return digest


def build_block(spec: BlockSpec, previous_block_hash: bytes) -> tuple[IonPyDict, bytes]:
    """The block as an Ion struct and its block hash."""
    address = struct({"strandId": spec.strand_id, "sequenceNo": spec.sequence_no})
    tx_info = spec.transaction_info()
    revisions = [r.to_ion() for r in spec.revisions]
    entries: list[bytes] = []
    if tx_info is not None:
        entries.append(ion_hash(tx_info))
    if revisions:
        entries.append(writer_merkle([r.revision_hash() for r in spec.revisions]))
    if spec.redaction_info is not None:
        entries.append(ion_hash(spec.redaction_info))
    entries.extend(spec.internal_entries)
    if not entries:
        entries.append(hashlib.sha256(b"qldb-migrate sample empty block %d" % spec.sequence_no).digest())
    entries_hash = writer_merkle(entries)
    block_hash = writer_dot(entries_hash, previous_block_hash)
    pairs: list[tuple[str, Any]] = [
        ("blockAddress", address),
        ("transactionId", spec.transaction_id if spec.transaction_id is not None else IonPyNull()),
        ("blockTimestamp", timestamp_ms(spec.timestamp)),
        ("blockHash", blob(block_hash)),
        ("entriesHash", blob(entries_hash)),
        ("previousBlockHash", blob(previous_block_hash)),
        ("entriesHashList", ion_list([blob(e) for e in entries])),
    ]
    if tx_info is not None:
        pairs.append(("transactionInfo", tx_info))
    if spec.redaction_info is not None:
        pairs.append(("redactionInfo", spec.redaction_info))
    if revisions:
        pairs.append(("revisions", ion_list(revisions)))
    if spec.transaction_id is None:
        pairs = [p for p in pairs if p[0] != "transactionId"]
    return struct(pairs), block_hash


def metadata(doc_id: str, version: int, tx_time: _dt.datetime, tx_id: str) -> IonPyDict:
    return struct({"id": doc_id, "version": version, "txTime": timestamp_ms(tx_time), "txId": tx_id})
