"""One journal block, checked from its contents alone.

What the hashes prove for a block (DESIGN §1): every recomputable revision
hash, the revisions' Merkle root, the transactionInfo and redactionInfo hashes
being among the entries, the entries' Merkle root, and the block hash over the
entries hash and the previous block hash.  What they do not prove is listed in
``UNPROVEN_BY_BLOCK_HASH`` and only ever consistency-checked.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .findings import BlockAddress, Finding, Kind, Location, Severity
from .hashes import dot, merkle_root
from .ionhash import IonHashError, ion_hash
from .ionvalue import as_bytes, field_or_none, is_null, struct_keys
from .revision import Prover, RevisionCheck, RevisionStatus, absent_revision, check_revision

#: Properties of a block that no hash we can recompute covers.  A result
#: never calls these verified; the chain and digests prove order and position.
UNPROVEN_BY_BLOCK_HASH = (
    "blockAddress (the sequence number is proven only by the chain from an anchor)",
    "blockTimestamp",
    "transactionId",
    "order of revisions inside the block (dot is commutative: swapped siblings keep the root)",
    "order of entries in entriesHashList (same reason)",
)


@dataclass(slots=True)
class BlockCheck:
    """The outcome of checking one block; ``computed_block_hash`` is ours, not the stored one."""

    address: BlockAddress | None
    object_key: str | None
    stored_block_hash: bytes | None
    computed_block_hash: bytes | None
    previous_block_hash: bytes
    computed_entries_hash: bytes | None
    transaction_id: str | None
    revisions: list[RevisionCheck] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    info_hashes: dict[str, bytes] = field(default_factory=dict)  # H(transactionInfo), H(redactionInfo)
    info_ion: dict[str, bytes] = field(default_factory=dict)  # with ``prove``: their verified binary Ion
    statements_recomputed: int = 0  # statementDigest = H(statement): literal statements
    statements_not_recomputable: int = 0  # parameterized: the digest folds in parameters the journal lacks

    @property
    def ok(self) -> bool:
        return not any(f.is_error for f in self.findings)

    @property
    def sequence_no(self) -> int | None:
        return None if self.address is None else self.address.sequence_no

    @property
    def unproven(self) -> tuple[str, ...]:
        """What this block's hashes leave open; reports list it, never as verified."""
        return UNPROVEN_BY_BLOCK_HASH

    def revision_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for rev in self.revisions:
            counts[rev.status.value] = counts.get(rev.status.value, 0) + 1
        return counts


#: Every field QLDB writes in a block and a revision.  Anything else is in no hash and unexplained.
BLOCK_FIELDS = frozenset({
    "blockAddress", "transactionId", "blockTimestamp", "blockHash", "entriesHash", "previousBlockHash",
    "entriesHashList", "transactionInfo", "redactionInfo", "revisions",
})
REVISION_FIELDS = frozenset({"blockAddress", "hash", "data", "dataHash", "metadata"})


def _unexpected_fields(value: Any, allowed: frozenset[str]) -> list[str]:
    keys = value.keys() if hasattr(value, "keys") else []
    return sorted(str(k) for k in keys if k not in allowed)


def _error(code: str, message: str, where: Location, expected: Any = None, computed: Any = None) -> Finding:
    return Finding(code, Kind.HASH, Severity.ERROR, message, where, expected, computed)


def _consistency(code: str, message: str, where: Location, expected: Any = None, found: Any = None) -> Finding:
    return Finding(code, Kind.CONSISTENCY, Severity.ERROR, message, where, expected, found)


def _address(value: Any) -> BlockAddress | None:
    try:
        return BlockAddress.from_ion(value)
    except (KeyError, TypeError, ValueError):
        return None


def check_block(
    block: Any,
    object_key: str | None = None,
    data_exact: bool = True,
    prove: Prover | None = None,
    absent: Mapping[int, str] | None = None,
) -> BlockCheck:
    """Recompute every hash of ``block`` that its contents allow, and check its structure.

    ``data_exact`` is False for JSON exports, whose user data lost its Ion
    types: revision data hashes are then not recomputed (and said so), while
    every other hash in the block still is.  A block of the wrong shape is a
    finding, never an exception.  ``prove`` (migrate) hashes the binary Ion
    to be stored instead of the parsed value (see ``check_revision``).
    ``absent`` (stream archives) maps the index of each revision whose details
    never arrived to the document id its summary names: such a revision is
    "not present", neither a system revision nor a hidden one.
    """
    try:
        return _check_block(block, object_key, data_exact, prove, absent or {})
    except (TypeError, ValueError, KeyError, AttributeError, IndexError) as exc:
        address = _address(field_or_none(block, "blockAddress"))
        result = BlockCheck(address, object_key, None, None, b"", None, None)
        result.findings.append(
            _error("malformed-block", f"block has a field of the wrong shape: {exc}", Location(object_key, address))
        )
        return result


def _check_block(
    block: Any, object_key: str | None, data_exact: bool, prove: Prover | None, absent: Mapping[int, str]
) -> BlockCheck:
    address = _address(field_or_none(block, "blockAddress"))
    where = Location(object_key, address)
    tx_id_value = field_or_none(block, "transactionId")
    tx_id = None if is_null(tx_id_value) else str(tx_id_value)
    result = BlockCheck(address, object_key, None, None, b"", None, tx_id)
    findings = result.findings
    if address is None:
        findings.append(_error("malformed-block", "block has no valid blockAddress", where))
        return result

    try:
        result.stored_block_hash = as_bytes(field_or_none(block, "blockHash"))
        stored_entries_hash = as_bytes(field_or_none(block, "entriesHash"))
        result.previous_block_hash = as_bytes(field_or_none(block, "previousBlockHash")) or b""
        entries_value = field_or_none(block, "entriesHashList")
        entries = [as_bytes(e) or b"" for e in entries_value] if not is_null(entries_value) else []
    except TypeError as exc:
        findings.append(_error("malformed-block", f"block hash field of the wrong type: {exc}", where))
        return result
    if result.stored_block_hash is None or stored_entries_hash is None or not entries:
        findings.append(
            _error("malformed-block", "block lacks blockHash, entriesHash or entriesHashList", where)
        )
        return result
    entry_set = set(entries)
    extra = _unexpected_fields(block, BLOCK_FIELDS)
    if extra:
        findings.append(_consistency("unexpected-field", f"block has fields QLDB does not write: {', '.join(extra)}",
                                     where))
    if is_null(field_or_none(block, "blockTimestamp")):
        findings.append(_consistency("block-timestamp-missing", "block has no blockTimestamp", where))

    # Revisions: each recomputed where it can be, then their Merkle root.
    revisions_value = field_or_none(block, "revisions")
    if not is_null(revisions_value) and not isinstance(revisions_value, list):
        findings.append(_error("malformed-block", "revisions is not a list", where))
        return result
    revisions = [] if is_null(revisions_value) else list(revisions_value)
    for index, revision in enumerate(revisions):
        if index in absent:
            result.revisions.append(absent_revision(revision, index, absent[index]))
            continue
        check, rev_findings = check_revision(revision, index, address, object_key, data_exact, prove)
        result.revisions.append(check)
        findings.extend(rev_findings)
        extra = _unexpected_fields(revision, REVISION_FIELDS)
        if extra:
            findings.append(
                _consistency("unexpected-field", f"revision has fields QLDB does not write: {', '.join(extra)}",
                             Location(object_key, address, index, check.document_id, check.version))
            )
        rev_address = _address(field_or_none(revision, "blockAddress"))
        if rev_address is not None and rev_address != address:
            findings.append(
                _consistency(
                    "revision-address-mismatch",
                    "revision's blockAddress differs from its block's",
                    Location(object_key, address, index, check.document_id, check.version),
                    address,
                    rev_address,
                )
            )
        rev_tx = field_or_none(field_or_none(revision, "metadata"), "txId")
        if not is_null(rev_tx) and tx_id is not None and str(rev_tx) != tx_id:
            findings.append(
                _consistency(
                    "revision-txid-mismatch",
                    "revision metadata.txId differs from the block's transactionId",
                    Location(object_key, address, index, check.document_id, check.version),
                    tx_id,
                    str(rev_tx),
                )
            )
    findings.extend(check_deletes(result.revisions, where))
    if result.revisions:
        root = merkle_root([r.hash_for_root for r in result.revisions])
        if root not in entry_set:
            findings.append(
                _error(
                    "revisions-root-not-in-entries",
                    "Merkle root of the block's revision hashes is not in entriesHashList",
                    where,
                    computed=root,
                )
            )

    # transactionInfo and redactionInfo are hashed whole into the entries.
    for name in ("transactionInfo", "redactionInfo"):
        value = field_or_none(block, name)
        if is_null(value):
            continue
        try:
            encoded, digest = prove(value) if prove is not None else (None, ion_hash(value))
            if encoded is not None and digest not in entry_set:
                encoded, digest = None, ion_hash(value)  # an inexact writer, or wrong content: the original decides
        except IonHashError as exc:
            findings.append(_error("malformed-block", f"{name} cannot be Ion-hashed: {exc}", where))
            continue
        result.info_hashes[name] = digest
        if encoded is not None:
            result.info_ion[name] = encoded
        if digest not in entry_set:
            code = "transaction-info-not-in-entries" if name == "transactionInfo" else "redaction-info-not-in-entries"
            findings.append(_error(code, f"H({name}) is not in entriesHashList", where, computed=digest))
    findings.extend(check_documents(block, result.revisions, where))
    result.statements_recomputed, result.statements_not_recomputable = count_statement_digests(
        field_or_none(block, "transactionInfo"))
    findings.extend(_check_block_time(block, revisions, where))

    entries_hash = merkle_root(entries)
    result.computed_entries_hash = entries_hash
    if entries_hash != stored_entries_hash:
        findings.append(
            _error(
                "entries-hash-mismatch",
                "entriesHash differs from the Merkle root of entriesHashList",
                where,
                stored_entries_hash,
                entries_hash,
            )
        )
    block_hash = dot(entries_hash, result.previous_block_hash)
    result.computed_block_hash = block_hash
    if block_hash != result.stored_block_hash:
        findings.append(
            _error(
                "block-hash-mismatch",
                "blockHash differs from dot(entriesHash, previousBlockHash)",
                where,
                result.stored_block_hash,
                block_hash,
            )
        )
    return result


def utc_instant(value: Any) -> _dt.datetime | None:
    """A comparable UTC datetime for an Ion timestamp (unknown offset, -00:00, taken as UTC)."""
    if not isinstance(value, _dt.datetime):
        return None
    tz = value.tzinfo or _dt.UTC
    plain = _dt.datetime(value.year, value.month, value.day, value.hour, value.minute, value.second,
                         value.microsecond, tz if isinstance(tz, _dt.timezone) else _dt.UTC)
    return plain.astimezone(_dt.UTC)


def _check_block_time(block: Any, revisions: list[Any], where: Location) -> list[Finding]:
    """blockTimestamp is in no hash; it cannot be older than the hashed startTime / txTime it commits."""
    block_time = utc_instant(field_or_none(block, "blockTimestamp"))
    if block_time is None:
        return []
    times = []
    statements = field_or_none(field_or_none(block, "transactionInfo"), "statements")
    if isinstance(statements, list):
        times += [utc_instant(field_or_none(s, "startTime")) for s in statements]
    times += [utc_instant(field_or_none(field_or_none(r, "metadata"), "txTime")) for r in revisions]
    latest = max((t for t in times if t is not None), default=None)
    if latest is not None and latest > block_time:
        return [
            _consistency(
                "block-timestamp-before-transaction",
                "blockTimestamp (in no hash) is earlier than a statement startTime or revision txTime the block "
                "commits",
                where,
                f"at or after {latest.isoformat()}",
                block_time.isoformat(),
            )
        ]
    return []


def check_deletes(revisions: list[RevisionCheck], where: Location) -> list[Finding]:
    """A delete revision is what it says only where it cannot be a revision with data taken apart.

    A delete revision's hash is H(metadata) (the rule QLDB's export implies; no
    public source states it), and a revision with data has dot(H(metadata),
    H(data)).  So a revision with data can be presented as a delete revision
    next to a "system revision" whose hash is H(data): the two are siblings in
    the Merkle tree and their parent is the original revision's hash, so every
    hash above still matches.  Where a delete revision's sibling is a system
    revision the two readings cannot be told apart: the delete is not proven
    (a reservation), never called re-hashed.  A delete at version 0 is no
    delete at all (an insert is version 0): an error.
    """
    findings: list[Finding] = []
    n = len(revisions)
    for i, rev in enumerate(revisions):
        if rev.status is not RevisionStatus.DELETED:
            continue
        at = Location(where.object_key, where.block, rev.index, rev.document_id, rev.version)
        if rev.version == 0:
            findings.append(_consistency("delete-at-version-0", "a delete revision at version 0: a document's first "
                                         "revision is its insert", at))
        sibling = i ^ 1  # level 0 of the tree pairs (0, 1), (2, 3), ...; a last odd leaf has no sibling
        if sibling < n and revisions[sibling].status is RevisionStatus.HASH_ONLY:
            rev.status = RevisionStatus.AMBIGUOUS_DELETE
            findings.append(Finding(
                "ambiguous-delete", Kind.UNPROVEN, Severity.WARNING,
                "delete revision beside a system revision in the Merkle tree: the pair also hashes as one revision "
                "with data (dot(H(metadata), H(data))), so whether data was removed is not proven", at))
    return findings


def count_statement_digests(transaction_info: Any) -> tuple[int, int]:
    """(recomputed, not recomputable) statementDigests.

    statementDigest = H(statement) holds for statements written with literal
    values.  A parameterized statement's digest folds in the parameters
    (H(statement) dot H(p1) dot ...; the QLDB drivers compute it so), and the
    parameters are not in the journal: such a digest cannot be recomputed.
    That is never an error and never a reservation: the statement text and its
    digest are inside transactionInfo, whose hash is in entriesHashList, so the
    chain binds them whatever they say.  Real ledgers are mostly parameterized.
    """
    statements = field_or_none(transaction_info, "statements")
    if not isinstance(statements, list):
        return 0, 0  # its shape is still covered by H(transactionInfo)
    recomputed = not_recomputable = 0
    for statement in statements:
        text = field_or_none(statement, "statement")
        try:
            stored = as_bytes(field_or_none(statement, "statementDigest"))
        except TypeError:
            stored = None
        if not isinstance(text, str) or stored is None:
            continue
        try:
            matches = ion_hash(text) == stored
        except IonHashError:
            matches = False
        if matches:
            recomputed += 1
        else:
            not_recomputable += 1
    return recomputed, not_recomputable


def check_documents(block: Any, revisions: list[RevisionCheck], where: Location) -> list[Finding]:
    """The journal's own structure: what ``transactionInfo.documents`` lists, the block's revisions hold.

    A revision reduced to ``{hash}`` looks like a system revision, and its hash
    still sits in the block's Merkle tree, so no hash can tell it was hidden.
    QLDB lists every document a transaction wrote, with its table, in
    ``transactionInfo.documents``: each listed document has exactly one
    revision with metadata in the block, and each such revision's document is
    listed.  A block with user revisions has a transactionInfo.
    """
    findings: list[Finding] = []
    tx_info = field_or_none(block, "transactionInfo")
    user = [r for r in revisions if r.status is not RevisionStatus.HASH_ONLY]
    for rev in user:
        if rev.document_id is None or (rev.version is None and rev.status is not RevisionStatus.NOT_PRESENT):
            findings.append(_consistency(
                "revision-metadata-invalid", "revision has metadata without a string id and an integer version",
                Location(where.object_key, where.block, rev.index)))
    if is_null(tx_info):
        if user:
            findings.append(_consistency(
                "transaction-info-missing",
                f"block holds {len(user)} user revision(s) but no transactionInfo: the documents and their tables "
                "cannot be known (was it removed?)", where))
        return findings
    listed = struct_keys(field_or_none(tx_info, "documents"))
    counts: dict[str, int] = {}
    for rev in user:
        if rev.document_id is not None:
            counts[rev.document_id] = counts.get(rev.document_id, 0) + 1
    redacted_doc = field_or_none(field_or_none(block, "redactionInfo"), "documentId")
    for doc in listed:
        n = counts.get(doc, 0)
        if n == 0 and isinstance(redacted_doc, str) and redacted_doc == doc:
            continue  # a redaction transaction may name the document it redacted without a new revision of it
        if n != 1:
            findings.append(_consistency(
                "document-revision-missing" if n == 0 else "document-revision-repeated",
                "transactionInfo.documents lists this document but the block holds "
                + ("no revision of it with metadata (reduced to a bare hash, or removed?)" if n == 0
                   else f"{n} revisions of it"),
                Location(where.object_key, where.block, document_id=doc), 1, n))
    listed_set = set(listed)
    for rev in user:
        if rev.document_id is not None and rev.document_id not in listed_set:
            findings.append(_consistency(
                "revision-not-in-documents",
                "revision's document is not listed in transactionInfo.documents (its table is unknown)",
                Location(where.object_key, where.block, rev.index, rev.document_id, rev.version)))
    return findings


def document_tables(block: Any) -> dict[str, tuple[str, str]]:
    """document id -> (table id, table name), from the block's transactionInfo (not covered beyond its hash)."""
    documents = field_or_none(field_or_none(block, "transactionInfo"), "documents")
    out: dict[str, tuple[str, str]] = {}
    if is_null(documents) or not hasattr(documents, "items"):
        return out
    for doc_id, info in documents.items():
        name = field_or_none(info, "tableName")
        table_id = field_or_none(info, "tableId")
        if doc_id is not None and isinstance(name, str):
            out[str(doc_id)] = (str(table_id) if isinstance(table_id, str) else name, name)
    return out


__all__ = [
    "UNPROVEN_BY_BLOCK_HASH",
    "BlockCheck",
    "RevisionStatus",
    "check_block",
    "check_documents",
    "count_statement_digests",
    "document_tables",
]
