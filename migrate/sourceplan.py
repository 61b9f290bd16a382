"""Several sources, one chain: exports and stream archives planned as one ordered list of objects.

Each source is recognised (``--source-format`` may force it): a journal export
by its manifests, a Kinesis stream archive by its Firehose objects or saved
get-records / Lambda JSON.  An export contributes its data objects; a stream
archive is first read once into a spill on disk (``streams.scan_stream_archive``)
and contributes "objects" that are ranges of block sequence numbers read back
from it.  All of them are ordered by the blocks they hold, so the verifier
joins them by hash exactly as it joins overlapping exports: an export of blocks
0..N and an archive of N-k..M verify as one chain 0..M; identical blocks are
one block, a redaction merges, any other difference is a conflict.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from .digests import DigestFileError, parse_digest
from .executor import Executor
from .exports import DataObject, Export, ExportPlan, discover
from .sources import Source, SourceError, SourceSpec, SourceUsageError
from .streams import StreamArchive, is_stream_archive, scan_stream_archive
from .verify.chain import Digest
from .verify.findings import Finding, Kind, Location, Severity

FORMATS = ("auto", "export", "stream")
STREAM = "STREAM"
#: blocks per range of a stream archive handed to one worker
STREAM_CHUNK = 250


@dataclass
class SourcePlan:
    plan: ExportPlan  # every object of every source, in block order (a stream archive's as block ranges)
    specs: dict[str, SourceSpec]  # object key -> the source it is read from
    sidecar_digests: list[Digest] = field(default_factory=list)
    streams: list[StreamArchive] = field(default_factory=list)
    descriptions: list[str] = field(default_factory=list)


def _kind(source: Source, forced: str) -> str:
    if forced != "auto":
        return forced
    keys = source.list_keys()
    if any(k.endswith(".started.manifest") for k in keys):
        return "export"
    return "stream" if is_stream_archive(source) else "export"  # discover() then says what is missing


def plan_sources(specs: list[SourceSpec], workdir: Callable[[], Path], source_format: str = "auto",
                 executor: Executor | None = None, progress: Callable[[int, int], None] | None = None) -> SourcePlan:
    """Recognise, read (stream archives: into the directory ``workdir()`` gives) and order every source's objects."""
    exports: list[Export] = []
    objects: list[DataObject] = []
    findings: list[Finding] = []
    by_key: dict[str, SourceSpec] = {}
    result = SourcePlan(ExportPlan(exports, objects, findings), by_key)
    for number, spec in enumerate(specs):
        source = spec.open()
        result.descriptions.append(source.description)
        if _kind(source, source_format) == "stream":
            if getattr(executor, "remote", False):
                raise SourceUsageError(
                    f"{source.description} is a stream archive: its records are put in block order in a spill file "
                    "on this machine, which a cluster's workers cannot read; verify it without --dask-scheduler")
            archive = scan_stream_archive(source, workdir() / f"stream-{number}", progress, executor=executor)
            result.streams.append(archive)
            findings.extend(archive.findings)
            # the ARN's ledger part is "partition:region:account:name"; the ledger is known by its name
            name = archive.ledger.rsplit(":", 1)[-1] if archive.ledger else None
            export = Export(f"stream:{number}", "", STREAM, name, archive.strand_id)
            exports.append(export)
            if archive.first is None or archive.strand_id is None:
                continue
            for position, first in enumerate(range(archive.first, archive.last + 1, STREAM_CHUNK)):
                last = min(first + STREAM_CHUNK - 1, archive.last)
                obj = DataObject(f"{archive.spill_path}#{first}-{last}", source.description, export.export_id,
                                 archive.strand_id, first, last, STREAM, position)
                export.objects.append(obj)
                by_key[obj.key] = spec
            continue
        plan = discover(source)
        findings.extend(plan.findings)
        exports.extend(plan.exports)
        for obj in plan.objects:
            by_key[obj.key] = spec
        for export in plan.exports:
            if export.sidecar_key:
                try:
                    sidecar = parse_digest(source.read(export.sidecar_key), export.sidecar_key)
                    result.sidecar_digests.append(replace(sidecar, beside_source=True))
                except (DigestFileError, SourceError) as exc:
                    findings.append(Finding("sidecar-invalid", Kind.CONSISTENCY, Severity.ERROR, str(exc),
                                            Location(export.sidecar_key)))
    objects.extend(sorted((o for e in exports for o in e.objects), key=lambda o: (o.first, o.last, o.export_id)))
    strands = {o.strand_id for o in objects}
    if len(strands) > 1:
        findings.append(Finding("sources-of-several-ledgers", Kind.CONSISTENCY, Severity.ERROR,
                                f"the sources hold {len(strands)} ledgers (strands {', '.join(sorted(strands))}): "
                                "give one ledger's exports and archives per run", Location()))
    return result


def spill_range(obj: DataObject) -> tuple[Path, int, int]:
    """(spill file, first, last) of a stream archive's block range."""
    path, _, _span = obj.key.rpartition("#")
    return Path(path), obj.first, obj.last


__all__ = ["FORMATS", "STREAM", "SourcePlan", "plan_sources", "spill_range"]
