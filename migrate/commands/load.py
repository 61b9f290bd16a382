"""``migrate`` and ``demo``: verify and load in one pass, then re-prove what was published."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .. import exitcodes
from ..optouts import OptOuts
from ..report import write_report
from .common import (
    AllowPartialOption,
    AllowUnanchoredOption,
    AllowUnverifiableOption,
    DaskSchedulerOption,
    DataDirOption,
    DigestOption,
    DsnOption,
    EndpointOption,
    IamAuthOption,
    RegionOption,
    ReportOption,
    SchemaOption,
    SourceFormatOption,
    SourcesArgument,
    WorkDirOption,
    WorkersOption,
    app,
    check_schema_name,
    connect_or_die,
    die,
    err,
    load_digests,
    open_target,
    out,
    source_specs,
    start_executor,
    with_progress,
)

if TYPE_CHECKING:
    from ..pg.target import Target


def lost_connection(target: Target, first: str, when: str = "", why: str = "") -> str:
    return (f"lost the connection to {target.description}{when} ({first}); nothing from this run was published"
            f"{why} — run it again")


def prepare_database(target: Target) -> None:
    """Connect first (so an unreachable server, a missing database or role says so), then the schema upgrade."""
    import psycopg

    from ..pg.target import MigrationRefused, first_line, sanitize, upgrade_schema

    connect_or_die(target).close()
    try:
        upgrade_schema(target)
    except MigrationRefused as exc:
        die(str(exc), exc.exit_code)
    except Exception as exc:  # SQLAlchemy / psycopg errors while upgrading the schema
        cause = getattr(exc, "orig", None) or exc  # SQLAlchemy wraps the driver's error
        first = sanitize(first_line(cause), target)
        if isinstance(cause, psycopg.OperationalError):
            die(lost_connection(target, first, when=" during the schema upgrade"), exitcodes.UNREACHABLE)
        die(f"{target.description}: schema upgrade failed ({first}); nothing was published", exitcodes.UNREACHABLE)


@app.command("migrate")
def migrate_cmd(
    source: SourcesArgument,
    dsn: DsnOption = None,
    digest: DigestOption = None,
    schema: SchemaOption = "ledger",
    allow_partial: AllowPartialOption = False,
    allow_unanchored: AllowUnanchoredOption = False,
    allow_unverifiable: AllowUnverifiableOption = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", metavar="", help="Verify only, exactly like `verify`.")]
    = False,
    no_check: Annotated[bool, typer.Option("--no-check", metavar="",
                                           help="Skip the post-load check (`check` re-proves it later).")] = False,
    data_dir: DataDirOption = None,
    iam_auth: IamAuthOption = False,
    endpoint_url: EndpointOption = None,
    region: RegionOption = None,
    workers: WorkersOption = None,
    report: ReportOption = None,
    source_format: SourceFormatOption = "auto",
    work_dir: WorkDirOption = None,
    dask_scheduler: DaskSchedulerOption = None,
    restart: Annotated[bool, typer.Option(
        "--restart", metavar="",
        help="Forget the staged progress of an interrupted run into this --schema and verify every object again.")]
    = False,
) -> None:
    """Verify a ledger's exports and stream archives and load them into PostgreSQL; publishes only what verified,
    atomically.  An interrupted run resumes on rerun from the objects it had already verified."""

    from ..pg.loader import MigrateOptions

    if dry_run:
        from .verify import verify_cmd

        verify_cmd(source, digest, False, allow_partial, allow_unanchored, allow_unverifiable, endpoint_url, region,
                   workers, report, source_format, work_dir, dask_scheduler)
        return
    check_schema_name(schema)
    specs = source_specs(source, endpoint_url, region, source_format)
    digests = load_digests(digest)
    target = open_target(dsn, data_dir, iam_auth, region)
    opt_outs = OptOuts(allow_partial, allow_unanchored, allow_unverifiable)
    options = MigrateOptions(schema, opt_outs, workers, source_format, work_dir)
    prepare_database(target)
    # workers first, the connection after: a forked worker must not hold a copy of the run's session
    # (with --dask-scheduler, the cluster's workers verify, encode and COPY the rows themselves: workerload)
    executor = start_executor(workers, dask_scheduler, specs)
    try:
        load = _cluster_load(executor, target, options.schema, iam_auth)
        code = _migrate_and_check(target, specs, digests, options, source, executor, no_check, opt_outs, report,
                                  restart, load)
    finally:
        executor.close()
    raise typer.Exit(code)


def _cluster_load(executor: Any, target: Target, schema: str, iam_auth: bool) -> Any:
    """A cluster's workers stage the rows themselves when every one of them reaches the target (``workerload``).

    Not with ``--iam-auth``: its token is signed here and expires after 15 minutes, before a long run's last
    worker connects.  Local workers never do: on one machine forwarding their bytes costs the client little, and
    staging them would make the database write every row twice."""
    if not hasattr(executor, "run_on_workers"):
        return None
    from ..dask_executor import ClusterError
    from ..pg.workerload import WorkerLoad, cluster_load

    if iam_auth:
        out.print("rows go through this client: --iam-auth tokens are signed here and expire", highlight=False)
        return None
    try:
        load, how = cluster_load(executor, WorkerLoad(target.conninfo, schema))
    except ClusterError as exc:
        die(str(exc), exc.exit_code)
    out.print(how, highlight=False)
    return load


def _migrate_and_check(target: Target, specs: list[Any], digests: list[Any], options: Any, source: list[str],
                       executor: Any, no_check: bool, opt_outs: OptOuts, report: Path | None,
                       restart: bool = False, load: Any = None) -> int:
    import psycopg

    from ..dask_executor import ClusterError
    from ..pg.loader import MigrationRefused, migrate_source
    from ..pg.staging import Stage
    from ..pg.target import first_line, sanitize
    from ..sources import SourceError

    conn = connect_or_die(target)
    stage_conn = connect_or_die(target)  # the staged progress commits per object, beside the one publishing transaction
    try:
        stage = Stage(stage_conn, options.schema, load)
        result = with_progress("verifying and loading", lambda progress: migrate_source(
            conn, specs, digests, options, " + ".join(source), progress, executor, stage, restart))
    except MigrationRefused as exc:
        die(str(exc), exc.exit_code)
    except psycopg.OperationalError as exc:
        die(lost_connection(target, sanitize(first_line(exc), target), why=" (its transaction rolled back)"),
            exitcodes.UNREACHABLE)
    except SourceError as exc:
        die(str(exc), exc.exit_code)
    except ClusterError as exc:
        die(f"{exc}; nothing from this run was published (its transaction rolled back)", exc.exit_code)
    finally:
        stage_conn.close()
        conn.close()
    from ..pg.summary import migrate_report, print_migrate_summary

    code = exitcodes.OK if result.committed else exitcodes.CONTENT
    print_migrate_summary(out if code == exitcodes.OK else err, result, target.description)
    check_report = None
    if result.committed and not no_check:
        from ..pg.checker import run_check
        from .check import print_check

        # anchored by what this run itself verified from outside the database: the files given and the sidecars;
        # the run's local workers (forked before any connection) re-prove the rows in parallel
        anchors = [o.digest for o in result.verify.digests if o.matched]
        with connect_or_die(target) as check_conn:
            checked = with_progress("post-load check", lambda progress: run_check(
                check_conn, anchors, only=result.verify.strand_id, progress=progress, executor=executor,
                conninfo=target.conninfo), unit="rows")
        check_report = print_check(checked, strict=False, prefix="post-load check")
        if checked.error_count:
            code = exitcodes.CONTENT
    if report is not None:
        data: dict[str, Any] = migrate_report(result, target.description, code, opt_outs)
        data["check"] = check_report
        write_report(report, data)
    return code


@app.command("demo")
def demo_cmd(
    data_dir: DataDirOption = None,
    workdir: Annotated[Path | None, typer.Option("--workdir", metavar="DIR", file_okay=False,
                                                 help="Where to write the sample export (default: a new temp dir).")]
    = None,
    revisions: Annotated[int, typer.Option("--revisions", metavar="N", min=1,
                                           help="User revisions in the sample ledger.")] = 2000,
    report: ReportOption = None,
) -> None:
    """Write a small sample export, migrate it into the embedded PostgreSQL, check it, and say where to look."""
    import shlex
    import shutil
    import tempfile

    from ..sample.export import write_sample_export

    base = workdir or Path(tempfile.mkdtemp(prefix="qldb-migrate-demo-"))
    export = base / "export"
    if export.exists():
        shutil.rmtree(export)
    summary = write_sample_export(export, revisions, "ion_text", 2, seed=42)
    out.print(f"sample export: {export} ({summary.revisions} user revisions, {summary.blocks} blocks, 2 exports)")
    try:
        migrate_cmd([str(export)], None, [summary.digests[-1]], "ledger", data_dir=data_dir, report=report)
    except typer.Exit as done:
        if done.exit_code != exitcodes.OK:
            raise
    _show_translated_queries(data_dir)
    at = f" --data-dir {shlex.quote(str(data_dir))}" if data_dir is not None else ""  # the server this demo used
    out.print(f"look: qldb-migrate psql{at} -c 'SELECT document_id, version, data FROM ledger.person LIMIT 5'")
    out.print(f"      qldb-migrate psql{at} -c 'SELECT * FROM qldb.migration_run'")
    out.print(f"the embedded server stops by itself when no qldb-migrate command uses it; `psql` starts it again "
              f"(qldb-migrate server status{at})")
    raise typer.Exit(exitcodes.OK)


#: Two of the README's "From PartiQL to SQL" pairs, shown at the end of ``demo`` on the ledger it just loaded.
DEMO_QUERIES = (
    ("SELECT * FROM Transactions WHERE fromAccountId = 'ACC-001' OR toAccountId = 'ACC-001'",
     "SELECT data->>'transactionId' AS \"transactionId\", data->>'fromAccountId' AS \"from\", "
     "data->>'toAccountId' AS \"to\", data->>'amount' AS amount FROM ledger.transactions "
     "WHERE data->>'fromAccountId' = 'ACC-001' OR data->>'toAccountId' = 'ACC-001' ORDER BY 1"),
    ("SELECT accountId, balance, metadata.txTime FROM history(Accounts) AS a WHERE a.data.accountId = 'ACC-001'",
     "SELECT a.data->>'accountId' AS \"accountId\", a.data->>'balance' AS balance, a.metadata->>'txTime' AS "
     "\"txTime\" FROM qldb.history('Accounts') AS a WHERE a.data->>'accountId' = 'ACC-001' "
     "ORDER BY (a.metadata->>'version')::int"),
)


def _show_translated_queries(data_dir: Path | None) -> None:
    """Prints each PartiQL query, its SQL, and the SQL's rows on the demo ledger (README: From PartiQL to SQL)."""
    from rich.table import Table

    with connect_or_die(open_target(None, data_dir)) as conn:
        for partiql, query in DEMO_QUERIES:
            cur = conn.execute(query)
            table = Table(*[c.name for c in cur.description], title=f"PartiQL: {partiql}\nSQL: {query}",
                          title_justify="left")
            for row in cur.fetchall():
                table.add_row(*["" if v is None else str(v) for v in row])
            out.print(table)
