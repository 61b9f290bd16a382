"""QLDB's hash combinators: dot, Merkle roots, proof folding.

QLDB joins two hashes with a commutative operation (``dot``), so the shape of
a Merkle tree matters but the order of two siblings does not.  The functions
here are the whole of that arithmetic; everything else is built on them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

__all__ = ["HASH_LENGTH", "MerkleAccumulator", "dot", "fold_proof", "merkle_root"]

HASH_LENGTH = 32

# Bytes compared as signed integers equal unsigned bytes with the top bit flipped.
_SIGNED_ORDER = bytes((b ^ 0x80) for b in range(256))

T = TypeVar("T")


def _sort_key(h: bytes) -> bytes:
    return h[::-1].translate(_SIGNED_ORDER)


def dot(a: bytes, b: bytes) -> bytes:
    """SHA-256 of the two hashes, the smaller first.

    "Smaller" compares the bytes as signed integers from the last byte to the
    first, as QLDB does.  An empty side leaves the other unchanged: that is
    how a block with no predecessor, or an odd Merkle node, passes through.
    """
    if not a:
        return b
    if not b:
        return a
    if _sort_key(a) <= _sort_key(b):
        return hashlib.sha256(a + b).digest()
    return hashlib.sha256(b + a).digest()


def merkle_root(leaves: Sequence[T], combine: Callable[[T, T], T] = dot) -> T | bytes:  # type: ignore[assignment]
    """Root of the left-balanced (RFC 6962 shaped) tree over ``leaves``.

    Neighbours are paired level by level and an odd last node is promoted
    unchanged; that yields exactly the RFC 6962 shape.  ``combine`` is a
    parameter so tests can check the shape with a non-commutative combiner.
    An empty list has the empty root.
    """
    level = list(leaves)
    if not level:
        return b""
    while len(level) > 1:
        paired = [combine(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def fold_proof(start: bytes, proof: Iterable[bytes]) -> bytes:
    """Fold ``dot`` over a GetBlock/GetRevision proof, starting at the leaf hash."""
    acc = start
    for sibling in proof:
        acc = dot(acc, sibling)
    return acc


class MerkleAccumulator:
    """Merkle root of a growing list in O(log n) memory.

    Keeps the roots of the perfect subtrees that make up the prefix seen so
    far (one per set bit of the count), so the digest over blocks 0..n can be
    computed at any n while the blocks stream past.
    """

    __slots__ = ("_count", "_peaks")

    def __init__(self) -> None:
        self._peaks: list[bytes] = []  # roots of perfect subtrees, largest first
        self._count = 0

    @property
    def count(self) -> int:
        return self._count

    def append(self, leaf: bytes) -> None:
        node = leaf
        n = self._count
        while n & 1:  # merge equal-sized perfect subtrees
            node = dot(self._peaks.pop(), node)
            n >>= 1
        self._peaks.append(node)
        self._count += 1

    def root(self) -> bytes:
        """RFC 6962: MTH(D[n]) = dot(MTH(D[:k]), MTH(D[k:])) with k the largest power of two < n."""
        if not self._peaks:
            return b""
        acc = self._peaks[-1]
        for peak in reversed(self._peaks[:-1]):
            acc = dot(peak, acc)
        return acc
