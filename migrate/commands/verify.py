"""``verify``, ``verify-proof`` and ``sample-export``: everything that touches no database."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .. import exitcodes
from ..optouts import OptOuts
from ..report import write_report, write_success_report
from .common import (
    AllowPartialOption,
    AllowUnanchoredOption,
    AllowUnverifiableOption,
    DaskSchedulerOption,
    DigestOption,
    EndpointOption,
    RegionOption,
    ReportOption,
    SourceFormatOption,
    SourcesArgument,
    StrictOption,
    WorkDirOption,
    WorkersOption,
    app,
    die,
    err,
    load_digests,
    out,
    source_specs,
    start_executor,
    with_progress,
)


@app.command("verify")
def verify_cmd(
    source: SourcesArgument,
    digest: DigestOption = None,
    strict: StrictOption = False,
    allow_partial: AllowPartialOption = False,
    allow_unanchored: AllowUnanchoredOption = False,
    allow_unverifiable: AllowUnverifiableOption = False,
    endpoint_url: EndpointOption = None,
    region: RegionOption = None,
    workers: WorkersOption = None,
    report: ReportOption = None,
    source_format: SourceFormatOption = "auto",
    work_dir: WorkDirOption = None,
    dask_scheduler: DaskSchedulerOption = None,
    reference: Annotated[bool, typer.Option(
        "--reference", metavar="",
        help="Re-hash with the pure-Python Ion Hash (the reference implementation) instead of the C one: slower, "
             "and independent of the C code.")] = False,
) -> None:
    """Dry run: re-hash every revision and block, check the chain and every digest. Writes no database."""
    from ..dask_executor import ClusterError
    from ..sources import SourceError
    from ..summary import print_summary, verify_report
    from ..verifier import verify_sources

    specs = source_specs(source, endpoint_url, region, source_format)
    digests = load_digests(digest)
    opt_outs = OptOuts(allow_partial, allow_unanchored, allow_unverifiable)
    # local: verify_source starts its own workers (none for a single object); a cluster is connected here
    executor = start_executor(workers, dask_scheduler, specs) if dask_scheduler else None
    try:
        result = with_progress("verifying", lambda progress: verify_sources(
            specs, digests, workers, progress, executor=executor, source_format=source_format, workdir=work_dir,
            reference=reference))
    except (SourceError, ClusterError) as exc:
        die(str(exc), exc.exit_code)
    finally:
        if executor is not None:
            executor.close()
    code = exitcodes.OK
    if result.error_count or (strict and opt_outs.refused(result.states())):
        code = exitcodes.CONTENT
    elif result.unreachable:
        code = exitcodes.UNREACHABLE
    print_summary(out if code == exitcodes.OK else err, result, strict, opt_outs)
    if report is not None:
        write_report(report, verify_report(result, strict, code, opt_outs))
    raise typer.Exit(code)


@app.command("verify-proof")
def verify_proof_cmd(
    digest: Annotated[Path, typer.Option(
        "--digest", metavar="FILE", exists=True, dir_okay=False,
        help="Digest file: GetDigest JSON, the console's .ion.txt, a proofs.json sidecar, or `qldb-migrate digest` "
             "output.")],
    block: Annotated[Path | None, typer.Option(
        "--block", metavar="FILE", exists=True, dir_okay=False,
        help="GetBlock output (AWS CLI JSON, or `qldb-migrate get-block` output).")] = None,
    revision: Annotated[Path | None, typer.Option(
        "--revision", metavar="FILE", exists=True, dir_okay=False,
        help="GetRevision output (AWS CLI JSON, or `qldb-migrate get-revision` output).")] = None,
    report: ReportOption = None,
) -> None:
    """Check a saved GetBlock or GetRevision proof against a digest, recomputing every hash."""
    from ..proofs import run_verify_proof

    if (block is None) == (revision is None):
        die("give exactly one of --block or --revision", exitcodes.USAGE)
    run = run_verify_proof(digest, block, revision)
    (out if run.exit_code == exitcodes.OK else err).print(run.verdict)
    if run.result is not None:
        for finding in run.result.findings:
            if not finding.is_error:
                out.print(f"  note: {finding.describe()}")
            elif finding.describe() not in run.verdict:
                err.print(f"  {finding.describe()}")
    if report is not None:
        write_report(report, run.report)
    raise typer.Exit(run.exit_code)


@app.command("sample-export")
def sample_export_cmd(
    out_dir: Annotated[Path, typer.Argument(metavar="DIR", file_okay=False,
                                            help="Directory to write the export into.")],
    revisions: Annotated[int, typer.Option("--revisions", metavar="N", min=1, help="User revisions to generate.")]
    = 1000,
    fmt: Annotated[str, typer.Option("--format", metavar="FORMAT", help="ion_text, ion_binary or json.")]
    = "ion_text",
    exports: Annotated[int, typer.Option("--exports", metavar="K", min=1,
                                         help="Overlapping exports to split the ledger into.")] = 1,
    seed: Annotated[int, typer.Option("--seed", metavar="S", help="Random seed: the same seed gives the same ledger.")]
    = 1,
    stream_archive: Annotated[Path | None, typer.Option(
        "--stream-archive", metavar="DIR", file_okay=False,
        help="Also write the same ledger as a Kinesis stream archive: Firehose objects (plain, gzip, KPL-aggregated "
             "records, duplicates and reordering across objects) and a get-records JSON file.")] = None,
    report: ReportOption = None,
) -> None:
    """Write a faithful QLDB journal export of a generated ledger, with digests, for trying the tool."""
    from ..sample.export import FORMATS, write_sample_export

    fmt = fmt.lower()
    if fmt not in FORMATS:
        die(f"--format must be one of {', '.join(FORMATS)}", exitcodes.USAGE)
    if out_dir.exists() and any(out_dir.iterdir()):
        die(f"{out_dir} is not empty", exitcodes.USAGE)
    summary = with_progress("writing", lambda progress: write_sample_export(out_dir, revisions, fmt, exports, seed,
                                                                            progress=progress), unit="blocks")
    out.print(
        f"wrote {summary.revisions} user revisions in {summary.blocks} blocks, {len(summary.exports)} export(s), "
        f"format {fmt}, to {out_dir} ({summary.seconds:.1f}s, {summary.revisions / max(summary.seconds, 1e-9):,.0f} "
        "revisions/s)"
    )
    for path in summary.digests:
        out.print(f"  digest: {path}")
    for path in summary.proofs:
        out.print(f"  saved proof: {path}")
    out.print(f"try: qldb-migrate verify {out_dir} --digest {summary.digests[-1]}")
    if stream_archive is not None:
        from ..sample.stream import write_sample_stream_archive

        if stream_archive.exists() and any(stream_archive.iterdir()):
            die(f"{stream_archive} is not empty", exitcodes.USAGE)
        written = write_sample_stream_archive(stream_archive, revisions, seed)
        out.print(f"wrote the same ledger as a stream archive to {stream_archive} ({written})")
        out.print(f"try: qldb-migrate verify {stream_archive / 'firehose'} --digest {summary.digests[-1]}")
    write_success_report(report, "sample-export", {
        "out": str(out_dir), "format": fmt, "seed": seed, "revisions": summary.revisions, "blocks": summary.blocks,
        "exports": len(summary.exports), "digests": [str(p) for p in summary.digests],
        "savedProofs": [str(p) for p in summary.proofs],
        "streamArchive": None if stream_archive is None else str(stream_archive)})
