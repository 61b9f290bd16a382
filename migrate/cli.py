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


def main() -> None:
    """Console-script entry point: usage errors exit 2, never a traceback for bad input."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
