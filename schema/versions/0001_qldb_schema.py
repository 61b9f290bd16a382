"""The qldb schema: ledgers' blocks, digests, runs and table mapping.

Revision ID: 0001
Revises:
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE SCHEMA IF NOT EXISTS qldb;

        -- One row per journal block: everything needed to re-prove the chain
        -- and the digests from the database alone (qldb.verify_chain and
        -- `qldb-migrate check`).  Keyed by strand, so ledgers share a database.
        CREATE TABLE qldb.block (
            strand_id            text    NOT NULL,
            sequence_no          bigint  NOT NULL,
            block_hash           bytea   NOT NULL,
            entries_hash         bytea   NOT NULL,
            previous_block_hash  bytea   NOT NULL,
            entries_hash_list    bytea[] NOT NULL,
            revision_hashes      bytea[] NOT NULL,   -- in block order, system ones included
            revision_documents   text[]  NOT NULL,   -- document id per revision, NULL for system ones
            transaction_id       text,
            block_timestamp      timestamptz,
            block_timestamp_ion  text,               -- exact Ion text (precision kept)
            transaction_info     jsonb,
            transaction_info_ion bytea,
            redaction_info_ion   bytea,
            source_object        text    NOT NULL,
            run_id               bigint  NOT NULL,
            PRIMARY KEY (strand_id, sequence_no)
        );

        CREATE TABLE qldb.digest (
            strand_id        text   NOT NULL,
            tip_sequence_no  bigint NOT NULL,
            digest           bytea  NOT NULL,
            source           text   NOT NULL,
            reached_by       text   NOT NULL,
            proof            bytea[],
            run_id           bigint NOT NULL,
            PRIMARY KEY (strand_id, tip_sequence_no, digest)
        );

        CREATE TABLE qldb.migration_run (
            run_id       bigserial PRIMARY KEY,
            strand_id    text,
            source       text        NOT NULL,
            started_at   timestamptz NOT NULL DEFAULT now(),
            finished_at  timestamptz,
            verdict      text        NOT NULL DEFAULT 'running',
            opt_outs     text[]      NOT NULL DEFAULT '{}',
            states       text[]      NOT NULL DEFAULT '{}',
            counts       jsonb       NOT NULL DEFAULT '{}',
            report       jsonb
        );

        -- QLDB table id and name <-> PostgreSQL names.  A QLDB name reused after
        -- a drop gets another table id, and so its own PostgreSQL tables.
        CREATE TABLE qldb.ledger_table (
            strand_id     text NOT NULL,
            table_id      text NOT NULL,
            table_name    text NOT NULL,
            pg_schema     text NOT NULL,
            current_name  text NOT NULL,
            history_name  text NOT NULL,
            PRIMARY KEY (strand_id, table_id),
            UNIQUE (pg_schema, current_name),
            UNIQUE (pg_schema, history_name)
        );
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE qldb.ledger_table, qldb.migration_run, qldb.digest, qldb.block")
