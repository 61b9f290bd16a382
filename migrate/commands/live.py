"""The live ledger's commands: ``cutover``, ``seal``, ``digest``, ``get-revision`` and ``get-block``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from .. import exitcodes
from ..report import write_report, write_success_report
from .common import (
    DataDirOption,
    DsnOption,
    IamAuthOption,
    LedgerOption,
    RegionOption,
    ReportOption,
    app,
    connect_or_die,
    die,
    err,
    load_digests,
    on_interrupt,
    open_target,
    out,
)
from .load import prepare_database

OutOption = Annotated[Path | None, typer.Option(
    "--out", metavar="FILE", dir_okay=False, help="Write the JSON here instead of standard output.")]
DigestFileOption = Annotated[Path, typer.Option(
    "--digest", metavar="FILE", exists=True, dir_okay=False,
    help="The digest (GetDigest JSON, e.g. `qldb-migrate digest` output) the proof must reach.")]


def _strand(conn: Any, ledger: str | None) -> str:
    """The live ledger these commands serve: the one named, else the only live one (else the only one)."""
    from ..pg.ledgers import LedgerNotFound, describe_ledgers, find_ledger

    try:
        if ledger is None:
            rows = conn.execute("SELECT strand_id, state FROM qldb.ledger").fetchall()
            live = [strand for strand, state in rows if state == "live"]
            if len(live) == 1:
                return live[0]
            if len(rows) != 1:
                die(f"the database holds {len(rows)} ledgers ({len(live)} live): name one with --ledger "
                    f"(its name, strand id or schema): {describe_ledgers(conn)}", exitcodes.USAGE)
            return rows[0][0]
        return find_ledger(conn, ledger)[0]
    except LedgerNotFound as exc:
        die(str(exc), exitcodes.USAGE)


def _emit(data: dict[str, Any], path: Path | None) -> None:
    text = json.dumps(data, indent=2) + "\n"
    if path is None:
        out.print(text, end="", markup=False)
    else:
        write_report(path, data)


@app.command("cutover")
def cutover_cmd(
    dsn: DsnOption = None,
    ledger: LedgerOption = None,
    app_role: Annotated[str | None, typer.Option(
        "--app-role", metavar="ROLE", help="Grant this existing role what an application needs: write the current "
                                           "tables, read everything, nothing else.")] = None,
    data_dir: DataDirOption = None,
    iam_auth: IamAuthOption = False,
    region: RegionOption = None,
    report: ReportOption = None,
) -> None:
    """After the last migrate of a ledger: its tables become a live ledger that continues QLDB's hash chain."""
    from ..live.cutover import CutoverRefused, cutover
    from ..pg.ledgers import LedgerNotFound
    from ..pg.target import MigrationRefused

    target = open_target(dsn, data_dir, iam_auth, region)
    prepare_database(target)
    with connect_or_die(target) as conn:
        try:
            result = cutover(conn, ledger, app_role)
        except (MigrationRefused, LedgerNotFound) as exc:
            die(str(exc), getattr(exc, "exit_code", exitcodes.USAGE))
        except CutoverRefused as exc:
            die(str(exc), exitcodes.CONTENT)
    out.print(f"LIVE: ledger {result.ledger_name or result.strand_id} (strand {result.strand_id}): {result.tables} "
              f"tables in schema {result.schema} take plain SQL writes now; each committed transaction becomes a "
              f"block after block {result.tip} once `qldb-migrate seal` runs"
              + (f"; role {result.app_role} may write the current tables and read everything" if result.app_role
                 else ""))
    write_success_report(report, "cutover", {
        "strandId": result.strand_id, "ledgerName": result.ledger_name, "schema": result.schema,
        "tables": result.tables, "blocks": result.blocks, "tip": result.tip, "merkleNodes": result.merkle_nodes,
        "appRole": result.app_role})


@app.command("seal")
def seal_cmd(
    dsn: DsnOption = None,
    ledger: LedgerOption = None,
    every: Annotated[float | None, typer.Option(
        "--every", metavar="SECONDS", min=0.01,
        help="Keep sealing, every SECONDS, until interrupted (default: seal what is committed and exit).")] = None,
    digest: Annotated[list[Path] | None, typer.Option(
        "--digest", metavar="FILE", exists=True, dir_okay=False,
        help="Digests saved outside the database: sealing is refused if the stored chain no longer holds their "
             "tips (restored from a backup). Repeatable.")] = None,
    state_dir: Annotated[Path | None, typer.Option(
        "--state-dir", metavar="DIR", file_okay=False,
        help="Where the sealer remembers the last block it sealed (default: the user data directory).")] = None,
    accept_restore: Annotated[bool, typer.Option(
        "--accept-restore", metavar="",
        help="The chain was restored behind what was sealed before and those blocks are lost for good: continue "
             "from the stored tip (see the README before using it).")] = False,
    data_dir: DataDirOption = None,
    iam_auth: IamAuthOption = False,
    region: RegionOption = None,
    report: ReportOption = None,
) -> None:
    """Close committed writes into blocks, one per transaction, continuing the chain (one sealer per ledger)."""
    from ..live.sealer import (
        ROUND_LIMIT,
        SealRefused,
        SealStats,
        accepted_fork,
        check_not_behind,
        load_state,
        next_limit,
        save_state,
        seal_lock_key,
        seal_once,
        state_path,
    )
    from ..pg.target import default_data_dir, schema_current

    on_interrupt("stopping: every round committed so far is sealed; the round in progress, if any, rolls back "
                 "and its writes wait for the next sealer")
    saved = load_digests(digest)
    target = open_target(dsn, data_dir, iam_auth, region)
    conn = connect_or_die(target)
    if not schema_current(conn):  # installed over an older version: bring the schema up first, as migrate does
        prepare_database(target)
    conn.autocommit = False
    strand = _strand(conn, ledger)
    state_file = state_path(state_dir or default_data_dir().parent, strand)
    total = SealStats()
    started = time.perf_counter()
    fork: dict[str, Any] | None = None
    with conn:
        if not conn.execute("SELECT pg_try_advisory_lock(%s, %s)", seal_lock_key(strand)).fetchone()[0]:
            die(f"another sealer holds ledger {strand}: one sealer at a time", exitcodes.UNREACHABLE)
        conn.commit()
        try:
            try:  # what digests saved outside have seen: --accept-restore never gives that up
                check_not_behind(conn, strand, [(d.tip.sequence_no, b"", f"digest {d.source}") for d in saved
                                                if d.tip.strand_id == strand])
            except SealRefused as exc:
                if accept_restore:
                    raise SealRefused(
                        f"{exc} --accept-restore gives up only what the sealer's own state file has seen; a digest "
                        "saved outside that has seen the lost blocks is the evidence of them: keep it, and leave it "
                        "out of --digest (here and in check) to go on from the stored tip.", exc.exit_code) from None
                raise
            state = load_state(state_file)
            if state is not None and not accept_restore:
                try:
                    check_not_behind(conn, strand, [(state[0], state[1], f"the sealer's state file {state_file}")])
                except SealRefused as exc:
                    raise SealRefused(
                        f"{exc} If this database is not a restore but another copy of the ledger (a rehearsal or "
                        "staging database), give its sealer a --state-dir of its own.", exc.exit_code) from None
            elif state is not None:
                fork = accepted_fork(conn, strand, state)
                err.print(f"warning: --accept-restore: the sealer had sealed through block {state[0]}; the chain goes "
                          f"on from the database's tip, block {fork['storedTip']}, and blocks it no longer holds are "
                          f"not in it (recorded under 'forks' in {state_file})")
            conn.commit()
            if fork is not None:
                save_state(state_file, conn, strand, fork)
            first_round = True
            stats = None
            while True:
                stats = seal_once(conn, strand, next_limit(stats))
                total.add(stats)
                if stats.blocks or first_round:  # the stored tip is this sealer's to move: unchanged otherwise
                    save_state(state_file, conn, strand)
                first_round = False
                if every is None and stats.blocks == 0:
                    break
                if every is not None:
                    if stats.blocks:
                        lag = "-" if stats.lag_seconds is None else f"{stats.lag_seconds:.2f}s"
                        err.print(f"sealed {stats.blocks} blocks ({stats.revisions} revisions) through block "
                                  f"{stats.tip}; {stats.pending} committed revisions left for the next round, "
                                  f"oldest {lag}")
                    # a round every SECONDS (at once if the last one was full, or took longer): rounds of a few
                    # transactions one after the other would spend the sealer's CPU, taken from the writers, on
                    # per-round work
                    time.sleep(0 if stats.blocks >= ROUND_LIMIT else max(0.0, every - stats.seconds))
        except SealRefused as exc:
            die(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            pass
    seconds = time.perf_counter() - started
    rate = total.revisions / seconds if seconds > 0 else 0.0
    out.print(f"SEALED: {total.blocks} blocks, {total.revisions} revisions ({rate:,.0f} revisions/s); the chain ends "
              f"at block {total.tip}")
    write_success_report(report, "seal", {
        "strandId": strand, "blocks": total.blocks, "revisions": total.revisions, "tip": total.tip,
        "acceptedRestore": fork, "stateFile": str(state_file), "seconds": round(seconds, 3),
        "revisionsPerSecond": round(rate, 1)})


@app.command("digest")
def digest_cmd(
    dsn: DsnOption = None,
    ledger: LedgerOption = None,
    out_path: Annotated[str | None, typer.Option(
        "--out", metavar="FILE|s3://BUCKET/KEY",
        help="Write the digest here (keep it outside the database; on S3 with --retain-days, under Object Lock).")]
    = None,
    retain_days: Annotated[int | None, typer.Option(
        "--retain-days", metavar="N", min=1, help="With --out s3://…: an Object Lock retention (COMPLIANCE mode) of "
                                                  "N days; the bucket must have Object Lock enabled.")] = None,
    endpoint_url: Annotated[str | None, typer.Option("--endpoint-url", metavar="URL",
                                                     help="S3-compatible endpoint for --out s3://…")] = None,
    data_dir: DataDirOption = None,
    iam_auth: IamAuthOption = False,
    region: RegionOption = None,
    report: ReportOption = None,
) -> None:
    """A GetDigest-shaped digest of the sealed chain (the Merkle root over every block from 0), to keep outside."""
    from ..live.serve import ServeError, digest_json, make_digest

    target = open_target(dsn, data_dir, iam_auth, region)
    with connect_or_die(target) as conn:
        strand = _strand(conn, ledger)
        try:
            digest, tip = make_digest(conn, strand)
        except ServeError as exc:
            die(str(exc), exc.exit_code)
    data = digest_json(strand, tip, digest)
    if out_path is not None and out_path.startswith("s3://"):
        _put_s3(out_path, data, retain_days, endpoint_url, region)
        err.print(f"digest of blocks 0..{tip} written to {out_path}")
    else:
        if retain_days is not None:
            die("--retain-days needs --out s3://…", exitcodes.USAGE)
        _emit(data, None if out_path is None else Path(out_path))
        if out_path is not None:
            err.print(f"digest of blocks 0..{tip} written to {out_path}: keep it outside the database")
    write_success_report(report, "digest", {"strandId": strand, "tip": tip, "digest": data["Digest"],
                                            "out": out_path, "retainDays": retain_days})


def _put_s3(url: str, data: dict[str, Any], retain_days: int | None, endpoint_url: str | None,
            region: str | None) -> None:
    import datetime as _dt

    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, _, key = url[len("s3://"):].partition("/")
    if not bucket or not key:
        die(f"{url}: give s3://bucket/key", exitcodes.USAGE)
    extra: dict[str, Any] = {}
    if retain_days is not None:
        extra = {"ObjectLockMode": "COMPLIANCE",
                 "ObjectLockRetainUntilDate": _dt.datetime.now(_dt.UTC) + _dt.timedelta(days=retain_days)}
    try:
        boto3.client("s3", endpoint_url=endpoint_url, region_name=region).put_object(
            Bucket=bucket, Key=key, Body=(json.dumps(data, indent=2) + "\n").encode(), ContentType="application/json",
            **extra)
    except (ClientError, BotoCoreError) as exc:
        die(f"{url}: could not write the digest ({exc})", exitcodes.UNREACHABLE)


def _proof_command(dsn: str | None, data_dir: Path | None, iam_auth: bool, region: str | None, digest: Path,
                   out_path: Path | None, make: Any, report: Path | None, command: str, asked: dict[str, Any]
                   ) -> None:
    from ..live.serve import ServeError

    (saved,) = load_digests([digest])
    target = open_target(dsn, data_dir, iam_auth, region)
    with connect_or_die(target) as conn:
        try:
            data = make(conn, saved)
        except ServeError as exc:
            die(str(exc), exc.exit_code)
    _emit(data, out_path)
    write_success_report(report, command, {
        **asked, "strandId": saved.tip.strand_id, "digest": str(digest), "digestTip": saved.tip.sequence_no,
        "out": None if out_path is None else str(out_path), "proofHashes": data["Proof"]["IonText"].count("{{")})


@app.command("get-revision")
def get_revision_cmd(
    table: Annotated[str, typer.Option("--table", metavar="T", help="The table as QLDB names it (e.g. Accounts), "
                                                                   "its table id, or schema.table.")],
    document_id: Annotated[str, typer.Option("--document-id", metavar="ID", help="The document's QLDB id.")],
    version: Annotated[int, typer.Option("--version", metavar="N", min=0, help="The revision's version.")],
    digest: DigestFileOption,
    dsn: DsnOption = None,
    out_path: OutOption = None,
    data_dir: DataDirOption = None,
    iam_auth: IamAuthOption = False,
    region: RegionOption = None,
    report: ReportOption = None,
) -> None:
    """GetRevision from the database: the revision (either era) and its proof to the digest, for verify-proof."""
    from ..live.serve import get_revision

    _proof_command(dsn, data_dir, iam_auth, region, digest, out_path,
                   lambda conn, saved: get_revision(conn, saved, table, document_id, version), report,
                   "get-revision", {"table": table, "documentId": document_id, "version": version})


@app.command("get-block")
def get_block_cmd(
    sequence_no: Annotated[int, typer.Option("--sequence-no", metavar="N", min=0, help="The block's sequence number.")],
    digest: DigestFileOption,
    dsn: DsnOption = None,
    out_path: OutOption = None,
    data_dir: DataDirOption = None,
    iam_auth: IamAuthOption = False,
    region: RegionOption = None,
    report: ReportOption = None,
) -> None:
    """GetBlock from the database: the block (either era) and its proof to the digest, for verify-proof."""
    from ..live.serve import get_block

    _proof_command(dsn, data_dir, iam_auth, region, digest, out_path,
                   lambda conn, saved: get_block(conn, saved, sequence_no), report,
                   "get-block", {"sequenceNo": sequence_no})
