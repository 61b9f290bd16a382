"""The live ledger after cut-over: writes append revisions, one sealer closes them into blocks, history is append-only.

After ``qldb-migrate cutover`` the application writes plain SQL to a ledger's
current tables.  A trigger on each current table (``qldb.make_live_table``
creates it) appends the revision to ``<t>_history`` in the same transaction
and queues it in ``qldb.pending_revision``; it computes no hash, so a write
costs two small inserts more and never waits for the sealer.  The sealer
(``qldb-migrate seal``) reads the committed queue, hashes each revision as
QLDB did, closes one block per committed transaction and records what it
assigned — block, index, hashes and the exact Ion it hashed — in
``qldb.sealed_revision`` (history rows are never updated).

Append-only, enforced by the database for every role, the owner included:
history rows, and a live ledger's rows in ``qldb.block``, ``qldb.digest``,
``qldb.merkle_node`` and ``qldb.sealed_revision``, refuse UPDATE, DELETE and
TRUNCATE.  Two exceptions, each recorded: the writing transaction may reshape
its own revision before it commits (a second write to the same document in
one transaction is still one revision, as in QLDB), and
``qldb.redact_revision`` clears a sealed revision's data (never its hashes)
and queues the redaction for the chain.  The owner or a superuser can still
disable these triggers; only a digest saved outside the database exposes
what they then change.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        r"""
        ALTER TABLE qldb.ledger ADD COLUMN live_since timestamptz, ADD COLUMN app_role text;
        ALTER TABLE qldb.digest ALTER COLUMN run_id DROP NOT NULL;  -- digests `qldb-migrate digest` issued

        CREATE SEQUENCE qldb.write_seq;

        -- Revisions written and committed but not sealed yet: the sealer's queue.
        CREATE TABLE qldb.pending_revision (
            strand_id    text    NOT NULL,
            table_id     text    NOT NULL,
            document_id  text    NOT NULL,
            version      integer NOT NULL,
            write_seq    bigint  NOT NULL,
            tx_id        text    NOT NULL,
            xid          xid8    NOT NULL,
            at           timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (strand_id, table_id, document_id, version)
        );
        CREATE INDEX pending_revision_order ON qldb.pending_revision (strand_id, write_seq);

        -- Other things a transaction did that the chain records: redactions and new tables.
        CREATE TABLE qldb.pending_event (
            strand_id    text    NOT NULL,
            write_seq    bigint  NOT NULL,
            tx_id        text    NOT NULL,
            xid          xid8    NOT NULL,
            kind         text    NOT NULL CHECK (kind IN ('redaction', 'create-table')),
            table_id     text    NOT NULL,
            table_name   text,
            document_id  text,
            version      integer,
            statement    text    NOT NULL,
            at           timestamptz NOT NULL,
            PRIMARY KEY (strand_id, write_seq)
        );

        -- What the sealer assigned to each revision written after cut-over.
        CREATE TABLE qldb.sealed_revision (
            strand_id       text    NOT NULL,
            table_id        text    NOT NULL,
            document_id     text    NOT NULL,
            version         integer NOT NULL,
            block_sequence  bigint  NOT NULL,
            index_in_block  integer NOT NULL,
            revision_hash   bytea   NOT NULL,
            data_hash       bytea,
            metadata_ion    bytea   NOT NULL,
            data_ion        bytea,              -- the Ion reading of the data that was hashed (cleared by a redaction)
            PRIMARY KEY (strand_id, table_id, document_id, version)
        );

        -- Roots of the perfect subtrees of the block-hash Merkle tree (level 0: the block hashes), so a digest
        -- and a proof take O(log n) lookups however long the chain.
        CREATE TABLE qldb.merkle_node (
            strand_id  text    NOT NULL,
            level      integer NOT NULL,
            idx        bigint  NOT NULL,
            hash       bytea   NOT NULL,
            PRIMARY KEY (strand_id, level, idx)
        );

        -- 16 bytes as 22 base62 characters: the shape of QLDB's ids.
        CREATE FUNCTION qldb.base62(b bytea) RETURNS text LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
        DECLARE
            n numeric := 0;
            alphabet constant text := '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
            out text := '';
        BEGIN
            FOR i IN 0 .. 15 LOOP
                n := n * 256 + get_byte(b, i);
            END LOOP;
            FOR i IN 1 .. 22 LOOP
                out := substr(alphabet, (mod(n, 62))::int + 1, 1) || out;
                n := div(n, 62);
            END LOOP;
            RETURN out;
        END $$;

        CREATE FUNCTION qldb.new_id() RETURNS text LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
            SELECT qldb.base62(decode(replace(gen_random_uuid()::text, '-', ''), 'hex'))
        $$;

        -- The transaction's id (QLDB's txId), the same for every row it writes.  Derived from the
        -- transaction's own xid and the cluster's identifier (a restored copy is another cluster, whose
        -- xids start again), so no session can choose it or share another transaction's: the sealer
        -- groups revisions into blocks by it.
        CREATE FUNCTION qldb.tx_id() RETURNS text LANGUAGE sql VOLATILE AS $$
            SELECT qldb.base62(sha256(convert_to(
                (SELECT system_identifier FROM pg_control_system())::text || ':' || pg_current_xact_id()::text,
                'UTF8')))
        $$;

        -- txTime: the transaction's time in milliseconds, UTC (as QLDB writes it), and its exact Ion text.
        CREATE FUNCTION qldb.tx_time() RETURNS timestamptz LANGUAGE sql STABLE AS $$
            SELECT date_trunc('milliseconds', now())
        $$;
        CREATE FUNCTION qldb.ion_utc_ms(ts timestamptz) RETURNS text LANGUAGE sql IMMUTABLE STRICT AS $$
            SELECT to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24\:MI\:SS.MS"Z"')
        $$;

        CREATE FUNCTION qldb.refuse_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'qldb-migrate: % is part of a live ledger: TRUNCATE is refused (it is append-only)',
                TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME USING ERRCODE = '55000';
        END $$;

        -- Rows of a live ledger (by strand) in the shared qldb tables are append-only.
        CREATE FUNCTION qldb.live_rows_guard() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF EXISTS (SELECT 1 FROM qldb.ledger l WHERE l.strand_id = OLD.strand_id AND l.state = 'live') THEN
                RAISE EXCEPTION 'qldb-migrate: qldb.% rows of live ledger % are append-only: % refused',
                    TG_TABLE_NAME, OLD.strand_id, TG_OP USING ERRCODE = '55000';
            END IF;
            RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
        END $$;
        CREATE FUNCTION qldb.live_truncate_guard() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF EXISTS (SELECT 1 FROM qldb.ledger WHERE state = 'live') THEN
                RAISE EXCEPTION 'qldb-migrate: qldb.% holds rows of a live ledger: TRUNCATE is refused',
                    TG_TABLE_NAME USING ERRCODE = '55000';
            END IF;
            RETURN NULL;
        END $$;
        CREATE TRIGGER qldb_append_only BEFORE UPDATE OR DELETE ON qldb.block
            FOR EACH ROW EXECUTE FUNCTION qldb.live_rows_guard();
        CREATE TRIGGER qldb_append_only BEFORE UPDATE OR DELETE ON qldb.digest
            FOR EACH ROW EXECUTE FUNCTION qldb.live_rows_guard();
        CREATE TRIGGER qldb_append_only BEFORE UPDATE OR DELETE ON qldb.merkle_node
            FOR EACH ROW EXECUTE FUNCTION qldb.live_rows_guard();
        CREATE TRIGGER qldb_append_only_truncate BEFORE TRUNCATE ON qldb.block
            FOR EACH STATEMENT EXECUTE FUNCTION qldb.live_truncate_guard();
        CREATE TRIGGER qldb_append_only_truncate BEFORE TRUNCATE ON qldb.digest
            FOR EACH STATEMENT EXECUTE FUNCTION qldb.live_truncate_guard();
        CREATE TRIGGER qldb_append_only_truncate BEFORE TRUNCATE ON qldb.merkle_node
            FOR EACH STATEMENT EXECUTE FUNCTION qldb.live_truncate_guard();
        CREATE TRIGGER qldb_append_only_truncate BEFORE TRUNCATE ON qldb.sealed_revision
            FOR EACH STATEMENT EXECUTE FUNCTION qldb.live_truncate_guard();

        -- A live ledger stays live: flipping its state back would lift every guard above.
        CREATE FUNCTION qldb.ledger_guard() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF OLD.state = 'live' AND (TG_OP = 'DELETE' OR NEW.state <> 'live' OR NEW.strand_id <> OLD.strand_id
                                       OR NEW.pg_schema <> OLD.pg_schema) THEN
                RAISE EXCEPTION 'qldb-migrate: ledger % is live: its row in qldb.ledger cannot be changed that way',
                    OLD.strand_id USING ERRCODE = '55000';
            END IF;
            RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
        END $$;
        CREATE TRIGGER qldb_live_stays_live BEFORE UPDATE OR DELETE ON qldb.ledger
            FOR EACH ROW EXECUTE FUNCTION qldb.ledger_guard();

        -- sealed_revision: append-only, but for the data_ion a redaction in this very transaction clears.
        CREATE FUNCTION qldb.sealed_guard() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'UPDATE' AND NEW.data_ion IS NULL
               AND (NEW.strand_id, NEW.table_id, NEW.document_id, NEW.version, NEW.block_sequence, NEW.index_in_block,
                    NEW.revision_hash, NEW.data_hash, NEW.metadata_ion)
                   IS NOT DISTINCT FROM (OLD.strand_id, OLD.table_id, OLD.document_id, OLD.version,
                                         OLD.block_sequence, OLD.index_in_block, OLD.revision_hash, OLD.data_hash,
                                         OLD.metadata_ion)
               AND EXISTS (SELECT 1 FROM qldb.pending_event e WHERE e.kind = 'redaction'
                           AND e.strand_id = OLD.strand_id AND e.table_id = OLD.table_id
                           AND e.document_id = OLD.document_id AND e.version = OLD.version
                           AND e.xid = pg_current_xact_id()) THEN
                RETURN NEW;
            END IF;
            RAISE EXCEPTION 'qldb-migrate: qldb.sealed_revision is append-only: % refused', TG_OP
                USING ERRCODE = '55000';
        END $$;
        CREATE TRIGGER qldb_append_only BEFORE UPDATE OR DELETE ON qldb.sealed_revision
            FOR EACH ROW EXECUTE FUNCTION qldb.sealed_guard();

        -- A live ledger's history rows: append-only, with the two recorded exceptions (module docstring).
        CREATE FUNCTION qldb.history_guard() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            v_strand text := TG_ARGV[0];
            v_table text := TG_ARGV[1];
        BEGIN
            IF EXISTS (SELECT 1 FROM qldb.pending_revision p WHERE p.strand_id = v_strand AND p.table_id = v_table
                       AND p.document_id = OLD.document_id AND p.version = OLD.version
                       AND p.xid = pg_current_xact_id()) THEN
                IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
                IF NEW.document_id = OLD.document_id AND NEW.version = OLD.version THEN RETURN NEW; END IF;
            END IF;
            IF TG_OP = 'UPDATE' AND NEW.data IS NULL AND NEW.data_ion IS NULL AND NEW.redacted
               AND (NEW.document_id, NEW.version, NEW.metadata_ion, NEW.revision_hash, NEW.data_hash, NEW.operation,
                    NEW.tx_id, NEW.tx_time, NEW.tx_time_ion, NEW.block_sequence, NEW.index_in_block, NEW.write_seq)
                   IS NOT DISTINCT FROM (OLD.document_id, OLD.version, OLD.metadata_ion, OLD.revision_hash,
                                         OLD.data_hash, OLD.operation, OLD.tx_id, OLD.tx_time, OLD.tx_time_ion,
                                         OLD.block_sequence, OLD.index_in_block, OLD.write_seq)
               AND EXISTS (SELECT 1 FROM qldb.pending_event e WHERE e.kind = 'redaction' AND e.strand_id = v_strand
                           AND e.table_id = v_table AND e.document_id = OLD.document_id AND e.version = OLD.version
                           AND e.xid = pg_current_xact_id()) THEN
                RETURN NEW;
            END IF;
            RAISE EXCEPTION 'qldb-migrate: %.% is the history of a live ledger and append-only: % of document % '
                'version % refused', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP, OLD.document_id, OLD.version
                USING ERRCODE = '55000';
        END $$;

        -- The one definition of a ledger table pair (migrate and create_ledger_table both use it).
        CREATE FUNCTION qldb.create_table_pair(p_schema text, p_current text, p_history text) RETURNS void
        LANGUAGE plpgsql AS $$
        BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = p_schema) THEN
                EXECUTE format('CREATE SCHEMA %I', p_schema);
            END IF;
            EXECUTE format($ddl$CREATE TABLE %I.%I (
                document_id    text    NOT NULL,
                version        integer NOT NULL,
                data           jsonb,
                data_ion       bytea,
                metadata_ion   bytea   NOT NULL,
                revision_hash  bytea   NOT NULL,
                data_hash      bytea,
                operation      text    NOT NULL CHECK (operation IN ('insert', 'update', 'delete')),
                redacted       boolean NOT NULL DEFAULT false,
                tx_id          text,
                tx_time        timestamptz,
                tx_time_ion    text,
                block_sequence bigint  NOT NULL,
                index_in_block integer NOT NULL,
                PRIMARY KEY (document_id, version)
            )$ddl$, p_schema, p_history);
            EXECUTE format($ddl$CREATE TABLE %I.%I (
                document_id    text    PRIMARY KEY,
                version        integer NOT NULL,
                data           jsonb,
                data_ion       bytea,
                revision_hash  bytea   NOT NULL,
                tx_time        timestamptz,
                block_sequence bigint  NOT NULL
            )$ddl$, p_schema, p_current);
        END $$;

        -- What a live ledger accepts as a document: a JSON object the sealer can always encode and hash
        -- (QLDB: 128 KB of Ion binary per document, 4 MB per transaction).
        CREATE FUNCTION qldb.check_document(d jsonb) RETURNS void LANGUAGE plpgsql IMMUTABLE AS $$
        BEGIN
            IF d IS NULL OR jsonb_typeof(d) <> 'object' THEN
                RAISE EXCEPTION 'a ledger document is a JSON object, not %', coalesce(jsonb_typeof(d), 'NULL')
                    USING ERRCODE = '22023';
            END IF;
            IF pg_column_size(d) > 4194304 THEN
                RAISE EXCEPTION 'a ledger document holds at most 4 MiB (this one: % bytes)', pg_column_size(d)
                    USING ERRCODE = '54000';
            END IF;
            IF jsonb_path_exists(d, 'strict $.**{100}') THEN
                RAISE EXCEPTION 'a ledger document nests at most 99 levels deep' USING ERRCODE = '54000';
            END IF;
        END $$;

        -- Turns one ledger table pair live: its writes append revisions, its history refuses changes.
        CREATE FUNCTION qldb.make_live_table(p_strand text, p_table_id text) RETURNS void
        LANGUAGE plpgsql AS $$
        DECLARE
            t record;
            fn text := 'write_' || substr(md5(p_strand || '/' || p_table_id), 1, 24);
        BEGIN
            SELECT * INTO t FROM qldb.ledger_table WHERE strand_id = p_strand AND table_id = p_table_id;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'qldb-migrate: no table % in ledger %', p_table_id, p_strand;
            END IF;
            EXECUTE format('ALTER TABLE %I.%I ALTER COLUMN metadata_ion DROP NOT NULL, '
                           'ALTER COLUMN revision_hash DROP NOT NULL, ALTER COLUMN block_sequence DROP NOT NULL, '
                           'ALTER COLUMN index_in_block DROP NOT NULL, ADD COLUMN write_seq bigint',
                           t.pg_schema, t.history_name);
            EXECUTE format('ALTER TABLE %I.%I ALTER COLUMN revision_hash DROP NOT NULL, '
                           'ALTER COLUMN block_sequence DROP NOT NULL', t.pg_schema, t.current_name);
            -- static SQL per table (PL/pgSQL caches its plans), run as the ledger's owner: the application
            -- needs no privilege on the history or the queue
            EXECUTE format($fn$
            CREATE FUNCTION qldb.%1$I() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
            SET search_path = pg_catalog, pg_temp AS $body$
            DECLARE
                v_tx text := qldb.tx_id();
                v_time timestamptz := qldb.tx_time();
                v_seq bigint;
                v_own boolean := false;
            BEGIN
                IF TG_OP = 'INSERT' THEN
                    PERFORM qldb.check_document(NEW.data);
                    IF NEW.document_id IS NOT NULL THEN
                        RAISE EXCEPTION 'a ledger document''s id is the ledger''s to assign (as in QLDB): leave '
                            'document_id out' USING ERRCODE = '428C9';
                    END IF;
                    NEW.document_id := qldb.new_id();
                    NEW.version := 0;
                    NEW.tx_time := v_time; NEW.data_ion := NULL; NEW.revision_hash := NULL; NEW.block_sequence := NULL;
                    v_seq := nextval('qldb.write_seq');
                    INSERT INTO %2$I.%3$I (document_id, version, data, operation, redacted, tx_id, tx_time,
                                           tx_time_ion, write_seq)
                        VALUES (NEW.document_id, 0, NEW.data, 'insert', false, v_tx, v_time, qldb.ion_utc_ms(v_time),
                                v_seq);
                    INSERT INTO qldb.pending_revision VALUES (%4$L, %5$L, NEW.document_id, 0, v_seq, v_tx,
                                                              pg_current_xact_id());
                    RETURN NEW;
                END IF;
                -- a document this transaction already wrote: the one revision it commits is reshaped, not doubled
                SELECT true INTO v_own FROM qldb.pending_revision p
                 WHERE p.strand_id = %4$L AND p.table_id = %5$L AND p.document_id = OLD.document_id
                   AND p.version = OLD.version AND p.xid = pg_current_xact_id();
                v_own := coalesce(v_own, false);
                IF TG_OP = 'UPDATE' THEN
                    IF NEW.document_id IS DISTINCT FROM OLD.document_id THEN
                        RAISE EXCEPTION 'a ledger document keeps its document_id' USING ERRCODE = '22023';
                    END IF;
                    PERFORM qldb.check_document(NEW.data);
                    NEW.tx_time := v_time; NEW.data_ion := NULL; NEW.revision_hash := NULL; NEW.block_sequence := NULL;
                    IF v_own THEN
                        NEW.version := OLD.version;
                        UPDATE %2$I.%3$I SET data = NEW.data WHERE document_id = OLD.document_id
                                                               AND version = OLD.version;
                    ELSE
                        NEW.version := OLD.version + 1;
                        v_seq := nextval('qldb.write_seq');
                        INSERT INTO %2$I.%3$I (document_id, version, data, operation, redacted, tx_id, tx_time,
                                               tx_time_ion, write_seq)
                            VALUES (OLD.document_id, NEW.version, NEW.data, 'update', false, v_tx, v_time,
                                    qldb.ion_utc_ms(v_time), v_seq);
                        INSERT INTO qldb.pending_revision VALUES (%4$L, %5$L, OLD.document_id, NEW.version, v_seq,
                                                                  v_tx, pg_current_xact_id());
                    END IF;
                    RETURN NEW;
                END IF;
                IF v_own AND OLD.version = 0 THEN  -- inserted by this transaction: it never existed
                    DELETE FROM %2$I.%3$I WHERE document_id = OLD.document_id AND version = 0;
                    DELETE FROM qldb.pending_revision WHERE strand_id = %4$L AND table_id = %5$L
                                                        AND document_id = OLD.document_id AND version = 0;
                ELSIF v_own THEN
                    UPDATE %2$I.%3$I SET data = NULL, operation = 'delete' WHERE document_id = OLD.document_id
                                                                             AND version = OLD.version;
                ELSE
                    v_seq := nextval('qldb.write_seq');
                    INSERT INTO %2$I.%3$I (document_id, version, data, operation, redacted, tx_id, tx_time,
                                           tx_time_ion, write_seq)
                        VALUES (OLD.document_id, OLD.version + 1, NULL, 'delete', false, v_tx, v_time,
                                qldb.ion_utc_ms(v_time), v_seq);
                    INSERT INTO qldb.pending_revision VALUES (%4$L, %5$L, OLD.document_id, OLD.version + 1, v_seq,
                                                              v_tx, pg_current_xact_id());
                END IF;
                RETURN OLD;
            END $body$
            $fn$, fn, t.pg_schema, t.history_name, p_strand, p_table_id);
            EXECUTE format('REVOKE ALL ON FUNCTION qldb.%I() FROM PUBLIC', fn);
            EXECUTE format('CREATE TRIGGER qldb_ledger_write BEFORE INSERT OR UPDATE OR DELETE ON %I.%I '
                           'FOR EACH ROW EXECUTE FUNCTION qldb.%I()', t.pg_schema, t.current_name, fn);
            EXECUTE format('CREATE TRIGGER qldb_no_truncate BEFORE TRUNCATE ON %I.%I '
                           'FOR EACH STATEMENT EXECUTE FUNCTION qldb.refuse_truncate()', t.pg_schema, t.current_name);
            EXECUTE format('CREATE TRIGGER qldb_append_only BEFORE UPDATE OR DELETE ON %I.%I '
                           'FOR EACH ROW EXECUTE FUNCTION qldb.history_guard(%L, %L)', t.pg_schema, t.history_name,
                           p_strand, p_table_id);
            EXECUTE format('CREATE TRIGGER qldb_no_truncate BEFORE TRUNCATE ON %I.%I '
                           'FOR EACH STATEMENT EXECUTE FUNCTION qldb.refuse_truncate()', t.pg_schema, t.history_name);
        END $$;

        -- The ledger a name, strand or schema designates.
        CREATE FUNCTION qldb.find_ledger(p_ledger text) RETURNS qldb.ledger LANGUAGE plpgsql STABLE AS $$
        DECLARE
            l qldb.ledger;
            n int;
        BEGIN
            SELECT count(*) INTO n FROM qldb.ledger WHERE p_ledger IN (strand_id, ledger_name, pg_schema);
            IF n <> 1 THEN
                RAISE EXCEPTION 'qldb-migrate: % ledgers are named %', n, p_ledger USING ERRCODE = '42704';
            END IF;
            SELECT * INTO l FROM qldb.ledger WHERE p_ledger IN (strand_id, ledger_name, pg_schema);
            RETURN l;
        END $$;

        -- A new QLDB table in a live ledger: SELECT qldb.create_ledger_table('vehicle-registration', 'Customers');
        CREATE FUNCTION qldb.create_ledger_table(p_ledger text, p_table_name text) RETURNS text
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
        DECLARE
            l qldb.ledger := qldb.find_ledger(p_ledger);
            v_id text := qldb.new_id();
            base text;
            v_current text;
            n int := 1;
        BEGIN
            IF l.state <> 'live' THEN
                RAISE EXCEPTION 'qldb-migrate: ledger % is not live: its tables come from the journal (migrate)',
                    p_ledger USING ERRCODE = '55000';
            END IF;
            IF p_table_name IS NULL OR p_table_name !~ '^[A-Za-z_$][A-Za-z0-9_$]*$' THEN
                RAISE EXCEPTION 'qldb-migrate: % is not a QLDB table name', p_table_name USING ERRCODE = '22023';
            END IF;
            IF EXISTS (SELECT 1 FROM qldb.ledger_table WHERE strand_id = l.strand_id AND table_name = p_table_name) THEN
                RAISE EXCEPTION 'qldb-migrate: ledger % already has a table %', p_ledger, p_table_name
                    USING ERRCODE = '42P07';
            END IF;
            base := lower(regexp_replace(regexp_replace(p_table_name, '([a-z0-9])([A-Z])', '\1_\2', 'g'),
                                         '[^0-9A-Za-z_]+', '_', 'g'));
            base := left(base, 50);
            v_current := base;
            WHILE EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace
                          WHERE s.nspname = l.pg_schema AND c.relname IN (v_current, v_current || '_history')) LOOP
                n := n + 1;
                v_current := base || '_' || n;
            END LOOP;
            PERFORM qldb.create_table_pair(l.pg_schema, v_current, v_current || '_history');
            INSERT INTO qldb.ledger_table (strand_id, table_id, table_name, pg_schema, current_name, history_name)
                VALUES (l.strand_id, v_id, p_table_name, l.pg_schema, v_current, v_current || '_history');
            PERFORM qldb.make_live_table(l.strand_id, v_id);
            INSERT INTO qldb.pending_event (strand_id, write_seq, tx_id, xid, kind, table_id, table_name, statement,
                                            at)
                VALUES (l.strand_id, nextval('qldb.write_seq'), qldb.tx_id(), pg_current_xact_id(), 'create-table',
                        v_id, p_table_name, 'CREATE TABLE ' || p_table_name, qldb.tx_time());
            IF l.app_role IS NOT NULL THEN
                EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I.%I TO %I', l.pg_schema, v_current,
                               l.app_role);
                EXECUTE format('GRANT SELECT ON %I.%I TO %I', l.pg_schema, v_current || '_history', l.app_role);
            END IF;
            RETURN v_id;
        END $$;
        REVOKE ALL ON FUNCTION qldb.create_ledger_table(text, text) FROM PUBLIC;

        -- QLDB's REDACT_REVISION: clears a sealed revision's data, keeps every hash, and is itself sealed into the
        -- chain.  SELECT qldb.redact_revision('Accounts', '<document id>', 2);
        CREATE FUNCTION qldb.redact_revision(p_table text, p_document_id text, p_version integer) RETURNS text
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
        DECLARE
            t qldb.ledger_table;
            l qldb.ledger;
            h record;
            n int;
            v_block bigint;
            v_current_version int;
        BEGIN
            SELECT count(*) INTO n FROM qldb.ledger_table
             WHERE p_table IN (table_name, table_id, pg_schema || '.' || current_name);
            IF n <> 1 THEN
                RAISE EXCEPTION 'qldb-migrate: % tables are named % (give the table id, or schema.table)', n, p_table
                    USING ERRCODE = '42P01';
            END IF;
            SELECT * INTO t FROM qldb.ledger_table
             WHERE p_table IN (table_name, table_id, pg_schema || '.' || current_name);
            SELECT * INTO l FROM qldb.ledger WHERE strand_id = t.strand_id;
            IF l.state <> 'live' THEN
                RAISE EXCEPTION 'qldb-migrate: ledger % is not live: redactions of a migrated ledger come from its '
                    'journal', l.strand_id USING ERRCODE = '55000';
            END IF;
            EXECUTE format('SELECT h.operation, h.redacted, coalesce(h.block_sequence, s.block_sequence) AS block '
                           'FROM %I.%I h LEFT JOIN qldb.sealed_revision s ON s.strand_id = $1 AND s.table_id = $2 '
                           'AND s.document_id = h.document_id AND s.version = h.version '
                           'WHERE h.document_id = $3 AND h.version = $4', t.pg_schema, t.history_name)
                INTO h USING t.strand_id, t.table_id, p_document_id, p_version;
            IF h IS NULL THEN
                RAISE EXCEPTION 'qldb-migrate: % has no revision % of document %', p_table, p_version, p_document_id
                    USING ERRCODE = '02000';
            END IF;
            IF h.block IS NULL THEN
                RAISE EXCEPTION 'qldb-migrate: revision % of document % is not sealed yet: seal first', p_version,
                    p_document_id USING ERRCODE = '55000';
            END IF;
            IF h.redacted OR h.operation = 'delete' THEN
                RAISE EXCEPTION 'qldb-migrate: revision % of document % holds no data to redact', p_version,
                    p_document_id USING ERRCODE = '55000';
            END IF;
            EXECUTE format('SELECT version FROM %I.%I WHERE document_id = $1', t.pg_schema, t.current_name)
                INTO v_current_version USING p_document_id;
            IF v_current_version = p_version THEN
                RAISE EXCEPTION 'qldb-migrate: revision % is the live revision of document %: as in QLDB, only a '
                    'superseded or deleted revision can be redacted', p_version, p_document_id USING ERRCODE = '55000';
            END IF;
            INSERT INTO qldb.pending_event (strand_id, write_seq, tx_id, xid, kind, table_id, table_name, document_id,
                                            version, statement, at)
                VALUES (t.strand_id, nextval('qldb.write_seq'), qldb.tx_id(), pg_current_xact_id(), 'redaction',
                        t.table_id, t.table_name, p_document_id, p_version, 'EXEC redact_revision ?, ?, ?',
                        qldb.tx_time());
            EXECUTE format('UPDATE %I.%I SET data = NULL, data_ion = NULL, redacted = true '
                           'WHERE document_id = $1 AND version = $2', t.pg_schema, t.history_name)
                USING p_document_id, p_version;
            UPDATE qldb.sealed_revision SET data_ion = NULL
             WHERE strand_id = t.strand_id AND table_id = t.table_id AND document_id = p_document_id
               AND version = p_version;
            RETURN format('redaction of %s v%s queued for the chain (block %s holds the revision)', p_document_id,
                          p_version, h.block);
        END $$;
        REVOKE ALL ON FUNCTION qldb.redact_revision(text, text, integer) FROM PUBLIC;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP FUNCTION qldb.redact_revision(text, text, integer), qldb.create_ledger_table(text, text),
            qldb.find_ledger(text), qldb.make_live_table(text, text), qldb.create_table_pair(text, text, text);
        DROP TRIGGER qldb_append_only ON qldb.sealed_revision;
        DROP TRIGGER qldb_live_stays_live ON qldb.ledger;
        DROP TRIGGER qldb_append_only ON qldb.block; DROP TRIGGER qldb_append_only ON qldb.digest;
        DROP TRIGGER qldb_append_only ON qldb.merkle_node;
        DROP TRIGGER qldb_append_only_truncate ON qldb.block; DROP TRIGGER qldb_append_only_truncate ON qldb.digest;
        DROP TRIGGER qldb_append_only_truncate ON qldb.merkle_node;
        DROP TRIGGER qldb_append_only_truncate ON qldb.sealed_revision;
        DROP FUNCTION qldb.history_guard(), qldb.sealed_guard(), qldb.ledger_guard(), qldb.live_truncate_guard(),
            qldb.live_rows_guard(), qldb.refuse_truncate(), qldb.ion_utc_ms(timestamptz), qldb.tx_time(),
            qldb.tx_id(), qldb.new_id(), qldb.base62(bytea), qldb.check_document(jsonb);
        DROP TABLE qldb.merkle_node, qldb.sealed_revision, qldb.pending_event, qldb.pending_revision;
        DROP SEQUENCE qldb.write_seq;
        ALTER TABLE qldb.ledger DROP COLUMN live_since, DROP COLUMN app_role;
        """
    )
