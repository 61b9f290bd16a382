"""Several ledgers per database, recorded reservations, real run start times.

* ``qldb.ledger``: one row per ledger (strand), the schema its tables live in
  (one ledger per schema) and its state (``migrated``; ``live`` after cut-over).
* ``qldb.reservation``: what a run accepted with an opt-out, revision by
  revision (an unexplained redaction, a deleted document's hash not recomputed,
  JSON data not re-hashed).  ``check`` reports each as a reservation instead of
  an error; anyone who can write could add rows here too, which is why a
  reservation is never called verified.
* ``migration_run.started_at`` is the wall clock at the start (``now()`` is
  the transaction's start, and a run's start and end were one transaction).

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE qldb.ledger (
            strand_id    text PRIMARY KEY,
            ledger_name  text,
            pg_schema    text NOT NULL UNIQUE,
            state        text NOT NULL DEFAULT 'migrated' CHECK (state IN ('migrated', 'live')),
            created_at   timestamptz NOT NULL DEFAULT clock_timestamp()
        );
        INSERT INTO qldb.ledger (strand_id, pg_schema)
            SELECT DISTINCT ON (strand_id) strand_id, pg_schema FROM qldb.ledger_table ORDER BY strand_id, pg_schema
            ON CONFLICT DO NOTHING;

        CREATE TABLE qldb.reservation (
            strand_id    text   NOT NULL,
            table_id     text   NOT NULL,
            document_id  text   NOT NULL,
            version      integer NOT NULL,           -- -1: not known (a stream revision whose details never came)
            kind         text   NOT NULL CHECK (kind IN ('unexplained-redaction', 'deleted-hash-not-recomputed',
                                                         'json-not-rehashed', 'not-present', 'ambiguous-delete')),
            block_sequence bigint,
            run_id       bigint NOT NULL,
            PRIMARY KEY (strand_id, table_id, document_id, version, kind)
        );

        CREATE INDEX block_redactions ON qldb.block (strand_id, sequence_no) WHERE redaction_info_ion IS NOT NULL;

        ALTER TABLE qldb.migration_run ALTER COLUMN started_at SET DEFAULT clock_timestamp();
        """
    )


def downgrade() -> None:
    op.execute(
        "ALTER TABLE qldb.migration_run ALTER COLUMN started_at SET DEFAULT now(); "
        "DROP INDEX qldb.block_redactions; DROP TABLE qldb.reservation, qldb.ledger"
    )
