"""The block-hash Merkle tree of a ledger, kept in the database as the roots of its perfect subtrees.

A node ``(level, idx)`` is the root of leaves ``[idx * 2**level, (idx + 1) *
2**level)``, a perfect subtree; level 0 is the block hashes.  Which of them
``qldb.merkle_node`` keeps, and how the others are recomputed from
``qldb.block``, is ``stored_tree``'s.  Any range the RFC 6962 shape needs
(a digest over blocks 0..tip, an audit path to it) splits into O(log n) of
them, so a digest or a proof costs O(log² n) lookups however long the chain
is.  The arithmetic is QLDB's ``dot``, from ``verify.hashes``.
"""

from __future__ import annotations

from collections.abc import Callable

from ..verify.hashes import dot

Node = tuple[int, int]  # (level, idx)
Getter = Callable[[int, int], bytes]


def _largest_power_below(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def range_hash(start: int, size: int, node: Getter) -> bytes:
    """Merkle tree hash of leaves ``[start, start + size)``, a range the RFC 6962 shape produces."""
    if size & (size - 1) == 0 and start % size == 0:
        return node(size.bit_length() - 1, start // size)
    k = _largest_power_below(size)
    return dot(range_hash(start, k, node), range_hash(start + k, size - k, node))


def root(size: int, node: Getter) -> bytes:
    """The digest over leaves 0..size-1."""
    return b"" if size == 0 else range_hash(0, size, node)


def audit_path(index: int, size: int, node: Getter) -> list[bytes]:
    """RFC 6962 audit path of leaf ``index`` in a tree of ``size`` leaves, deepest sibling first (QLDB's order)."""

    def path(m: int, start: int, n: int) -> list[bytes]:
        if n <= 1:
            return []
        k = _largest_power_below(n)
        if m < k:
            return [*path(m, start, k), range_hash(start + k, n - k, node)]
        return [*path(m - k, start + k, n - k), range_hash(start, k, node)]

    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size}")
    return path(index, 0, size)


def peaks_of(size: int) -> list[Node]:
    """The perfect subtrees whose roots make up a tree of ``size`` leaves, largest first."""
    out, offset = [], 0
    for level in range(size.bit_length() - 1, -1, -1):
        if size & (1 << level):
            out.append((level, offset >> level))
            offset += 1 << level
    return out


class Appender:
    """Appends leaves to a stored tree: each leaf yields the new perfect-subtree roots to store."""

    def __init__(self, size: int, peaks: list[bytes], combine: Callable[[bytes, bytes], bytes] = dot) -> None:
        self.size = size
        self.peaks = list(peaks)  # roots of peaks_of(size), largest first
        self.combine = combine  # dot, or an implementation of it held to it (native.dot: bytes only)

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        new = [(0, self.size, leaf)]
        node, n, level = leaf, self.size, 0
        while n & 1:
            node = self.combine(self.peaks.pop(), node)
            n >>= 1
            level += 1
            new.append((level, self.size >> level, node))
        self.peaks.append(node)
        self.size += 1
        return new
