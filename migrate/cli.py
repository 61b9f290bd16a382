"""The ``qldb-migrate`` command line: a thin layer over the library.

Every command prints a short human verdict, can write a JSON report, and exits
with the codes of DESIGN §5 (0 ok, 1 content wrong, 2 usage, 3 unreachable).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from . import __version__, exitcodes
from .report import write_report

app = typer.Typer(
    name="qldb-migrate",
    help="Verify Amazon QLDB journal exports and move them into PostgreSQL with the proof kept.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

ReportOption = Annotated[
    Path | None, typer.Option("--report", help="Also write a JSON report to this file.", dir_okay=False)
]


def _version(value: bool) -> None:
    if value:
        out.print(f"qldb-migrate {__version__}")
        raise typer.Exit(exitcodes.OK)


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Verify QLDB exports, migrate them into PostgreSQL, and re-prove them there."""


@app.command("verify-proof")
def verify_proof(
    digest: Annotated[
        Path,
        typer.Option(
            "--digest",
            exists=True,
            dir_okay=False,
            help="Digest file: GetDigest JSON, the console's .ion.txt, or a proofs.json sidecar.",
        ),
    ],
    block: Annotated[
        Path | None, typer.Option("--block", exists=True, dir_okay=False, help="GetBlock output (JSON).")
    ] = None,
    revision: Annotated[
        Path | None, typer.Option("--revision", exists=True, dir_okay=False, help="GetRevision output (JSON).")
    ] = None,
    report: ReportOption = None,
) -> None:
    """Check a saved GetBlock or GetRevision proof against a digest, recomputing every hash."""
    from .proofs import run_verify_proof

    if (block is None) == (revision is None):
        err.print("error: give exactly one of --block or --revision")
        raise typer.Exit(exitcodes.USAGE)
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


def _digests(paths: list[Path]) -> list:
    from .digests import DigestFileError, load_digest_file

    out = []
    for path in paths:
        try:
            out.append(load_digest_file(path))
        except DigestFileError as exc:
            err.print(f"error: {exc}")
            raise typer.Exit(exitcodes.CONTENT) from exc
    return out


def _source_spec(source: str, endpoint_url: str | None, region: str | None):
    from .sources import SourceSpec

    if not source.startswith("s3://") and "://" in source:
        err.print(f"error: {source}: give s3://bucket/prefix/ or a local directory")
        raise typer.Exit(exitcodes.USAGE)
    return SourceSpec(source, endpoint_url, region)


DigestOption = Annotated[
    list[Path] | None,
    typer.Option("--digest", exists=True, dir_okay=False,
                 help="Digest file (GetDigest JSON, console .ion.txt, proofs.json); repeatable."),
]
EndpointOption = Annotated[str | None, typer.Option("--endpoint-url", help="S3-compatible endpoint.")]
RegionOption = Annotated[str | None, typer.Option("--region", help="AWS region of the bucket.")]
WorkersOption = Annotated[int | None, typer.Option("--workers", min=1, help="Worker processes (default: cores).")]


@app.command("verify")
def verify_cmd(
    source: Annotated[str, typer.Argument(help="s3://bucket/prefix/ or a local directory holding the export.")],
    digest: DigestOption = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit 1 when the export is partial, unanchored or not fully re-hashable.")
    ] = False,
    endpoint_url: EndpointOption = None,
    region: RegionOption = None,
    workers: WorkersOption = None,
    report: ReportOption = None,
) -> None:
    """Dry run: re-hash every revision and block, check the chain and every digest. Writes no database."""
    from .sources import SourceError
    from .summary import print_summary, verify_report
    from .verifier import verify_source

    spec = _source_spec(source, endpoint_url, region)
    digests = _digests(digest or [])
    try:
        result = _with_progress(lambda progress: verify_source(spec, digests, workers, progress))
    except SourceError as exc:
        err.print(f"error: {exc}")
        raise typer.Exit(exc.exit_code) from exc
    code = exitcodes.OK
    if result.errors or (strict and result.states()):
        code = exitcodes.CONTENT
    elif result.unreachable:
        code = exitcodes.UNREACHABLE
    print_summary(out if code == exitcodes.OK else err, result, strict)
    if report is not None:
        write_report(report, verify_report(result, strict, code))
    raise typer.Exit(code)


def _with_progress(work):
    """Runs ``work(progress)``; a progress bar on a terminal, nothing otherwise."""
    if not err.is_terminal:
        return work(None)
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                  console=err, transient=True) as bar:
        task = bar.add_task("verifying", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total or None)

        return work(progress)


@app.command("sample-export")
def sample_export_cmd(
    out_dir: Annotated[Path, typer.Argument(file_okay=False, help="Directory to write the export into.")],
    revisions: Annotated[int, typer.Option("--revisions", min=1, help="User revisions to generate.")] = 1000,
    fmt: Annotated[str, typer.Option("--format", help="ion_text, ion_binary or json.")] = "ion_text",
    exports: Annotated[int, typer.Option("--exports", min=1, help="Overlapping exports to split the ledger into.")] = 1,
    seed: Annotated[int, typer.Option("--seed", help="Random seed: the same seed gives the same ledger.")] = 1,
) -> None:
    """Write a faithful QLDB journal export of a generated ledger, with digests, for trying the tool."""
    from .sample.export import FORMATS, write_sample_export

    fmt = fmt.lower()
    if fmt not in FORMATS:
        err.print(f"error: --format must be one of {', '.join(FORMATS)}")
        raise typer.Exit(exitcodes.USAGE)
    if out_dir.exists() and any(out_dir.iterdir()):
        err.print(f"error: {out_dir} is not empty")
        raise typer.Exit(exitcodes.USAGE)
    summary = write_sample_export(out_dir, revisions, fmt, exports, seed)
    out.print(
        f"wrote {summary.revisions} revisions in {summary.blocks} blocks, {len(summary.exports)} export(s), "
        f"format {fmt}, to {out_dir}"
    )
    for path in summary.digests:
        out.print(f"  digest: {path}")
    out.print(f"try: qldb-migrate verify {out_dir} --digest {summary.digests[-1]}")


def main() -> None:
    """Console-script entry point: usage errors exit 2, never a traceback for bad input."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
