"""What a check found, and where: the vocabulary every result speaks.

A finding is never a bare boolean.  It names the place (object, block
address, revision index, document id and version), what was expected and what
was computed, and what *kind* of statement it is:

* ``HASH`` — decided by recomputing a hash: the strongest statement we make.
* ``CONSISTENCY`` — fields that no hash we can recompute protects (block
  address, timestamps, transaction ids, positions): compared with each other,
  reported as consistency, never as "verified".
* ``UNPROVEN`` — something that could not be decided (a deleted document's
  hash rule, JSON-degraded data, sibling order under a commutative hash).
"""

from __future__ import annotations

import base64
import enum
from dataclasses import dataclass, field
from typing import Any


class Kind(enum.StrEnum):
    HASH = "hash"
    CONSISTENCY = "consistency"
    UNPROVEN = "unproven"


class Severity(enum.StrEnum):
    ERROR = "error"  # the content is wrong: exit 1
    WARNING = "warning"  # a state the user must opt into (partial, unanchored, unverifiable)
    NOTE = "note"  # informational; never changes the verdict


@dataclass(frozen=True, slots=True)
class BlockAddress:
    strand_id: str
    sequence_no: int

    def __str__(self) -> str:
        return f'{{strandId:"{self.strand_id}",sequenceNo:{self.sequence_no}}}'

    @classmethod
    def from_ion(cls, value: Any) -> BlockAddress:
        return cls(str(value["strandId"]), int(value["sequenceNo"]))


@dataclass(frozen=True, slots=True)
class Location:
    """Where a finding applies; every field that is known is filled in."""

    object_key: str | None = None
    block: BlockAddress | None = None
    revision_index: int | None = None
    document_id: str | None = None
    version: int | None = None
    table: str | None = None
    field: str | None = None

    def describe(self) -> str:
        parts = []
        if self.object_key is not None:
            parts.append(f"object {self.object_key}")
        if self.block is not None:
            parts.append(f"block {self.block}")
        if self.revision_index is not None:
            parts.append(f"revision #{self.revision_index}")
        if self.document_id is not None:
            doc = f"document {self.document_id}"
            if self.version is not None:
                doc += f" v{self.version}"
            parts.append(doc)
        if self.table is not None:
            parts.append(f"table {self.table}")
        if self.field is not None:
            parts.append(f"field {self.field}")
        return ", ".join(parts) or "(whole source)"

    def with_object(self, object_key: str | None) -> Location:
        if object_key is None or self.object_key == object_key:
            return self
        return Location(
            object_key, self.block, self.revision_index, self.document_id, self.version, self.table, self.field
        )


def show_value(value: Any) -> str:
    """Hashes print as base64, as QLDB and the AWS CLI show them."""
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode("ascii") if value else "(empty)"
    return str(value)


@dataclass(frozen=True, slots=True)
class Finding:
    code: str
    kind: Kind
    severity: Severity
    message: str
    location: Location = field(default_factory=Location)
    expected: Any = None
    computed: Any = None

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def describe(self) -> str:
        text = f"{self.location.describe()}: {self.message}"
        if self.expected is not None or self.computed is not None:
            text += f" (expected {show_value(self.expected)}, computed {show_value(self.computed)})"
        return text

    def to_json(self) -> dict[str, Any]:
        loc = self.location
        out: dict[str, Any] = {
            "code": self.code,
            "kind": str(self.kind),
            "severity": str(self.severity),
            "message": self.message,
            "where": {
                k: v
                for k, v in {
                    "object": loc.object_key,
                    "block": None
                    if loc.block is None
                    else {"strandId": loc.block.strand_id, "sequenceNo": loc.block.sequence_no},
                    "revisionIndex": loc.revision_index,
                    "documentId": loc.document_id,
                    "version": loc.version,
                    "table": loc.table,
                    "field": loc.field,
                }.items()
                if v is not None
            },
        }
        if self.expected is not None:
            out["expected"] = show_value(self.expected)
        if self.computed is not None:
            out["computed"] = show_value(self.computed)
        return out
