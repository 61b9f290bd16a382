"""Staged per-object progress of ``migrate`` (``qldb_migrate.pg.staging``): what a rerun after an interruption reuses.

One row per source object a run verified: its identity (SHA-256 of the
bytes, size, ETag, its place in the plan, the producing code) and the
verification result with its COPY-ready rows, signed with a key kept outside
the database.  Nothing here is published: the ledger tables are written only
by the run's single publishing transaction, which also deletes the schema's
staged rows.  The result column is stored uncompressed (EXTERNAL): it is
mostly already-encoded tuples, written once and read at most once.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE qldb.stage_object (
            pg_schema   text    NOT NULL,
            object_key  text    NOT NULL,
            place       text    NOT NULL,
            sha256      text    NOT NULL,
            size        bigint  NOT NULL,
            etag        text,
            producer    text    NOT NULL,
            blocks      integer NOT NULL,
            result      bytea   NOT NULL,
            mac         bytea   NOT NULL,
            staged_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
            PRIMARY KEY (pg_schema, object_key)
        );
        ALTER TABLE qldb.stage_object ALTER COLUMN result SET STORAGE EXTERNAL;
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE qldb.stage_object")
