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
        shown = [f"{label} {show_value(value)}" for label, value in (("expected", self.expected),
                                                                     ("computed", self.computed)) if value is not None]
        if shown:
            text += f" ({', '.join(shown)})"
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


@dataclass(slots=True)
class Tally:
    """Every finding of one code and severity: how many, and where the first and the last one were."""

    code: str
    severity: Severity
    kind: Kind
    message: str  # the first one's
    count: int = 0
    first: Location | None = None
    last: Location | None = None

    def span(self) -> str:
        first = self.first.block if self.first is not None else None
        last = self.last.block if self.last is not None else None
        if first is None or last is None:
            return ""
        if first == last:
            return f"block {first.sequence_no}"
        return f"blocks {first.sequence_no}..{last.sequence_no}"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "severity": str(self.severity), "kind": str(self.kind),
                               "count": self.count, "firstMessage": self.message}
        for name, loc in (("first", self.first), ("last", self.last)):
            if loc is not None:
                out[name] = loc.describe()
        return out


class FindingLog:
    """Findings as a run collects them, bounded: the first few of each code in full, then only counts.

    A damaged ledger can repeat one problem on every block (a second ledger's
    20,000 blocks, a gap that shifts everything after it).  Thousands of lines
    of the same finding help nobody and a 10 MB report hides the one line that
    matters; so each code keeps ``keep`` findings whole and a ``Tally`` of all
    of them (count, first and last place).  Verdicts use the tallies.
    """

    def __init__(self, keep: int = 20) -> None:
        self.keep = keep
        self.kept: list[Finding] = []
        self.tallies: dict[tuple[str, Severity], Tally] = {}

    def append(self, finding: Finding) -> None:
        key = (finding.code, finding.severity)
        tally = self.tallies.get(key)
        if tally is None:
            tally = self.tallies[key] = Tally(finding.code, finding.severity, finding.kind, finding.message,
                                              first=finding.location)
        tally.count += 1
        tally.last = finding.location
        if tally.count <= self.keep:
            self.kept.append(finding)

    def extend(self, findings: Any) -> None:
        for finding in findings:
            self.append(finding)

    def merge(self, other: FindingLog) -> None:
        """Another log's findings (a worker's), its tallies counted whole: what it left out stays counted."""
        for key, theirs in other.tallies.items():
            mine = self.tallies.get(key)
            if mine is None:
                self.tallies[key] = Tally(theirs.code, theirs.severity, theirs.kind, theirs.message, 0, theirs.first,
                                          theirs.last)
                mine = self.tallies[key]
            kept_before = min(mine.count, self.keep)
            mine.count += theirs.count
            mine.last = theirs.last or mine.last
            room = self.keep - kept_before
            if room > 0:
                self.kept.extend([f for f in other.kept if (f.code, f.severity) == key][:room])

    def __iter__(self) -> Any:
        return iter(self.kept)

    def __len__(self) -> int:
        return sum(t.count for t in self.tallies.values())

    def __bool__(self) -> bool:
        return bool(self.tallies)

    def count(self, severity: Severity) -> int:
        return sum(t.count for t in self.tallies.values() if t.severity is severity)

    @property
    def error_count(self) -> int:
        return self.count(Severity.ERROR)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.kept if f.is_error]

    def has(self, code: str) -> bool:
        return any(c == code for c, _s in self.tallies)

    def lines(self, per_code: int = 3, include_notes: bool = False) -> list[str]:
        """Console lines: up to ``per_code`` findings of each code in full, then one summary line per code."""
        shown: dict[tuple[str, Severity], int] = {}
        out: list[str] = []
        for finding in self.kept:
            if finding.severity is Severity.NOTE and not include_notes:
                continue
            key = (finding.code, finding.severity)
            if shown.get(key, 0) < per_code:
                shown[key] = shown.get(key, 0) + 1
                out.append(f"{finding.severity.value}: {finding.describe()}")
        for key, tally in self.tallies.items():
            rest = tally.count - shown.get(key, 0)
            if rest > 0 and (tally.severity is not Severity.NOTE or include_notes):
                where = tally.span()
                out.append(f"{tally.severity.value}: … and {rest:,} more {tally.code} finding(s)"
                           + (f" ({where})" if where else "") + " — all in the report's findingsByCode")
        return out

    def to_json(self) -> dict[str, Any]:
        return {"findings": [f.to_json() for f in self.kept],
                "findingsByCode": [t.to_json() for t in self.tallies.values()]}
