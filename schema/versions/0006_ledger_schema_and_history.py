"""What the application and the auditor had in QLDB: table status, DDL state, ``qldb.history()``, committed views.

* ``qldb.ledger.ddl_state``: the ledger's tables and indexes as its journal's
  DDL made them (``qldb_migrate.ddlstate.LedgerSchema`` as JSON), so a later
  ``migrate`` of the same ledger continues from where the last one stopped.
* ``qldb.ddl_finding``: what reading the DDL could not decide or found
  contradictory (an unparseable statement, an index whose drop cannot be told
  apart, ...), block by block: reported, never guessed.
* ``qldb.ledger_table.status`` (``active`` / ``dropped``), ``status_block``
  (``{strandId, sequenceNo}`` of the CREATE / DROP / UNDROP TABLE that set it;
  NULL when that statement is not in the blocks migrated) and ``status_time``
  (that block's timestamp).  ``committed_name``: the table's committed view.
* ``<table>_committed`` views, QLDB's committed view: ``"blockAddress"``,
  ``hash``, ``data``, ``metadata`` ``{id, version, txTime, txId}``; made for
  every table, migrated or created after cut-over (a trigger on
  ``qldb.ledger_table``), with an index on each history table's ``tx_time``
  (``document_id, version`` is its primary key) for history queries.
* ``qldb.history(table_name, start_time, end_time)``: QLDB's ``history()``
  (see the function's comment).

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        r"""
        ALTER TABLE qldb.ledger ADD COLUMN ddl_state jsonb;

        ALTER TABLE qldb.ledger_table
            ADD COLUMN status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'dropped')),
            ADD COLUMN status_block jsonb,
            ADD COLUMN status_time timestamptz,
            ADD COLUMN committed_name text;

        CREATE TABLE qldb.ddl_finding (
            strand_id    text    NOT NULL,
            sequence_no  bigint  NOT NULL,
            statement    integer,              -- index in transactionInfo.statements; NULL: from documents
            code         text    NOT NULL,
            message      text    NOT NULL,
            run_id       bigint,
            PRIMARY KEY (strand_id, sequence_no, code, message)
        );

        -- The committed view and the history index of one table pair; returns the view's name (a free one).
        CREATE FUNCTION qldb.add_committed_view(p_strand text, p_table_id text, p_schema text, p_current text,
                                                p_history text) RETURNS text
        LANGUAGE plpgsql AS $$
        DECLARE
            base text := left(p_current, 53) || '_committed';
            v_name text := base;
            n int := 1;
            v_role text;
        BEGIN
            WHILE EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace
                          WHERE s.nspname = p_schema AND c.relname = v_name) LOOP
                n := n + 1;
                v_name := left(p_current, 50) || '_committed_' || n;
            END LOOP;
            -- revisions written after cut-over get their block and hash from the sealer (qldb.sealed_revision);
            -- not sealed yet: "blockAddress" and hash are NULL
            EXECUTE format($v$
                CREATE VIEW %1$I.%2$I AS
                SELECT CASE WHEN coalesce(h.block_sequence, s.block_sequence) IS NOT NULL THEN
                            jsonb_build_object('strandId', %5$L::text,
                                               'sequenceNo', coalesce(h.block_sequence, s.block_sequence))
                       END AS "blockAddress",
                       coalesce(h.revision_hash, s.revision_hash) AS hash,
                       c.data,
                       jsonb_build_object('id', c.document_id, 'version', c.version, 'txTime', h.tx_time_ion,
                                          'txId', h.tx_id) AS metadata
                FROM %1$I.%3$I c
                JOIN %1$I.%4$I h ON h.document_id = c.document_id AND h.version = c.version
                LEFT JOIN qldb.sealed_revision s ON s.strand_id = %5$L AND s.table_id = %6$L
                     AND s.document_id = c.document_id AND s.version = c.version
            $v$, p_schema, v_name, p_current, p_history, p_strand, p_table_id);
            EXECUTE format('COMMENT ON VIEW %I.%I IS %L', p_schema, v_name,
                           'QLDB''s committed view of ' || p_schema || '.' || p_current || ' (qldb-migrate)');
            EXECUTE format('CREATE INDEX ON %I.%I (tx_time)', p_schema, p_history);
            -- a table created after cut-over: the application reads its view as it reads the table
            SELECT app_role INTO v_role FROM qldb.ledger WHERE strand_id = p_strand;
            IF v_role IS NOT NULL THEN
                EXECUTE format('GRANT SELECT ON %I.%I TO %I', p_schema, v_name, v_role);
            END IF;
            RETURN v_name;
        END $$;

        CREATE FUNCTION qldb.ledger_table_added() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.committed_name IS NULL THEN
                NEW.committed_name := qldb.add_committed_view(NEW.strand_id, NEW.table_id, NEW.pg_schema,
                                                              NEW.current_name, NEW.history_name);
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER qldb_committed_view BEFORE INSERT ON qldb.ledger_table
            FOR EACH ROW EXECUTE FUNCTION qldb.ledger_table_added();

        -- tables migrated before this version
        UPDATE qldb.ledger_table SET committed_name = qldb.add_committed_view(strand_id, table_id, pg_schema,
                                                                             current_name, history_name)
         WHERE committed_name IS NULL;

        -- The ledger table a QLDB-style name designates (history(), and whoever needs the same look-up).
        CREATE FUNCTION qldb.find_table(p_table text) RETURNS qldb.ledger_table LANGUAGE plpgsql STABLE AS $$
        DECLARE
            t qldb.ledger_table;
            n int;
            ids text;
        BEGIN
            SELECT count(*), string_agg(lt.table_id || ' (' || lt.status || ', ' || lt.pg_schema || '.'
                                        || lt.current_name || ')', ', ' ORDER BY lt.table_id)
              INTO n, ids
              FROM qldb.ledger_table lt JOIN qldb.ledger l ON l.strand_id = lt.strand_id
             WHERE p_table IN (lt.table_id, lt.table_name, lt.current_name,
                               lt.pg_schema || '.' || lt.table_name, lt.pg_schema || '.' || lt.current_name,
                               l.ledger_name || '.' || lt.table_name, l.strand_id || '.' || lt.table_name);
            IF n = 0 THEN
                RAISE EXCEPTION 'qldb-migrate: no ledger table is named %', quote_literal(p_table)
                    USING ERRCODE = '42P01',
                          HINT = 'give the QLDB table name, its PostgreSQL name, its table id, or schema.name';
            ELSIF n > 1 THEN
                RAISE EXCEPTION 'qldb-migrate: % is ambiguous: % tables: %', quote_literal(p_table), n, ids
                    USING ERRCODE = '42P09',
                          HINT = 'a name reused after DROP TABLE is another table: give its table id; several '
                                 'ledgers: qualify it as schema.name or ledger.name';
            END IF;
            SELECT lt.* INTO t
              FROM qldb.ledger_table lt JOIN qldb.ledger l ON l.strand_id = lt.strand_id
             WHERE p_table IN (lt.table_id, lt.table_name, lt.current_name,
                               lt.pg_schema || '.' || lt.table_name, lt.pg_schema || '.' || lt.current_name,
                               l.ledger_name || '.' || lt.table_name, l.strand_id || '.' || lt.table_name);
            RETURN t;
        END $$;

        CREATE FUNCTION qldb.history(table_name text, start_time timestamptz DEFAULT NULL,
                                     end_time timestamptz DEFAULT NULL)
        RETURNS TABLE (block_address jsonb, hash bytea, data jsonb, metadata jsonb)
        LANGUAGE plpgsql STABLE AS $$
        DECLARE
            t qldb.ledger_table := qldb.find_table(table_name);
        BEGIN
            IF start_time IS NOT NULL AND end_time IS NOT NULL AND start_time > end_time THEN
                RAISE EXCEPTION 'qldb-migrate: history start_time % is after end_time %', start_time, end_time
                    USING ERRCODE = '22023';
            END IF;
            -- A revision is active from its txTime until the next revision of the same document (versions
            -- follow each other: n, n + 1); it is returned when that span meets [start_time, end_time].
            RETURN QUERY EXECUTE format($q$
                SELECT CASE WHEN coalesce(h.block_sequence, s.block_sequence) IS NOT NULL THEN
                            jsonb_build_object('strandId', $1, 'sequenceNo', coalesce(h.block_sequence,
                                                                                      s.block_sequence))
                       END,
                       coalesce(h.revision_hash, s.revision_hash),
                       h.data,
                       jsonb_build_object('id', h.document_id, 'version', h.version, 'txTime', h.tx_time_ion,
                                          'txId', h.tx_id)
                FROM %1$I.%2$I h
                LEFT JOIN %1$I.%2$I nx ON nx.document_id = h.document_id AND nx.version = h.version + 1
                LEFT JOIN qldb.sealed_revision s ON s.strand_id = $1 AND s.table_id = $2
                     AND s.document_id = h.document_id AND s.version = h.version
                WHERE ($3 IS NULL OR nx.tx_time IS NULL OR nx.tx_time > $3)
                  AND ($4 IS NULL OR h.tx_time <= $4)
                ORDER BY h.document_id, h.version
            $q$, t.pg_schema, t.history_name) USING t.strand_id, t.table_id, start_time, end_time;
        END $$;

        COMMENT ON FUNCTION qldb.history(text, timestamptz, timestamptz) IS
            'QLDB''s history(): the revisions active in [start_time, end_time] (both inclusive; NULL: unbounded), '
            'a revision being active from its txTime until the next revision of its document (a delete revision '
            'from its txTime on); table_name: the QLDB name, the PostgreSQL name, the table id, or schema.name / '
            'ledger.name; a name reused after a drop is ambiguous (give the id).';
        """
    )


def downgrade() -> None:
    op.execute(
        r"""
        DROP FUNCTION qldb.history(text, timestamptz, timestamptz);
        DROP FUNCTION qldb.find_table(text);
        DO $$
        DECLARE r record;
        BEGIN
            FOR r IN SELECT pg_schema, committed_name FROM qldb.ledger_table WHERE committed_name IS NOT NULL LOOP
                EXECUTE format('DROP VIEW IF EXISTS %I.%I', r.pg_schema, r.committed_name);
            END LOOP;
        END $$;
        DROP TRIGGER qldb_committed_view ON qldb.ledger_table;
        DROP FUNCTION qldb.ledger_table_added(), qldb.add_committed_view(text, text, text, text, text);
        DROP TABLE qldb.ddl_finding;
        ALTER TABLE qldb.ledger_table DROP COLUMN status, DROP COLUMN status_block, DROP COLUMN status_time,
            DROP COLUMN committed_name;
        ALTER TABLE qldb.ledger DROP COLUMN ddl_state;
        """
    )
