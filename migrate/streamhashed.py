"""A stream record's revision data hashed from its bytes, for verification that stores nothing.

Verifying an archive needs of a revision's ``data`` only its Ion hash; the
data is most of a REVISION_DETAILS record's bytes, and parsing it into
amazon-ion values only to write it back to binary Ion and hash that
(``native.prove``) was most of the archive's extra CPU over an export.
``native.stream_details`` reads a record as ``stream_record`` does (every
byte checked) and hands back the revision without its ``data`` plus the
data's hash, computed from the delivered bytes by ``hash_binary``, the hash
``prove`` itself relies on.  The rebuilt revision then holds a
``HashedData`` where its ``data`` was, and ``hashed_prover`` answers its
hash.

Used only where no rows are written (``verify`` with the C hash path):
``migrate`` needs the data as values and as the bytes it stores, and the
reference path (``--reference``) hashes parsed values in Python, as an
audit's independent reading must.  A record the C reader declines is parsed
whole, as before.
"""

from __future__ import annotations

from typing import Any

from .verify.revision import Prover

__all__ = ["HashedData", "hashed_prover"]


class HashedData:
    """Stands for a revision's ``data`` struct that was hashed in C and never parsed."""

    __slots__ = ("digest",)

    def __init__(self, digest: bytes) -> None:
        self.digest = digest

    def __repr__(self) -> str:
        return f"HashedData({self.digest.hex()})"


def hashed_prover(prove: Prover) -> Prover:
    """``prove``, answering a ``HashedData`` with its hash (no encoding: nothing is stored from it)."""

    def prove_or_hashed(value: Any) -> tuple[bytes | None, bytes]:
        if type(value) is HashedData:
            return None, value.digest
        return prove(value)

    return prove_or_hashed
