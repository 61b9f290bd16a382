"""Live-ledger writes without a queue: the sealer finds committed revisions in the history tables themselves.

Until now every write also inserted a row into ``qldb.pending_revision``, and
the sealer read that queue, sealed it and deleted it.  Measured with 8 busy
writers (``bench/ledger_writes.py``), the queue was the largest cost left: a
heap row and a four-column B-tree entry per write, a delete per sealed
revision, and a table that churns thousands of rows a second, whose dead
rows and index entries every round of the sealer read again until VACUUM
came by (the sealer's backend spent more on reading its queue than on
writing the blocks).

Now a write records its transaction's ``xid`` (xid8, never reused in a
cluster) in the history row it appends, and a partial B-tree index on it
(``WHERE xid IS NOT NULL``: migrated rows have none) replaces the queue.
The sealer keeps a cursor per ledger, ``qldb.seal_cursor``: ``horizon`` and
``waiting``, with the invariant that every committed live revision of a
transaction whose xid is below ``horizon`` and not in ``waiting`` is sealed.  A
round, in one REPEATABLE READ snapshot S, reads the history rows with
``xid >= horizon OR xid = ANY(waiting)`` that ``qldb.sealed_revision`` does not
hold (committed ones only: the snapshot sees no other), seals up to its
limit of transactions in the usual order, and sets ``horizon`` to S's xmax and
``waiting`` to S's running transactions: exactly what S could not see (a
round that leaves transactions over its limit keeps the horizon at the
oldest of them, and the running ones below it waiting).  That keeps the
invariant, so nothing committed is ever passed over, and a rolled-back
transaction's rows are seen by no snapshot.  A round reads the rows written
since the previous one, and the rows of the transactions that were running
then: a transaction kept open (anywhere in the cluster) costs one index
probe a round, not a re-read of everything written since it began.

The cursor names the cluster whose transaction ids it holds (its system
identifier).  In another cluster — a logical copy, whose ids start again, or
after ``pg_upgrade`` — it means nothing, and ``qldb.live_cursor`` reads it as
absent: the next round reads every live revision once (sealing what no block
holds) and starts a cursor of this cluster's.  Whether a row is the writing transaction's
own (to reshape it, as QLDB makes two writes of a document one revision) is
decided by its xid **and** its txId, which names the cluster: a copied row
whose xid a new transaction happens to reuse is never its own.

``qldb.pending_event`` (redactions and new tables, rare) stays a queue.  The
history guard's exception for a transaction reshaping its own uncommitted
revision now reads the row's own ``xid`` instead of the queue.
``qldb.seal_backlog(strand)`` says how many committed revisions wait and the
oldest one's time (what ``seal`` reports and a monitor polls).

The upgrade waits for every transaction writing a live ledger (as 0008's
does), adds the column and index to each live history table, gives the rows
still queued their xid (the queue held it), starts each live ledger's cursor
at its snapshot with the queued transactions waiting, and drops the queue.
The downgrade rebuilds the queue from the unsealed rows.

Revision ID: 0010
Revises: 0009
"""

from alembic import op
from qldb_migrate.schema.versions import earlier, edited

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


_V0008 = earlier("0008_cheaper_ledger_writes")

# The write trigger of one live table (format(): %1$I the function, %2$I.%3$I the history table; %4$L the
# strand and %5$L the table id are unused now).  As 0008's, without the queue: the history row carries the xid.
WRITE_FUNCTION = r"""CREATE OR REPLACE FUNCTION qldb.%1$I() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $body$
DECLARE
    v_xid xid8 := pg_current_xact_id();
    v_tx text := qldb.tx_id();
    v_time timestamptz := qldb.tx_time();
    v_time_ion text := qldb.ion_utc_ms(v_time);
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
        INSERT INTO %2$I.%3$I (document_id, version, data, operation, redacted, tx_id, tx_time,
                               tx_time_ion, write_seq, xid)
            VALUES (NEW.document_id, 0, NEW.data, 'insert', false, v_tx, v_time, v_time_ion,
                    nextval('qldb.write_seq'), v_xid);
        RETURN NEW;
    END IF;
    -- a document this transaction already wrote: the one revision it commits is reshaped, not doubled
    SELECT true INTO v_own FROM %2$I.%3$I h
     WHERE h.document_id = OLD.document_id AND h.version = OLD.version AND h.xid = v_xid AND h.tx_id = v_tx;
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
            INSERT INTO %2$I.%3$I (document_id, version, data, operation, redacted, tx_id, tx_time,
                                   tx_time_ion, write_seq, xid)
                VALUES (OLD.document_id, NEW.version, NEW.data, 'update', false, v_tx, v_time, v_time_ion,
                        nextval('qldb.write_seq'), v_xid);
        END IF;
        RETURN NEW;
    END IF;
    IF v_own AND OLD.version = 0 THEN  -- inserted by this transaction: it never existed
        DELETE FROM %2$I.%3$I WHERE document_id = OLD.document_id AND version = 0;
    ELSIF v_own THEN
        UPDATE %2$I.%3$I SET data = NULL, operation = 'delete' WHERE document_id = OLD.document_id
                                                                 AND version = OLD.version;
    ELSE
        INSERT INTO %2$I.%3$I (document_id, version, data, operation, redacted, tx_id, tx_time,
                               tx_time_ion, write_seq, xid)
            VALUES (OLD.document_id, OLD.version + 1, NULL, 'delete', false, v_tx, v_time, v_time_ion,
                    nextval('qldb.write_seq'), v_xid);
    END IF;
    RETURN OLD;
END $body$
"""

# The history guard, with the condition under which a row is the current transaction's own (uncommitted) revision.
_GUARD = r"""
CREATE OR REPLACE FUNCTION qldb.history_guard() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_strand text := TG_ARGV[0];
    v_table text := TG_ARGV[1];
BEGIN
    IF {own} THEN
        IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
        IF {own_update} THEN RETURN NEW; END IF;
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.data IS NULL AND NEW.data_ion IS NULL AND NEW.redacted
       AND (NEW.document_id, NEW.version, NEW.metadata_ion, NEW.revision_hash, NEW.data_hash, NEW.operation,
            NEW.tx_id, NEW.tx_time, NEW.tx_time_ion, NEW.block_sequence, NEW.index_in_block, NEW.write_seq{xid_new})
           IS NOT DISTINCT FROM (OLD.document_id, OLD.version, OLD.metadata_ion, OLD.revision_hash,
                                 OLD.data_hash, OLD.operation, OLD.tx_id, OLD.tx_time, OLD.tx_time_ion,
                                 OLD.block_sequence, OLD.index_in_block, OLD.write_seq{xid_old})
       AND EXISTS (SELECT 1 FROM qldb.pending_event e WHERE e.kind = 'redaction' AND e.strand_id = v_strand
                   AND e.table_id = v_table AND e.document_id = OLD.document_id AND e.version = OLD.version
                   AND e.xid = pg_current_xact_id()) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'qldb-migrate: %.% is the history of a live ledger and append-only: % of document % '
        'version % refused', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP, OLD.document_id, OLD.version
        USING ERRCODE = '55000';
END $$;
"""
# the own revision: its xid is this transaction's (0010); it is in the queue with this transaction's xid (0005)
# (its xid and txId are this transaction's, the txId naming the cluster: a copy's xids start again; it may change
# only its data and operation, as the write trigger reshapes it)
GUARD = _GUARD.format(
    own="OLD.xid = pg_current_xact_id() AND OLD.tx_id = qldb.tx_id()",
    own_update="(NEW.document_id, NEW.version, NEW.redacted, NEW.data_ion, NEW.metadata_ion, NEW.revision_hash,\n"
               "            NEW.data_hash, NEW.tx_id, NEW.tx_time, NEW.tx_time_ion, NEW.block_sequence,\n"
               "            NEW.index_in_block, NEW.write_seq, NEW.xid)\n"
               "           IS NOT DISTINCT FROM (OLD.document_id, OLD.version, OLD.redacted, OLD.data_ion,\n"
               "            OLD.metadata_ion, OLD.revision_hash, OLD.data_hash, OLD.tx_id, OLD.tx_time,\n"
               "            OLD.tx_time_ion, OLD.block_sequence, OLD.index_in_block, OLD.write_seq, OLD.xid)",
    xid_new=", NEW.xid", xid_old=", OLD.xid")
GUARD_0005 = _GUARD.format(
    own="EXISTS (SELECT 1 FROM qldb.pending_revision p WHERE p.strand_id = v_strand AND p.table_id = v_table\n"
        "               AND p.document_id = OLD.document_id AND p.version = OLD.version\n"
        "               AND p.xid = pg_current_xact_id())",
    own_update="NEW.document_id = OLD.document_id AND NEW.version = OLD.version", xid_new="", xid_old="")

_ADD_XID = r"""
    EXECUTE format('ALTER TABLE %I.%I ADD COLUMN xid xid8', t.pg_schema, t.history_name);
    EXECUTE format('CREATE INDEX ON %I.%I (xid) WHERE xid IS NOT NULL', t.pg_schema, t.history_name);
"""


# Every live ledger's tables, locked against writers until this migration commits (0008's, with the queue of
# revisions there or not).
def _quiesce(queue: bool) -> str:
    tables = "qldb.pending_revision, qldb.pending_event" if queue else "qldb.pending_event"
    return edited(_V0008._QUIESCE, [("qldb.pending_revision, qldb.pending_event", tables)])


# Each live history table (one whose ledger is live and that has write_seq), as a DO block's loop.
_LIVE_HISTORIES = """
    FOR t IN SELECT lt.* FROM qldb.ledger_table lt JOIN qldb.ledger l USING (strand_id)
              WHERE l.state = 'live' AND EXISTS (
                    SELECT 1 FROM pg_attribute a WHERE a.attrelid = to_regclass(format('%I.%I', lt.pg_schema,
                                                                                       lt.history_name))
                       AND a.attname = 'write_seq' AND NOT a.attisdropped) LOOP
"""

# The ledger's cursor as the sealer may use it here: none, or another cluster's, reads as "everything may wait"
# (horizon 0).
LIVE_CURSOR = r"""
CREATE FUNCTION qldb.live_cursor(p_strand text, OUT horizon xid8, OUT waiting xid8[]) LANGUAGE sql STABLE AS $$
    SELECT coalesce(c.horizon, '0'::xid8), coalesce(c.waiting, '{}'::xid8[])
      FROM (SELECT (pg_control_system()).system_identifier::text AS id) here
      LEFT JOIN qldb.seal_cursor c ON c.strand_id = p_strand AND c.cluster = here.id
$$;
"""

_SEAL_BACKLOG = r"""
-- What waits for the sealer: committed live revisions no block holds yet, and the oldest one's transaction time.
CREATE FUNCTION qldb.seal_backlog(p_strand text, OUT revisions bigint, OUT oldest timestamptz)
LANGUAGE plpgsql STABLE SET enable_seqscan = off SET jit = off AS $$  -- the sealer's plan (live/sealer.py)
DECLARE
    t record;
    c record;
    n bigint;
    o timestamptz;
BEGIN
    revisions := 0;
    SELECT * INTO c FROM qldb.live_cursor(p_strand);
    FOR t IN SELECT * FROM qldb.ledger_table WHERE strand_id = p_strand LOOP
        EXECUTE format('SELECT count(*), min(h.tx_time) FROM %I.%I h WHERE (h.xid >= $1 OR h.xid = ANY($4)) '
                       'AND (SELECT true FROM '
                       'qldb.sealed_revision s WHERE s.strand_id = $2 AND s.table_id = $3 '
                       'AND s.document_id = h.document_id AND s.version = h.version) IS NULL', t.pg_schema,
                       t.history_name)
            INTO n, o USING c.horizon, p_strand, t.table_id, c.waiting;
        revisions := revisions + n;
        oldest := least(oldest, o);
    END LOOP;
    SELECT least(oldest, min(e.at)) INTO oldest FROM qldb.pending_event e WHERE e.strand_id = p_strand;
END $$;
"""


def upgrade() -> None:
    op.execute(_quiesce(queue=True))
    op.execute(
        """
        -- Per live ledger: every committed live revision of a transaction whose xid is below horizon and not in
        -- waiting is sealed.
        CREATE TABLE qldb.seal_cursor (
            strand_id text PRIMARY KEY,
            horizon   xid8 NOT NULL,
            waiting   xid8[] NOT NULL,
            cluster   text NOT NULL  -- the system identifier of the cluster whose transaction ids these are
        );
        """ + LIVE_CURSOR + """
        DO $do$
        DECLARE
            t record;
        BEGIN
        """ + _LIVE_HISTORIES + _ADD_XID + """
            -- the revisions still queued: their xid (the queue held it), past the guard this once
            EXECUTE format('ALTER TABLE %I.%I DISABLE TRIGGER qldb_append_only', t.pg_schema, t.history_name);
            EXECUTE format('UPDATE %I.%I h SET xid = p.xid FROM qldb.pending_revision p WHERE p.strand_id = $1 '
                           'AND p.table_id = $2 AND p.document_id = h.document_id AND p.version = h.version',
                           t.pg_schema, t.history_name) USING t.strand_id, t.table_id;
            EXECUTE format('ALTER TABLE %I.%I ENABLE TRIGGER qldb_append_only', t.pg_schema, t.history_name);
            END LOOP;
        END $do$;
        INSERT INTO qldb.seal_cursor (strand_id, horizon, waiting, cluster)
            SELECT l.strand_id, pg_snapshot_xmax(pg_current_snapshot()),
                   ARRAY(SELECT pg_snapshot_xip(pg_current_snapshot())
                         UNION SELECT p.xid FROM qldb.pending_revision p WHERE p.strand_id = l.strand_id),
                   (pg_control_system()).system_identifier::text
              FROM qldb.ledger l WHERE l.state = 'live';
        """ + GUARD + _SEAL_BACKLOG + """
        REVOKE ALL ON qldb.seal_cursor FROM PUBLIC;
        """)
    op.execute(_V0008._LIVE_TABLE_HEAD + _ADD_XID + "    PERFORM qldb.make_write_function(p_strand, p_table_id);\n"
               + _V0008._LIVE_TABLE_TAIL)
    op.execute(_V0008.make_write_function(WRITE_FUNCTION))
    op.execute(_V0008._regenerate(WRITE_FUNCTION))
    op.execute("DROP TABLE qldb.pending_revision")


def downgrade() -> None:
    op.execute(_quiesce(queue=False))
    op.execute(
        """
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
        DO $do$
        DECLARE
            t record;
        BEGIN
        """ + _LIVE_HISTORIES + """
            -- what the cursor says is not sealed yet goes back in the queue
            EXECUTE format('INSERT INTO qldb.pending_revision SELECT $1, $2, h.document_id, h.version, h.write_seq, '
                           'h.tx_id, h.xid, h.tx_time FROM %I.%I h CROSS JOIN qldb.live_cursor($1) c '
                           'WHERE h.xid IS NOT NULL AND (h.xid >= c.horizon OR h.xid = ANY(c.waiting)) '
                           'AND NOT EXISTS (SELECT 1 FROM qldb.sealed_revision s WHERE s.strand_id = $1 '
                           'AND s.table_id = $2 AND s.document_id = h.document_id AND s.version = h.version)',
                           t.pg_schema, t.history_name)
                USING t.strand_id, t.table_id;
            END LOOP;
        END $do$;
        """ + GUARD_0005)
    op.execute(_V0008._LIVE_TABLE_HEAD + "    PERFORM qldb.make_write_function(p_strand, p_table_id);\n"
               + _V0008._LIVE_TABLE_TAIL)
    op.execute(_V0008.make_write_function(_V0008.WRITE_FUNCTION))
    op.execute(_V0008._regenerate(_V0008.WRITE_FUNCTION))
    op.execute("""
        DO $do$
        DECLARE
            t record;
        BEGIN
        """ + _LIVE_HISTORIES + """
            EXECUTE format('ALTER TABLE %I.%I DROP COLUMN xid', t.pg_schema, t.history_name);
            END LOOP;
        END $do$;
        DROP FUNCTION qldb.seal_backlog(text);
        DROP FUNCTION qldb.live_cursor(text);
        DROP TABLE qldb.seal_cursor;
        """)
