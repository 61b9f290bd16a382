"""Rows the cluster's workers COPY into the target themselves (``qldb_migrate.pg.workerload``), before the publish.

With ``--dask-scheduler``, a worker that verified an object COPYs the
object's ``qldb.block`` and history rows here, in one committed transaction
per object, so that the rows go from the workers straight to the database
and the client never forwards them.  Nothing here is published: the run's
single publishing transaction copies the rows of the blocks it accepted into
``qldb.block`` and the history tables (``INSERT … SELECT``, inside the
database) and deletes the schema's staged rows, as it deletes
``qldb.stage_object``.

The staging columns are those of the published tables; which run schema,
object and QLDB table a row belongs to comes from settings of the worker's
transaction (``qldb_migrate.stage_*``), read by the column defaults, because
binary COPY cannot add constants to the tuples the workers already encoded.
An unset setting is an error, never a row without its owner.

Every attempt at staging an object writes under a token of its own, which
the object's (signed) result carries: the publish reads only the rows of the
attempt whose result it holds.  A worker still running a task of a killed
run, or a first attempt Dask gave up on, may commit rows later; they never
replace the rows a result names, and go with the next publish or
``--restart``.

Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE qldb.stage_block (
            pg_schema             text   NOT NULL DEFAULT current_setting('qldb_migrate.stage_schema'),
            object_key            text   NOT NULL DEFAULT current_setting('qldb_migrate.stage_object'),
            token                 text   NOT NULL DEFAULT current_setting('qldb_migrate.stage_token'),
            strand_id             text,
            sequence_no           bigint,
            block_hash            bytea,
            entries_hash          bytea,
            previous_block_hash   bytea,
            entries_hash_list     bytea[],
            revision_hashes       bytea[],
            revision_documents    text[],
            transaction_id        text,
            block_timestamp       timestamptz,
            block_timestamp_ion   text,
            transaction_info      jsonb,
            transaction_info_ion  bytea,
            redaction_info_ion    bytea,
            source_object         text,
            run_id                bigint
        );
        CREATE INDEX stage_block_object ON qldb.stage_block (pg_schema, object_key, token, sequence_no);
        CREATE TABLE qldb.stage_history (
            pg_schema       text    NOT NULL DEFAULT current_setting('qldb_migrate.stage_schema'),
            object_key      text    NOT NULL DEFAULT current_setting('qldb_migrate.stage_object'),
            token           text    NOT NULL DEFAULT current_setting('qldb_migrate.stage_token'),
            table_id        text    NOT NULL DEFAULT current_setting('qldb_migrate.stage_table'),
            document_id     text,
            version         integer,
            data            jsonb,
            data_ion        bytea,
            metadata_ion    bytea,
            revision_hash   bytea,
            data_hash       bytea,
            operation       text,
            redacted        boolean,
            tx_id           text,
            tx_time         timestamptz,
            tx_time_ion     text,
            block_sequence  bigint,
            index_in_block  integer
        );
        CREATE INDEX stage_history_object ON qldb.stage_history (pg_schema, object_key, token, table_id,
                                                         block_sequence);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE qldb.stage_history; DROP TABLE qldb.stage_block")
