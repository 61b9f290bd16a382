"""``check``: re-prove the migrated ledgers from the rows, anchored by something kept outside the database."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from .. import exitcodes
from ..report import base_report, write_report
from ..summary import anchor_phrase, rate
from .common import (
    DaskSchedulerOption,
    DataDirOption,
    DigestOption,
    DsnOption,
    EndpointOption,
    IamAuthOption,
    LedgerOption,
    RegionOption,
    ReportOption,
    StrictOption,
    WorkersOption,
    app,
    connect_or_die,
    die,
    err,
    given_on_command_line,
    load_digests,
    open_target,
    out,
    source_spec,
    start_executor,
    with_progress,
)


def check_verdict(checked: Any) -> tuple[str, str]:
    """(word, detail) — what was re-proved and how far something outside the database anchors it."""
    from ..pg.checker import reservation_counts

    unsealed = checked.unsealed
    what = (f"{checked.blocks:,} blocks and {checked.rows - unsealed:,} history rows in {checked.tables} tables of "
            f"{len(checked.ledgers)} ledger(s) re-proved from the rows ({rate(checked.rows, checked.seconds, 'rows')})")
    if checked.error_count:
        first = checked.errors[0].describe() if checked.errors else ""
        return "FAILED", f"{checked.error_count} problem(s) — {what}; first: {first}"
    anchors = "; ".join(f"{ledger.ledger_name or ledger.strand_id}: "
                        f"{anchor_phrase(ledger.anchored_through, ledger.first, ledger.last, ledger.anchor_names)}"
                        for ledger in checked.ledgers)
    reservations = (f"; under recorded reservations (see the warnings): {reservation_counts(checked.reservation_kinds)}"
                    if checked.reservations else "")
    if unsealed:  # in the history, under no hash yet: not proven, and --strict says so
        reservations += (f"; {unsealed:,} revisions written after cut-over are not sealed yet (no block or digest "
                         "covers them: run qldb-migrate seal)")
    if checked.anchored:
        word = "VERIFIED WITH RESERVATIONS" if checked.reservations or unsealed else "VERIFIED"
        return word, f"{what}; {anchors}{reservations}"
    if checked.partly_anchored:
        return "VERIFIED, PARTLY ANCHORED", f"{what}; {anchors}{reservations}"
    return ("INTERNALLY CONSISTENT, NOT ANCHORED",
            f"{what}{reservations}; nothing kept outside the database was given or matched: give --digest FILE or "
            "--source EXPORT")


def print_check(checked: Any, strict: bool, prefix: str = "check") -> dict[str, Any]:
    word, detail = check_verdict(checked)
    failed = word == "FAILED" or (strict and word != "VERIFIED")
    console = err if failed else out
    for line in checked.findings.lines():
        console.print(line)
    console.print(f"{prefix}: {word}: {detail}")
    report = base_report("check")
    report.update({
        "verdict": word.lower(), "detail": detail, "anchored": checked.anchored,
        "blocks": checked.blocks, "historyRows": checked.rows, "tables": checked.tables,
        "ledgers": [ledger.to_json() for ledger in checked.ledgers],
        "outsideDigests": [o.to_json() for o in checked.outside],
        "storedDigests": [o.to_json() for o in checked.stored],
        "source": None if checked.source is None else {
            "source": checked.source.source, "blocks": checked.source.blocks,
            "first": checked.source.first_sequence, "last": checked.source.last_sequence,
            "anchoredThrough": checked.source.anchored_through},
        **checked.findings.to_json(), "seconds": round(checked.seconds, 3),
        "rowsPerSecond": round(checked.rows / checked.seconds, 1) if checked.seconds > 0 else None,
    })
    return report


@app.command("check")
def check_cmd(
    ctx: typer.Context,
    dsn: DsnOption = None,
    digest: DigestOption = None,
    source: Annotated[str | None, typer.Option(
        "--source", metavar="SOURCE",
        help="The export (s3://bucket/prefix/ or a directory), re-hashed as `verify` does, as the outside anchor "
             "when no digest was saved.")] = None,
    ledger: LedgerOption = None,
    strict: StrictOption = False,
    data_dir: DataDirOption = None,
    iam_auth: IamAuthOption = False,
    endpoint_url: EndpointOption = None,
    region: RegionOption = None,
    workers: WorkersOption = None,
    report: ReportOption = None,
    dask_scheduler: DaskSchedulerOption = None,
) -> None:
    """Re-prove every migrated ledger from the PostgreSQL rows, anchored by a digest (or the export) kept outside."""
    from ..dask_executor import ClusterError
    from ..executor import local_executor
    from ..pg.checker import ledgers_in, run_check
    from ..pg.ledgers import format_ledgers
    from ..sources import SourceError

    digests = load_digests(digest)
    anchor = None
    if source is not None:
        from ..pg.anchor import SourceAnchor

        spec = source_spec(source, endpoint_url, region)
        # workers first, the connection after: a forked worker must not hold a copy of the session
        anchor = SourceAnchor(spec, [], workers, executor=start_executor(workers, dask_scheduler, [spec]))
    elif dask_scheduler and given_on_command_line(ctx, "dask_scheduler"):  # $QLDB_MIGRATE_DASK_SCHEDULER alone: unused
        die("--dask-scheduler runs the re-hashing of an export: it goes with --source", exitcodes.USAGE)
    target = open_target(dsn, data_dir, iam_auth, region)
    # local workers re-prove the history rows in parallel, each on its own connection in the check's snapshot
    rows_executor = anchor.executor if anchor is not None and not getattr(anchor.executor, "remote", False) \
        else local_executor(None if dask_scheduler else workers)
    conn = connect_or_die(target)
    with conn:
        if conn.execute("SELECT to_regclass('qldb.block')").fetchone()[0] is None:
            die(f"{target.description} holds no migrated ledger (no qldb.block table)", exitcodes.CONTENT)
        named = None if ledger is None else len(ledgers_in(conn, ledger))
        if named is not None and named != 1:
            known = format_ledgers([(x.ledger_name, x.strand_id, x.schema, x.state) for x in ledgers_in(conn)])
            what = "no such ledger" if not named else f"{named} ledgers have that name (give the strand id or schema)"
            die(f"--ledger {ledger}: {what} in {target.description}; it holds: {known}", exitcodes.USAGE)
        try:
            checked = with_progress("checking", lambda progress: run_check(
                conn, digests, ledger, anchor, progress, rows_executor, target.conninfo), unit="rows")
        except (SourceError, ClusterError) as exc:
            die(str(exc), exc.exit_code)
        finally:
            rows_executor.close()
            if anchor is not None:
                anchor.executor.close()
    data = print_check(checked, strict)
    word = data["verdict"].upper()
    code = exitcodes.CONTENT if word == "FAILED" or (strict and word != "VERIFIED") else exitcodes.OK
    data["exitCode"] = code
    if report is not None:
        write_report(report, data)
    raise typer.Exit(code)
