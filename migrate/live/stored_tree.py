"""Which nodes of a live ledger's block-hash Merkle tree the database keeps, and how the others are read.

``qldb.merkle_node`` holds the roots of the perfect subtrees of ``2**STORED_FROM_LEVEL``
blocks and more; a smaller subtree is recomputed from the block hashes in
``qldb.block`` (at most 16 of them, one index range read).  Storing every level
cost the sealer two node rows per block (the block hash itself, and on average
one parent), a quarter of what it wrote per revision (``bench/seal_cost.py``); from
level 4 up it is one row per eight blocks, and a proof or digest reads at most
one 16-block range more.  A database sealed or cut over by an earlier version
holds the lower levels too: they are left in place and no longer read.

Reading the low levels from ``qldb.block`` takes nothing on trust that the
stored nodes did not: a rewritten block hash changes the recomputed root,
which a digest saved outside then fails to match.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import psycopg

from ..verify.hashes import dot, merkle_root

#: the lowest level stored in qldb.merkle_node (subtrees of 16 blocks)
STORED_FROM_LEVEL = 4
_CHUNK = 1 << STORED_FROM_LEVEL

Node = tuple[int, int, bytes]  # (level, idx, hash)


def to_store(nodes: Iterable[Node]) -> list[Node]:
    """The nodes (from ``merkle.Appender.append``) that qldb.merkle_node keeps."""
    return [n for n in nodes if n[0] >= STORED_FROM_LEVEL]


class NodeReader:
    """``node(level, idx)`` for ``merkle.range_hash``/``audit_path``/``root``: stored nodes from qldb.merkle_node,
    smaller subtrees from qldb.block's hashes.  ``missing(message)`` is the exception raised when either is absent
    (the ledger is not live, its tree was not stored, or blocks are missing)."""

    def __init__(self, conn: psycopg.Connection, strand: str, missing: Callable[[str], Exception]) -> None:
        self.conn, self.strand, self.missing = conn, strand, missing
        self.stored: dict[tuple[int, int], bytes] = {}
        self.chunks: dict[int, list[bytes]] = {}

    def __call__(self, level: int, idx: int) -> bytes:
        if level >= STORED_FROM_LEVEL:
            self.fetch([(level, idx)])
            return self.stored[(level, idx)]
        first, size = idx << level, 1 << level
        hashes = self._chunk(first // _CHUNK)
        leaves = hashes[first % _CHUNK:first % _CHUNK + size]
        if len(leaves) != size:
            raise self.missing(f"ledger {self.strand}: qldb.block lacks blocks {first}..{first + size - 1}, whose "
                               f"hashes make the subtree ({level}, {idx}) of its Merkle tree")
        return merkle_root(leaves, dot)

    def fetch(self, nodes: list[tuple[int, int]]) -> None:
        """Read the stored nodes among ``nodes`` in one query (the sealer's peaks, say)."""
        wanted = [(lv, i) for lv, i in nodes if lv >= STORED_FROM_LEVEL and (lv, i) not in self.stored]
        if not wanted:
            return
        for level, idx, h in self.conn.execute(
                "SELECT level, idx, hash FROM qldb.merkle_node WHERE strand_id = %s AND (level, idx) IN "
                "(SELECT * FROM unnest(%s::int[], %s::bigint[]))",
                (self.strand, [w[0] for w in wanted], [w[1] for w in wanted])):
            self.stored[(level, idx)] = bytes(h)
        for level, idx in wanted:
            if (level, idx) not in self.stored:
                raise self.missing(f"ledger {self.strand}: qldb.merkle_node lacks the subtree ({level}, {idx}); the "
                                   "ledger is not live, or its tree was not stored")

    def _chunk(self, chunk: int) -> list[bytes]:
        """The hashes of blocks chunk*16 .. chunk*16+15 that are stored, up to the first one that is not."""
        if chunk not in self.chunks:
            hashes: list[bytes] = []
            for seq, h in self.conn.execute(
                    "SELECT sequence_no, block_hash FROM qldb.block WHERE strand_id = %s AND sequence_no >= %s "
                    "AND sequence_no < %s ORDER BY sequence_no", (self.strand, chunk * _CHUNK, (chunk + 1) * _CHUNK)):
                if seq != chunk * _CHUNK + len(hashes):
                    break
                hashes.append(bytes(h))
            self.chunks[chunk] = hashes
        return self.chunks[chunk]


__all__ = ["STORED_FROM_LEVEL", "NodeReader", "to_store"]
