"""Revision hashes: recompute, never trust the stored ``hash`` alone."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from amazon.ion.exceptions import IonException

from .findings import BlockAddress, Finding, Kind, Location, Severity
from .ionhash import IonHashError, ion_hash
from .ionparse import IonParseError, loads
from .ionvalue import as_bytes, field_or_none


class RevisionStatus(enum.StrEnum):
    VERIFIED = "verified"  # dot(H(metadata), H(data)) equals the stored hash
    REDACTED = "redacted"  # dot(H(metadata), dataHash) equals the stored hash
    DELETED = "deleted"  # metadata only; dot(H(metadata), empty) equals the stored hash
    HASH_ONLY = "hash-only"  # system revision: only a hash; it counts through the Merkle root
    NOT_PRESENT = "not-present"  # stream archive: the summary's hash arrived, the details never did
    NOT_RECOMPUTED = "not-recomputed"  # deleted document whose rule we could not reproduce
    AMBIGUOUS_DELETE = "ambiguous-delete"  # delete beside a system revision: could be a revision with data, split
    UNVERIFIABLE = "unverifiable"  # data not exact (JSON export): hash not recomputable
    MISMATCH = "mismatch"  # recomputed hash differs from the stored one

    @property
    def recomputed(self) -> bool:
        return self in (RevisionStatus.VERIFIED, RevisionStatus.REDACTED, RevisionStatus.DELETED)


@dataclass(slots=True)
class RevisionCheck:
    index: int
    status: RevisionStatus
    stored_hash: bytes | None
    computed_hash: bytes | None
    document_id: str | None = None
    version: int | None = None
    data_hash: bytes | None = None  # H(data), or the dataHash of a redacted revision
    metadata_hash: bytes | None = None  # H(metadata), kept so writers need not hash it again
    data_ion: bytes | None = None  # with ``prove``: the binary Ion whose hash was verified
    metadata_ion: bytes | None = None  # likewise for the metadata

    @property
    def hash_for_root(self) -> bytes:
        """The hash that enters the revisions Merkle root.

        A recomputed hash, whenever the revision could be recomputed; only
        hash-only and unrecomputable revisions fall back to the stored value.
        """
        if self.computed_hash is not None:
            return self.computed_hash
        return self.stored_hash or b""


def absent_revision(revision: Any, index: int, document_id: str) -> RevisionCheck:
    """A user revision known only by its hash and document id (its details never arrived): counted, not re-hashed."""
    return RevisionCheck(index, RevisionStatus.NOT_PRESENT, as_bytes(field_or_none(revision, "hash")), None,
                         document_id)


def metadata_identity(metadata: Any) -> tuple[str | None, int | None]:
    if metadata is None:
        return None, None
    doc = field_or_none(metadata, "id")
    version = field_or_none(metadata, "version")
    # Hostile or damaged metadata must not crash the check: it is hashed as it is.
    doc_id = doc if isinstance(doc, str) else None
    number = int(version) if isinstance(version, int) and not isinstance(version, bool) else None
    return (None if doc_id is None else str(doc_id)), number


#: ``prove(value) -> (encoding, hash)``: binary Ion of a value and the Ion hash *of that encoding*
#: (not of the value), or ``(None, H(value))`` where no encoding could be made.
Prover = Callable[[Any], tuple[bytes | None, bytes]]


def encoded_hash(value: Any, encode: Callable[[Any], bytes]) -> tuple[bytes | None, bytes]:
    """``(encoding, H(encoding parsed back))``: one hash that proves the value and the bytes to store.

    Where the writer cannot encode the value, or its output does not parse,
    ``(None, H(value))``: the writer's limits must not become the ledger's.
    """
    try:
        encoded = encode(value)
        return encoded, ion_hash(loads(encoded, own_encoding=True))
    except (IonException, IonHashError, IonParseError, TypeError, ValueError, OverflowError):
        return None, ion_hash(value)


def check_revision(
    revision: Any,
    index: int,
    block: BlockAddress | None = None,
    object_key: str | None = None,
    data_exact: bool = True,
    prove: Prover | None = None,
) -> tuple[RevisionCheck, list[Finding]]:
    """Recompute one revision's hash and compare it with the stored one.

    ``data_exact`` is False when the data passed through a lossy format
    (JSON): the metadata is still exact, the data may not be.  The hash is
    still recomputed; if it matches, the reading was exact and the revision is
    verified; if not, it is "not recomputable", not a mismatch.

    ``prove`` (migrate) turns the metadata and the data into binary Ion and
    hashes *those encodings*, so one hash proves both the revision and the
    bytes that will be stored.  Only when the
    revision hash does not match are the parsed originals hashed too, to tell
    an inexact writer from wrong content.
    """
    from .hashes import dot  # local: keeps the import graph flat

    findings: list[Finding] = []
    data_ion: bytes | None = None
    metadata_ion: bytes | None = None
    stored = as_bytes(field_or_none(revision, "hash"))
    metadata = field_or_none(revision, "metadata")
    data = field_or_none(revision, "data")
    data_hash_field = as_bytes(field_or_none(revision, "dataHash"))
    doc_id, version = metadata_identity(metadata)
    where = Location(object_key, block, index, doc_id, version)

    if metadata is None:
        status = RevisionStatus.HASH_ONLY
        if stored is None:
            findings.append(
                Finding("revision-empty", Kind.HASH, Severity.ERROR, "revision has neither hash nor metadata", where)
            )
        return RevisionCheck(index, status, stored, None, doc_id, version), findings
    if stored is None:
        # QLDB gives every revision its hash; one left out would be recomputed and so always "match"
        findings.append(Finding("revision-hash-missing", Kind.HASH, Severity.ERROR,
                                "revision has metadata but no hash", where))

    try:
        if prove is not None:
            metadata_ion, metadata_hash = prove(metadata)
        else:
            metadata_hash = ion_hash(metadata)
        if data_hash_field is not None:
            data_hash: bytes | None = data_hash_field
            status = RevisionStatus.REDACTED
        elif data is not None or _has_field(revision, "data"):
            status = RevisionStatus.VERIFIED
            if prove is not None and data_exact:
                data_ion, data_hash = prove(data)
            else:
                data_hash = ion_hash(data)
        else:
            data_hash = None
            status = RevisionStatus.DELETED
        if (metadata_ion or data_ion) and stored is not None and dot(metadata_hash, data_hash or b"") != stored:
            # an inexact writer, or wrong content: the originals decide
            if metadata_ion is not None:
                metadata_ion, metadata_hash = None, ion_hash(metadata)
            if data_ion is not None:
                data_ion, data_hash = None, ion_hash(data)
    except (IonHashError, IonParseError, TypeError, ValueError) as exc:
        findings.append(
            Finding("revision-unhashable", Kind.HASH, Severity.ERROR, f"revision cannot be Ion-hashed: {exc}", where)
        )
        return RevisionCheck(index, RevisionStatus.MISMATCH, stored, None, doc_id, version), findings

    computed = dot(metadata_hash, data_hash or b"")
    if stored is not None and computed != stored and status is RevisionStatus.VERIFIED and not data_exact:
        # JSON lost the data's Ion types.  A match above is still a proof (the
        # reading was exact); a mismatch proves nothing either way.  Counted
        # and summarised by the caller, never called verified.
        return RevisionCheck(index, RevisionStatus.UNVERIFIABLE, stored, None, doc_id, version), findings
    if stored is not None and computed != stored:
        if status is RevisionStatus.DELETED:
            # No public source gives the rule for a deleted document's last
            # revision; we do not claim a mismatch we cannot stand behind.
            # A warning, not a note: a revision stripped of its data looks exactly like this,
            # so it counts as not re-hashable (--strict fails, migrate needs --allow-unverifiable).
            findings.append(
                Finding(
                    "revision-hash-not-recomputed",
                    Kind.UNPROVEN,
                    Severity.WARNING,
                    "deleted document revision: hash not recomputed (its rule is not public); "
                    "the stored hash still counts through the block's Merkle root",
                    where,
                    expected=stored,
                    computed=computed,
                )
            )
            return RevisionCheck(index, RevisionStatus.NOT_RECOMPUTED, stored, None, doc_id, version), findings
        findings.append(
            Finding(
                "revision-hash-mismatch",
                Kind.HASH,
                Severity.ERROR,
                "revision hash differs from dot(H(metadata), H(data))",
                where,
                expected=stored,
                computed=computed,
            )
        )
        return RevisionCheck(index, RevisionStatus.MISMATCH, stored, computed, doc_id, version, data_hash), findings
    return (
        RevisionCheck(index, status, stored, computed, doc_id, version, data_hash, metadata_hash, data_ion,
                      metadata_ion),
        findings,
    )


def _has_field(value: Any, name: str) -> bool:
    try:
        return name in value
    except TypeError:
        return False
