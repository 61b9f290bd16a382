"""What every command shares: the Typer app, the two consoles, option types, and how failures end a command.

Every failure ends in one line on stderr and the exit code DESIGN §5 gives
(0 ok, 1 the content is wrong, 2 usage, 3 a source or target unreachable);
no traceback, no secret.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
import typer.core
from rich.console import Console

from .. import exitcodes

if TYPE_CHECKING:
    import psycopg

    from ..executor import Executor
    from ..pg.target import Target
    from ..sources import SourceSpec

# Typer (0.2x) prints a Python type after each argument in help ("SOURCE <str>"); the help line already says what
# an argument is, so the argument column shows its metavar alone.
if hasattr(typer.core.TyperArgument, "display_type_rich"):
    typer.core.TyperArgument.display_type_rich = lambda self, ctx: None  # type: ignore[method-assign]

app = typer.Typer(
    name="qldb-migrate",
    help="Verify Amazon QLDB journal exports and move them into PostgreSQL with the proof kept.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
def _console(stderr: bool) -> Console:
    """Piped output (logs, CI) gets wide tables: ids and hashes are not cut to fit 80 columns.

    No markup: what is printed holds names from the ledger (tables, objects, values), and a ``[...]`` in
    them must print as written, not vanish or raise as a rich tag."""
    plain = {"stderr": stderr, "highlight": False, "soft_wrap": True, "markup": False}
    console = Console(**plain)
    return console if console.is_terminal else Console(**plain, width=200)


out = _console(False)
err = _console(True)

#: what Ctrl-C or SIGTERM means for the running command, said by ``cli.main``'s handler: a migration's one
#: transaction rolls back; a command that commits as it goes (``seal --every``, whose stop is the normal end)
#: says what it has kept instead (``on_interrupt``)
INTERRUPTED = ["interrupted: nothing from this run was published (its transaction rolls back)"]


def on_interrupt(message: str) -> None:
    INTERRUPTED[0] = message

T = TypeVar("T")

ReportOption = Annotated[Path | None, typer.Option(
    "--report", metavar="FILE.json", dir_okay=False, help="Also write a JSON report to this file.")]
DigestOption = Annotated[list[Path] | None, typer.Option(
    "--digest", metavar="FILE", exists=True, dir_okay=False,
    help="A digest kept outside the database: GetDigest JSON, the console's .ion.txt, or a …proofs.json sidecar. "
         "Repeatable.")]
EndpointOption = Annotated[str | None, typer.Option(
    "--endpoint-url", metavar="URL", help="S3-compatible endpoint (default: AWS S3).")]
RegionOption = Annotated[str | None, typer.Option(
    "--region", metavar="REGION", help="AWS region of the bucket (and of the RDS token with --iam-auth).")]
WorkersOption = Annotated[int | None, typer.Option(
    "--workers", metavar="N", min=1, help="Worker processes (default: one per core, at most 8).")]
DaskSchedulerOption = Annotated[str | None, typer.Option(
    "--dask-scheduler", metavar="ADDRESS", envvar="QLDB_MIGRATE_DASK_SCHEDULER",
    help="Run the per-object work (read, parse, re-hash) on the workers of this Dask scheduler, e.g. "
         "tcp://10.0.0.5:8786, instead of local processes. The workers need qldb-migrate[dask] and must reach the "
         "source themselves: S3, or a path mounted at the same absolute place on every worker.")]
DsnOption = Annotated[str | None, typer.Option(
    "--dsn", metavar="DSN", help="PostgreSQL connection string or URI; default $QLDB_MIGRATE_DSN, else the "
                                 "embedded PostgreSQL.")]
DataDirOption = Annotated[Path | None, typer.Option(
    "--data-dir", metavar="DIR", file_okay=False,
    help="Data directory of the embedded PostgreSQL (default: the user data directory's qldb-migrate/pg18).")]
IamAuthOption = Annotated[bool, typer.Option(
    "--iam-auth", metavar="", help="Sign an RDS IAM token for the DSN's user (requires TLS).")]
SchemaOption = Annotated[str, typer.Option(
    "--schema", metavar="NAME", help="PostgreSQL schema for this ledger's tables: one ledger per schema.")]
LedgerOption = Annotated[str | None, typer.Option(
    "--ledger", metavar="NAME", help="Only this ledger: its QLDB name, strand id or schema.")]
AllowPartialOption = Annotated[bool, typer.Option(
    "--allow-partial", metavar="", help="Accept an export that does not start at block 0 (recorded).")]
AllowUnanchoredOption = Annotated[bool, typer.Option(
    "--allow-unanchored", metavar="", help="Accept an export no digest or saved proof reaches (recorded).")]
AllowUnverifiableOption = Annotated[bool, typer.Option(
    "--allow-unverifiable", metavar="",
    help="Accept revisions that cannot be re-hashed: JSON data, unexplained redactions, a deleted document's "
         "unmatched rule (recorded).")]
StrictOption = Annotated[bool, typer.Option(
    "--strict", metavar="", help="Exit 1 on any reservation (partial, unanchored, not re-hashed) not allowed.")]
SourcesArgument = Annotated[list[str], typer.Argument(
    metavar="SOURCE...", help="Where the ledger's journal is: s3://bucket/prefix/ or a local directory holding a QLDB "
                              "export or a Kinesis stream archive (Firehose objects, get-records or Lambda JSON). "
                              "Several are joined into one chain by hash.")]
SourceFormatOption = Annotated[str, typer.Option(
    "--source-format", metavar="auto|export|stream",
    help="What the sources are: recognised from their contents by default.")]
WorkDirOption = Annotated[Path | None, typer.Option(
    "--work-dir", metavar="DIR", file_okay=False,
    help="Where a stream archive's records are spilled while being put in order (about the archive's size; default: "
         "a temporary directory).")]


def die(message: str, code: int) -> NoReturn:
    err.print(f"error: {message}", markup=False)  # messages quote paths, exceptions, `pip install x[extra]`
    raise typer.Exit(code)


def load_digests(paths: list[Path] | None) -> list[Any]:
    """Digest files; one that is not a digest is a usage error (exit 2) naming the file and field."""
    from ..digests import DigestFileError, load_digest_file

    digests = []
    for path in paths or []:
        try:
            digests.append(load_digest_file(path))
        except DigestFileError as exc:
            die(f"{exc} (--digest takes a digest file)", exitcodes.USAGE)
        except OSError as exc:
            die(f"{path}: {exc.strerror}", exitcodes.USAGE)
    return digests


def source_spec(source: str, endpoint_url: str | None, region: str | None) -> SourceSpec:
    from ..sources import SourceSpec

    if not source.startswith("s3://") and "://" in source:
        die(f"{source}: give s3://bucket/prefix/ or a local directory", exitcodes.USAGE)
    return SourceSpec(source, endpoint_url, region)


def source_specs(sources: list[str], endpoint_url: str | None, region: str | None, source_format: str
                 ) -> list[SourceSpec]:
    from ..sourceplan import FORMATS

    if source_format not in FORMATS:
        die(f"--source-format must be one of {', '.join(FORMATS)}", exitcodes.USAGE)
    return [source_spec(s, endpoint_url, region) for s in sources]


def given_on_command_line(ctx: typer.Context, param: str) -> bool:
    """True when the option was typed, not filled in from its environment variable or default."""
    return getattr(ctx.get_parameter_source(param), "name", None) == "COMMANDLINE"


def start_executor(workers: int | None, dask_scheduler: str | None, specs: list[SourceSpec]) -> Executor:
    """Where the per-object work runs, started before the caller opens any database connection.

    Local worker processes by default (forked now, so none inherits a
    connection); with ``--dask-scheduler``, the workers of that cluster, after
    checking that they run this code and reach the source.  A local path must
    be absolute then: a relative one would resolve in each worker's own
    working directory, on its own machine.
    """
    from ..executor import local_executor

    if not dask_scheduler:
        return local_executor(workers)
    from ..dask_executor import ClusterError, DaskExecutor, DaskUsageError

    if workers is not None:
        die("--workers sets local worker processes; with --dask-scheduler (or $QLDB_MIGRATE_DASK_SCHEDULER) the "
            "cluster's workers run the work: give one or the other", exitcodes.USAGE)
    for spec in specs:
        if not spec.is_s3 and not Path(spec.url).is_absolute():
            die(f"{spec.url}: a relative path with --dask-scheduler would be resolved on each worker's machine; give "
                "the absolute path at which every worker (and this client) mounts the export, or s3://…",
                exitcodes.USAGE)
    try:
        executor = DaskExecutor(dask_scheduler)
    except (DaskUsageError, ClusterError) as exc:
        die(str(exc), exc.exit_code)
    try:
        for spec in specs:
            executor.check_workers(spec)
    except ClusterError as exc:
        executor.close()
        die(str(exc), exc.exit_code)
    return executor


def check_schema_name(schema: str) -> str:
    """A schema the tool may create tables in; system schemas and its own ``qldb`` are refused (exit 2)."""
    lowered = schema.lower()
    if not schema or lowered.startswith("pg_") or lowered in ("information_schema", "qldb"):
        die(f"--schema {schema}: a system schema (or qldb-migrate's own qldb schema) cannot hold a ledger's "
            "tables; choose another name, e.g. --schema ledger", exitcodes.USAGE)
    if len(schema.encode()) > 63:
        die(f"--schema {schema}: PostgreSQL names are at most 63 bytes", exitcodes.USAGE)
    return schema


def open_target(dsn: str | None, data_dir: Path | None, iam_auth: bool = False, region: str | None = None) -> Target:
    from ..pg.target import TargetUnreachable, resolve

    try:
        return resolve(dsn, data_dir, iam_auth, region)
    except TargetUnreachable as exc:
        die(str(exc), exc.exit_code)


def connect_or_die(target: Target) -> psycopg.Connection:
    from ..pg.target import TargetUnreachable, connect

    try:
        return connect(target)
    except TargetUnreachable as exc:
        die(str(exc), exc.exit_code)


def with_progress(description: str, work: Callable[[Any], T], unit: str = "bytes") -> T:
    """Runs ``work(progress)``: a progress bar with a rate on a terminal, nothing otherwise."""
    if not err.is_terminal:
        return work(None)
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns: list[Any] = ["[progress.description]{task.description}", BarColumn()]
    if unit == "bytes":
        columns += [DownloadColumn(), TransferSpeedColumn()]
    else:
        columns += [MofNCompleteColumn(), TaskProgressColumn(), f"{unit}"]
    columns.append(TimeRemainingColumn())
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task(description, total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total or None)

        return work(progress)
