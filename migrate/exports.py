"""Finding the exports in a source and planning the order of their objects.

An export is known by its manifests (DESIGN §2): ``{exportId}.started.manifest``
and one ``{exportId}.{strandId}.completed.manifest`` whose ``keys`` list the
data objects in order.  Object names carry their block range
(``{strandId}.{first}-{last}.ion``); the plan orders every object of every
export by that range so blocks can be checked in sequence while streaming.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .sources import KeyOutsideRoot, Source, SourceError, SourceUsageError
from .verify.findings import BlockAddress, Finding, Kind, Location, Severity
from .verify.ionparse import IonParseError, loads
from .verify.ionvalue import field_or_none

STARTED = re.compile(r"^(?P<export>[^/]+)\.started\.manifest$")
COMPLETED = re.compile(r"^(?P<export>[^/.]+)\.(?P<strand>[^/.]+)\.completed\.manifest$")
OBJECT_NAME = re.compile(r"(?:^|/)(?P<strand>[A-Za-z0-9]+)\.(?P<first>\d+)-(?P<last>\d+)\.(?P<ext>ion|json)(?:\.gz)?$")
SIDECAR_SUFFIX = ".proofs.json"

FORMATS = ("ION_TEXT", "ION_BINARY", "JSON")


@dataclass(frozen=True)
class DataObject:
    key: str  # relative to the source root
    manifest_key: str  # as the manifest names it
    export_id: str
    strand_id: str
    first: int
    last: int
    fmt: str  # ION_TEXT | ION_BINARY | JSON
    position: int  # index in its manifest


@dataclass
class Export:
    export_id: str
    prefix: str
    fmt: str
    ledger_name: str | None
    strand_id: str | None = None
    objects: list[DataObject] = field(default_factory=list)
    completed_key: str | None = None
    sidecar_key: str | None = None


@dataclass
class ExportPlan:
    exports: list[Export]
    objects: list[DataObject]  # every object of every export, in block order
    findings: list[Finding]

    @property
    def strands(self) -> set[str]:
        return {o.strand_id for o in self.objects}


def _parse_manifest(source: Source, key: str) -> Any:
    try:
        return loads(source.read(key))
    except IonParseError as exc:
        raise ManifestError(f"{key}: manifest is not valid Ion or JSON ({exc})") from exc


class ManifestError(SourceError):
    """A manifest that cannot be read: the export is not usable (exit 1)."""


def discover(source: Source) -> ExportPlan:
    """Read every manifest under the source and plan the objects."""
    findings: list[Finding] = []
    keys = list(source.list_keys())  # manifests and object names only: small even for big ledgers
    key_set = set(keys)
    started = {m.group("export"): k for k in keys if (m := STARTED.match(k))}
    completed: dict[str, list[tuple[str, str]]] = {}
    for k in keys:
        if m := COMPLETED.match(k):
            completed.setdefault(m.group("export"), []).append((m.group("strand"), k))

    exports: list[Export] = []
    for export_id, started_key in sorted(started.items()):
        manifest = _parse_manifest(source, started_key)
        fmt = str(field_or_none(manifest, "outputFormat") or "ION_TEXT").upper()
        if fmt not in FORMATS:
            findings.append(_error("manifest-invalid", f"unknown outputFormat {fmt}", started_key))
            continue
        prefix = field_or_none(manifest, "prefix")
        prefix = "" if prefix is None else str(prefix)
        ledger = field_or_none(manifest, "ledgerName")
        export = Export(export_id, prefix, fmt, None if ledger is None else str(ledger))
        exports.append(export)
        strands = completed.get(export_id, [])
        if not strands:
            findings.append(
                _error(
                    "completed-manifest-missing",
                    f"export {export_id} has a started manifest but no completed manifest: it did not finish "
                    "or the copy is incomplete",
                    started_key,
                )
            )
            continue
        if len(strands) > 1:
            findings.append(
                _error("second-strand", f"export {export_id} has manifests for {len(strands)} strands", started_key)
            )
        strand_id, completed_key = strands[0]
        export.strand_id = strand_id
        export.completed_key = completed_key
        sidecar = completed_key + f"{export_id}.{strand_id}{SIDECAR_SUFFIX}"
        if sidecar in key_set:
            export.sidecar_key = sidecar
        manifest = _parse_manifest(source, completed_key)
        listed = field_or_none(manifest, "keys")
        if not isinstance(listed, list):
            findings.append(_error("manifest-invalid", "completed manifest has no list of keys", completed_key))
            continue
        for position, manifest_key in enumerate(listed):
            manifest_key = str(manifest_key)
            try:
                relative = source.resolve(manifest_key, prefix)
            except KeyOutsideRoot as exc:
                findings.append(_error("key-outside-root", str(exc), completed_key))
                continue
            match = OBJECT_NAME.search(relative)
            if match is None:
                findings.append(
                    _error("object-name-invalid", f"{manifest_key}: not a journal object name", completed_key)
                )
                continue
            if match.group("strand") != strand_id:
                findings.append(
                    _error("second-strand", f"{manifest_key}: object of strand {match.group('strand')}", relative)
                )
                continue
            first, last = int(match.group("first")), int(match.group("last"))
            if relative not in key_set:
                findings.append(
                    Finding(
                        "object-missing",
                        Kind.CONSISTENCY,
                        Severity.ERROR,
                        f"{manifest_key}: listed in the manifest but missing (blocks {first}-{last})",
                        Location(relative, BlockAddress(strand_id, first)),
                    )
                )
                continue
            if last < first:
                findings.append(_error("object-name-invalid", f"{manifest_key}: range {first}-{last}", relative))
                continue
            export.objects.append(DataObject(relative, manifest_key, export_id, strand_id, first, last, fmt, position))
    if not started:
        # nothing of an export here at all: the wrong path or prefix was given (usage), not a damaged export
        raise SourceUsageError(f"{source.description}: neither a QLDB journal export (no "
                               "{exportId}.started.manifest) nor a stream archive: check the path or prefix")
    objects = sorted((o for e in exports for o in e.objects), key=lambda o: (o.first, o.last, o.export_id))
    return ExportPlan(exports, objects, findings)


def _error(code: str, message: str, key: str) -> Finding:
    return Finding(code, Kind.CONSISTENCY, Severity.ERROR, message, Location(object_key=key))
