"""Alembic environment: the ``qldb`` schema, with Alembic's version table kept in it.

Since PostgreSQL 15 an ordinary role may not create objects in ``public``,
so nothing here touches ``public``.  The connection comes from the caller
(``qldb_migrate.pg.schema.upgrade``) or from ``QLDB_MIGRATE_DSN``.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine, text

VERSION_SCHEMA = "qldb"


def _url() -> str:
    dsn = os.environ.get("QLDB_MIGRATE_DSN")
    if not dsn:
        raise SystemExit("set QLDB_MIGRATE_DSN (or run `qldb-migrate migrate`, which runs this upgrade itself)")
    return dsn.replace("postgresql://", "postgresql+psycopg://", 1)


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        engine = create_engine(_url())
        with engine.begin() as conn:
            _run(conn)
        return
    _run(connection)


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {VERSION_SCHEMA}"))
    context.configure(connection=connection, version_table_schema=VERSION_SCHEMA, transactional_ddl=True)
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
