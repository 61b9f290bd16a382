"""Cheaper live-ledger writes: ids without a numeric loop, SQL the planner inlines, one index fewer on the queue.

What a write to a live table cost (``bench/ledger_writes.py``: ``ledger_write_ratio`` 0.39–0.41 against the
goal 0.6; one INSERT's trigger ≈ 300 µs of backend CPU against ≈ 25 µs for the plain INSERT), and what changes:

* ``qldb.tx_id()`` and ``qldb.new_id()`` spelled their 16 bytes in base62 with a PL/pgSQL loop over ``numeric``
  (≈ 35 µs a call), and ``tx_id`` read the cluster's identifier in a sub-select, which kept the SQL function from
  being inlined: PostgreSQL parsed and planned its body again at every call (≈ 100 µs).  QLDB's ids have a shape
  (22 characters of ``[0-9A-Za-z]``), not an encoding anyone recomputes, so both now take the first 22
  characters of the base64 of a SHA-256, ``+`` and ``/`` spelled ``A`` and ``B``: of a random UUID for a
  document id (as unpredictable as before: 122 random bits), of ``system_identifier:xid`` for the txId (derived
  from the same inputs as before, still unchoosable by a session: the transaction's own xid and the cluster's
  identifier, read by the trigger).  One SQL expression each, inlined: ≈ 5 µs for an id, ≈ 20 µs for a txId
  (most of it ``pg_control_system()`` reading the control file, which is what makes the txId unforgeable and
  unique across clusters, so it stays).  Ids written before stay as they are; txIds of transactions committed
  before keep theirs.
* ``qldb.ion_utc_ms`` was declared IMMUTABLE around ``to_char`` (STABLE), which forbids inlining it: the trigger
  parsed and planned it again at every write.  It is STABLE now (it serves only the triggers), and the trigger
  computes it, the xid and the txId once per call.
* ``qldb.pending_revision_order`` (``strand_id, write_seq``) served no query its primary key (``strand_id`` first)
  does not serve as well: the sealer groups a strand's queue by ``tx_id`` and orders by ``max(write_seq)``, which
  reads the whole strand either way.  Dropped: one B-tree insert fewer per write.

Kept as they were, on purpose: the trigger stays SECURITY DEFINER with ``SET search_path = pg_catalog, pg_temp``
(its per-call GUC save and restore cost ≈ 10–20 µs, but without it a session's search_path — ``pg_temp`` first
for types, or a schema of its own before ``pg_catalog`` for operators — would run its code as the ledger's
owner); the queue stays logged (an UNLOGGED queue is emptied by a crash); ``qldb.check_document`` runs on
every write; the txId is computed, never cached (a transaction-local setting could be preset by the session for
its own xid).

Every live table's write function is regenerated (``qldb.make_write_function``, which ``make_live_table`` now
calls).  The upgrade first locks every live current table and the queues (SHARE ROW EXCLUSIVE): a transaction
that wrote with the old txId spelling ends before the new one applies, so no transaction's revisions carry
two txIds.  (The tables are locked one after the other: if a writer holds one and asks for another the upgrade
already holds, PostgreSQL's deadlock check ends one of the two, which rolls back whole; rerun it.)
The downgrade restores the 0005 definitions and regenerates the write functions with the 0005 body.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# The write trigger of one live table, a format() template: %1$I the function, %2$I.%3$I the history table,
# %4$L the strand, %5$L the table id.  Static SQL per table: PL/pgSQL caches its plans.
WRITE_FUNCTION = r"""CREATE OR REPLACE FUNCTION qldb.%1$I() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $body$
DECLARE
    v_xid xid8 := pg_current_xact_id();
    v_tx text := qldb.tx_id();
    v_time timestamptz := qldb.tx_time();
    v_time_ion text := qldb.ion_utc_ms(v_time);
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
            VALUES (NEW.document_id, 0, NEW.data, 'insert', false, v_tx, v_time, v_time_ion, v_seq);
        INSERT INTO qldb.pending_revision VALUES (%4$L, %5$L, NEW.document_id, 0, v_seq, v_tx, v_xid);
        RETURN NEW;
    END IF;
    -- a document this transaction already wrote: the one revision it commits is reshaped, not doubled
    SELECT true INTO v_own FROM qldb.pending_revision p
     WHERE p.strand_id = %4$L AND p.table_id = %5$L AND p.document_id = OLD.document_id
       AND p.version = OLD.version AND p.xid = v_xid;
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
                VALUES (OLD.document_id, NEW.version, NEW.data, 'update', false, v_tx, v_time, v_time_ion, v_seq);
            INSERT INTO qldb.pending_revision VALUES (%4$L, %5$L, OLD.document_id, NEW.version, v_seq, v_tx,
                                                      v_xid);
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
            VALUES (OLD.document_id, OLD.version + 1, NULL, 'delete', false, v_tx, v_time, v_time_ion, v_seq);
        INSERT INTO qldb.pending_revision VALUES (%4$L, %5$L, OLD.document_id, OLD.version + 1, v_seq, v_tx,
                                                  v_xid);
    END IF;
    RETURN OLD;
END $body$
"""

# 0005's write trigger, as it made it (for the downgrade).
WRITE_FUNCTION_0005 = r"""CREATE OR REPLACE FUNCTION qldb.%1$I() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
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
"""

# Everything make_live_table does but writing the function, as 0005 has it.
_LIVE_TABLE_HEAD = r"""
CREATE OR REPLACE FUNCTION qldb.make_live_table(p_strand text, p_table_id text) RETURNS void
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
"""
_LIVE_TABLE_TAIL = r"""
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
"""

# Waits for every transaction that wrote to a live ledger and holds off new writes until this migration
# commits: no transaction's revisions get txIds of two spellings, nor its tables write functions of two versions.
# First what a new ledger table (qldb.create_ledger_table) or a redaction writes, so that no table becomes live
# from here on and one made meanwhile is in the list read next (one made while this waited for writers, after
# the list was read, was written by transactions this never waited for: a red-team finding).
_QUIESCE = r"""
DO $$
DECLARE r record;
BEGIN
    LOCK TABLE qldb.ledger_table, qldb.pending_revision, qldb.pending_event IN SHARE ROW EXCLUSIVE MODE;
    FOR r IN SELECT lt.pg_schema, lt.current_name FROM qldb.ledger_table lt JOIN qldb.ledger l USING (strand_id)
             WHERE l.state = 'live' ORDER BY lt.pg_schema, lt.current_name LOOP
        IF to_regclass(format('%I.%I', r.pg_schema, r.current_name)) IS NOT NULL THEN
            EXECUTE format('LOCK TABLE %I.%I IN SHARE ROW EXCLUSIVE MODE', r.pg_schema, r.current_name);
        END IF;
    END LOOP;
END $$;
"""


def _regenerate(template: str) -> str:
    """A DO block writing every live table's write function (those that have one) from ``template``."""
    return f"""
DO $do$
DECLARE
    t record;
    fn text;
BEGIN
    FOR t IN SELECT * FROM qldb.ledger_table LOOP
        fn := 'write_' || substr(md5(t.strand_id || '/' || t.table_id), 1, 24);
        IF to_regprocedure(format('qldb.%I()', fn)) IS NOT NULL THEN
            EXECUTE format($fn${template}$fn$, fn, t.pg_schema, t.history_name, t.strand_id, t.table_id);
        END IF;
    END LOOP;
END $do$;
"""


def make_write_function(template: str, create: str = "CREATE OR REPLACE") -> str:
    """``qldb.make_write_function``, which writes a live table's write trigger from ``template`` (a format()
    template as WRITE_FUNCTION); later versions install it again with their own template."""
    return f"""
        {create} FUNCTION qldb.make_write_function(p_strand text, p_table_id text) RETURNS void
        LANGUAGE plpgsql AS $$
        DECLARE
            t record;
            fn text := 'write_' || substr(md5(p_strand || '/' || p_table_id), 1, 24);
        BEGIN
            SELECT * INTO t FROM qldb.ledger_table WHERE strand_id = p_strand AND table_id = p_table_id;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'qldb-migrate: no table % in ledger %', p_table_id, p_strand;
            END IF;
            -- run as the ledger's owner: the application needs no privilege on the history or the sealer's tables
            EXECUTE format($fn${template}$fn$, fn, t.pg_schema, t.history_name, p_strand, p_table_id);
        END $$;
        REVOKE ALL ON FUNCTION qldb.make_write_function(text, text) FROM PUBLIC;
        """


# The transaction's id (QLDB's txId), the same for every row it writes.  Derived from the transaction's own xid and
# the cluster's identifier (a restored copy is another cluster, whose xids start again), so no session can choose it
# or share another transaction's: the sealer groups revisions into blocks by it.  One expression, which the planner
# inlines.  (0012's downgrade installs it again.)
TX_ID = r"""
CREATE OR REPLACE FUNCTION qldb.tx_id() RETURNS text LANGUAGE sql VOLATILE AS $$
    SELECT translate(left(encode(sha256(convert_to(
               (pg_control_system()).system_identifier::text || ':' || pg_current_xact_id()::text,
               'UTF8')), 'base64'), 22), '+/', 'AB')
$$;
"""


def upgrade() -> None:
    op.execute(_QUIESCE)
    op.execute(
        r"""
        CREATE OR REPLACE FUNCTION qldb.new_id() RETURNS text LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
            SELECT translate(left(encode(sha256(uuid_send(gen_random_uuid())), 'base64'), 22), '+/', 'AB')
        $$;

        """ + TX_ID + r"""

        -- STABLE, as to_char is: an IMMUTABLE declaration kept the planner from inlining it.
        CREATE OR REPLACE FUNCTION qldb.ion_utc_ms(ts timestamptz) RETURNS text LANGUAGE sql STABLE STRICT AS $$
            SELECT to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24\:MI\:SS.MS"Z"')
        $$;

        DROP INDEX qldb.pending_revision_order;
        """
    )
    op.execute(make_write_function(WRITE_FUNCTION, create="CREATE"))
    op.execute(_LIVE_TABLE_HEAD + "    PERFORM qldb.make_write_function(p_strand, p_table_id);\n" + _LIVE_TABLE_TAIL)
    op.execute(_regenerate(WRITE_FUNCTION))


def downgrade() -> None:
    op.execute(_QUIESCE)
    op.execute(
        r"""
        CREATE INDEX pending_revision_order ON qldb.pending_revision (strand_id, write_seq);

        CREATE OR REPLACE FUNCTION qldb.ion_utc_ms(ts timestamptz) RETURNS text LANGUAGE sql IMMUTABLE STRICT AS $$
            SELECT to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24\:MI\:SS.MS"Z"')
        $$;
        CREATE OR REPLACE FUNCTION qldb.new_id() RETURNS text LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
            SELECT qldb.base62(decode(replace(gen_random_uuid()::text, '-', ''), 'hex'))
        $$;
        CREATE OR REPLACE FUNCTION qldb.tx_id() RETURNS text LANGUAGE sql VOLATILE AS $$
            SELECT qldb.base62(sha256(convert_to(
                (SELECT system_identifier FROM pg_control_system())::text || ':' || pg_current_xact_id()::text,
                'UTF8')))
        $$;
        """
    )
    op.execute(_LIVE_TABLE_HEAD + "    EXECUTE format($fn$" + WRITE_FUNCTION_0005
               + "$fn$, fn, t.pg_schema, t.history_name, p_strand, p_table_id);\n" + _LIVE_TABLE_TAIL)
    op.execute(_regenerate(WRITE_FUNCTION_0005))
    op.execute("DROP FUNCTION qldb.make_write_function(text, text)")
