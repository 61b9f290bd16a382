"""GetDigest, GetBlock and GetRevision from the database, in QLDB's formats, for both eras of a ledger.

After QLDB's API is gone an auditor still asks for a digest and for the proof
of a revision.  The outputs here have the AWS CLI's shapes, so
``verify-proof`` (and any tool written for QLDB's) reads them unchanged: the
block or revision as Ion text, and the proof — the sibling hashes, deepest
first — from its hash to the digest's tip.

A proof needs the chain from block 0 (a QLDB digest is the Merkle root over
blocks 0..tip); for a ledger migrated from an export that began later, it is
refused and the reason said.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import psycopg
from amazon.ion.simple_types import IonPyDict
from psycopg import sql

from ..ionwrite import dumps_text
from ..verify.chain import Digest
from ..verify.hashes import merkle_root
from ..verify.ionparse import loads
from .merkle import audit_path, root
from .stored_tree import NodeReader


class ServeError(Exception):
    """A digest, block or revision the database cannot give, with why; ``exit_code`` per DESIGN §5."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _struct(pairs: list[tuple[str, Any]]) -> IonPyDict:
    out = IonPyDict()
    for key, value in pairs:
        out.add_item(key, value)
    return out


def _blob(h: bytes) -> Any:
    return loads("{{" + base64.b64encode(h).decode() + "}}")


def _proof_json(hashes: list[bytes]) -> dict[str, str]:
    return {"IonText": "[" + ",".join("{{" + base64.b64encode(h).decode() + "}}" for h in hashes) + "]"}


def _address(strand: str, seq: int) -> IonPyDict:
    return _struct([("strandId", strand), ("sequenceNo", seq)])


def _node_getter(conn: psycopg.Connection, strand: str) -> NodeReader:
    return NodeReader(conn, strand, ServeError)


def _chain_from_genesis(conn: psycopg.Connection, strand: str) -> int:
    """The tip of a chain that starts at block 0 and is live; a reason otherwise."""
    first, tip, state = conn.execute(
        "SELECT min(b.sequence_no), max(b.sequence_no), (SELECT state FROM qldb.ledger WHERE strand_id = %s) "
        "FROM qldb.block b WHERE b.strand_id = %s", (strand, strand)).fetchone()
    if tip is None:
        raise ServeError(f"ledger {strand} holds no blocks", 2)
    if first != 0:
        raise ServeError(f"ledger {strand}: the stored chain starts at block {first} (the export did not start at "
                         "block 0), so no QLDB digest can be computed or proven from the database: a digest is the "
                         "Merkle root over blocks 0..tip")
    if state != "live":
        raise ServeError(f"ledger {strand} is not live: its digests are the ones QLDB issued; `check --digest` proves "
                         "them (cut over to have the database issue digests and proofs)", 2)
    return tip


def make_digest(conn: psycopg.Connection, strand: str, record: bool = True) -> tuple[bytes, int]:
    """(digest, tip) of the sealed chain, recorded in ``qldb.digest`` (which anchors nothing: keep it outside)."""
    tip = _chain_from_genesis(conn, strand)
    digest = root(tip + 1, _node_getter(conn, strand))
    if record:
        conn.execute("INSERT INTO qldb.digest (strand_id, tip_sequence_no, digest, source, reached_by) "
                     "VALUES (%s, %s, %s, 'qldb-migrate digest', 'merkle root over stored blocks') "
                     "ON CONFLICT DO NOTHING", (strand, tip, digest))
        conn.commit()
    return digest, tip


def digest_json(strand: str, tip: int, digest: bytes) -> dict[str, Any]:
    """GetDigest's shape."""
    return {"Digest": base64.b64encode(digest).decode(),
            "DigestTipAddress": {"IonText": f'{{strandId:"{strand}",sequenceNo:{tip}}}'}}


def _check_digest(conn: psycopg.Connection, digest: Digest) -> Any:
    strand, tip = digest.tip.strand_id, digest.tip.sequence_no
    stored_tip = _chain_from_genesis(conn, strand)
    if tip > stored_tip:
        raise ServeError(f"digest {digest.source} has tip block {tip}, beyond the database's chain (last block "
                         f"{stored_tip}): the database lost blocks, or the digest belongs to another copy")
    node = _node_getter(conn, strand)
    if root(tip + 1, node) != digest.digest:
        raise ServeError(f"digest {digest.source} does not match the chain stored in the database at its tip (block "
                         f"{tip}): the stored chain was rewritten, or the digest is not this ledger's")
    return node


@dataclass
class _BlockRow:
    strand: str
    seq: int
    block_hash: bytes
    entries_hash: bytes
    previous: bytes
    entries: list[bytes]
    revision_hashes: list[bytes]
    documents: list[str | None]
    tx_id: str | None
    timestamp_ion: str | None
    tx_info_ion: bytes | None
    redaction_ion: bytes | None


def _block_row(conn: psycopg.Connection, strand: str, seq: int) -> _BlockRow:
    row = conn.execute(
        "SELECT block_hash, entries_hash, previous_block_hash, entries_hash_list, revision_hashes, revision_documents, "
        "transaction_id, block_timestamp_ion, transaction_info_ion, redaction_info_ion FROM qldb.block "
        "WHERE strand_id = %s AND sequence_no = %s", (strand, seq)).fetchone()
    if row is None:
        raise ServeError(f"ledger {strand} has no block {seq}", 2)
    (block_hash, entries_hash, previous, entries, revisions, documents, tx_id, ts, tx_ion, red_ion) = row
    return _BlockRow(strand, seq, bytes(block_hash), bytes(entries_hash), bytes(previous),
                     [bytes(e) for e in entries], [bytes(r) for r in revisions], list(documents), tx_id, ts,
                     None if tx_ion is None else bytes(tx_ion), None if red_ion is None else bytes(red_ion))


def _revision_rows(conn: psycopg.Connection, block: _BlockRow) -> dict[int, tuple[Any, ...]]:
    """index in block -> (table id, document id, version, data_ion, metadata_ion, data_hash, redacted, operation)."""
    tables = conn.execute("SELECT table_id, pg_schema, history_name FROM qldb.ledger_table WHERE strand_id = %s",
                          (block.strand,)).fetchall()
    out: dict[int, tuple[Any, ...]] = {}
    docs = [d for d in block.documents if d is not None]
    for table_id, schema, history in tables:
        query = sql.SQL(
            "SELECT coalesce(h.index_in_block, s.index_in_block), h.document_id, h.version, "
            "coalesce(h.data_ion, s.data_ion), coalesce(h.metadata_ion, s.metadata_ion), "
            "coalesce(h.data_hash, s.data_hash), h.redacted, h.operation FROM {} h "
            "LEFT JOIN qldb.sealed_revision s ON s.strand_id = %s AND s.table_id = %s "
            "AND s.document_id = h.document_id AND s.version = h.version WHERE h.document_id = ANY(%s) "
            "AND coalesce(h.block_sequence, s.block_sequence) = %s").format(sql.Identifier(schema, history))
        for idx, *rest in conn.execute(query, (block.strand, table_id, docs, block.seq)):
            out[idx] = (table_id, *rest)
    return out


def _revision_ion(strand: str, seq: int, rev_hash: bytes, row: tuple[Any, ...] | None, index: int) -> IonPyDict:
    if row is None:
        return _struct([("hash", _blob(rev_hash))])  # a system revision: QLDB gives only its hash
    _table_id, doc, version, data_ion, metadata_ion, data_hash, redacted, operation = row
    if metadata_ion is None:
        raise ServeError(f"revision {doc} v{version} (block {seq}) is not sealed yet")
    pairs: list[tuple[str, Any]] = [("blockAddress", _address(strand, seq)), ("hash", _blob(rev_hash))]
    if operation != "delete":
        if data_ion is not None:
            pairs.append(("data", loads(bytes(data_ion))))
        elif redacted and data_hash is not None:
            pairs.append(("dataHash", _blob(bytes(data_hash))))
        else:
            raise ServeError(f"revision {doc} v{version} (block {seq}, #{index}) has no exact Ion data (it was "
                             "migrated from a JSON export, whose data could not be re-hashed): no proof can be given")
    pairs.append(("metadata", loads(bytes(metadata_ion))))
    return _struct(pairs)


def get_block(conn: psycopg.Connection, digest: Digest, seq: int) -> dict[str, Any]:
    """GetBlock's shape: the block at ``seq`` as Ion text and its proof to the digest's tip."""
    node = _check_digest(conn, digest)
    strand, tip = digest.tip.strand_id, digest.tip.sequence_no
    if seq > tip:
        raise ServeError(f"block {seq} lies beyond the digest's tip {tip}: ask for a newer digest", 2)
    block = _block_row(conn, strand, seq)
    rows = _revision_rows(conn, block)
    pairs: list[tuple[str, Any]] = [("blockAddress", _address(strand, seq))]
    if block.tx_id is not None:
        pairs.append(("transactionId", block.tx_id))
    if block.timestamp_ion is not None:
        pairs.append(("blockTimestamp", loads(block.timestamp_ion)))
    pairs += [("blockHash", _blob(block.block_hash)), ("entriesHash", _blob(block.entries_hash)),
              ("previousBlockHash", _blob(block.previous)), ("entriesHashList", [_blob(e) for e in block.entries])]
    if block.tx_info_ion is not None:
        pairs.append(("transactionInfo", loads(block.tx_info_ion)))
    if block.redaction_ion is not None:
        pairs.append(("redactionInfo", loads(block.redaction_ion)))
    if block.revision_hashes:
        pairs.append(("revisions", [_revision_ion(strand, seq, h, rows.get(i), i)
                                    for i, h in enumerate(block.revision_hashes)]))
    proof = audit_path(seq, tip + 1, node)
    return {"Block": {"IonText": dumps_text(_struct(pairs))}, "Proof": _proof_json(proof)}


def _find_table(conn: psycopg.Connection, strand: str | None, table: str) -> tuple[str, str, str, str]:
    """(strand, table id, schema, history) of the table QLDB named ``table`` (its id, or schema.table, also work)."""
    rows = conn.execute(
        "SELECT strand_id, table_id, pg_schema, history_name FROM qldb.ledger_table WHERE (%s::text IS NULL OR "
        "strand_id = %s) AND %s IN (table_name, table_id, pg_schema || '.' || current_name)",
        (strand, strand, table)).fetchall()
    if len(rows) != 1:
        what = "no table" if not rows else f"{len(rows)} tables (a name reused after a drop: give its table id)"
        raise ServeError(f"--table {table}: {what} by that name", 2)
    return rows[0]


def get_revision(conn: psycopg.Connection, digest: Digest, table: str, document_id: str, version: int
                 ) -> dict[str, Any]:
    """GetRevision's shape: the revision as Ion text and its proof — through its block — to the digest's tip."""
    node = _check_digest(conn, digest)
    strand, table_id, schema, history = _find_table(conn, digest.tip.strand_id, table)
    row = conn.execute(sql.SQL(
        "SELECT coalesce(h.block_sequence, s.block_sequence), coalesce(h.index_in_block, s.index_in_block) FROM {} h "
        "LEFT JOIN qldb.sealed_revision s ON s.strand_id = %s AND s.table_id = %s AND s.document_id = h.document_id "
        "AND s.version = h.version WHERE h.document_id = %s AND h.version = %s").format(
            sql.Identifier(schema, history)), (strand, table_id, document_id, version)).fetchone()
    if row is None:
        raise ServeError(f"{table} has no revision {version} of document {document_id}", 2)
    seq, index = row
    if seq is None:
        # not a fault of the data: the question comes too early (exit 2, as for a digest that ends before it)
        raise ServeError(f"revision {version} of document {document_id} is not sealed yet: run `qldb-migrate seal`, "
                         "then ask for a digest that covers it", 2)
    tip = digest.tip.sequence_no
    if seq > tip:
        raise ServeError(f"revision {version} of document {document_id} is in block {seq}, beyond the digest's tip "
                         f"{tip}: ask for a newer digest", 2)
    block = _block_row(conn, strand, seq)
    rows = _revision_rows(conn, block)
    revision = _revision_ion(strand, seq, block.revision_hashes[index], rows.get(index), index)
    revisions_root = merkle_root(block.revision_hashes)
    proof = [*_path(block.revision_hashes, index), *_path(block.entries, block.entries.index(revisions_root)),
             block.previous, *audit_path(seq, tip + 1, node)]
    return {"Revision": {"IonText": dumps_text(revision)}, "Proof": _proof_json(proof)}


def _path(leaves: list[bytes], index: int) -> list[bytes]:
    """An audit path inside one block's small tree (revisions, entries), computed from the leaves themselves."""
    cache: dict[tuple[int, int], bytes] = {}

    def node(level: int, idx: int) -> bytes:
        key = (level, idx)
        if key not in cache:
            cache[key] = merkle_root(leaves[idx << level:(idx + 1) << level])
        return cache[key]

    return audit_path(index, len(leaves), node)


__all__ = ["ServeError", "digest_json", "get_block", "get_revision", "make_digest"]
