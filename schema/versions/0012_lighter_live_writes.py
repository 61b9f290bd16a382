"""Lighter live writes: the txId reads no file, and a write asks whether a document is its own only when it can be.

Measured on PostgreSQL 15 (a 2-core VM; the backend's CPU per row, ``perf stat -e task-clock``, over 10,000
writes in one transaction, the tables vacuumed before each run; three alternating runs of 0011's trigger and txId
and of this revision's): an INSERT 174–193 µs before, 155–164 after; an UPDATE 175–213 before, 125–141 after.

* ``qldb.tx_id()`` hashed ``system_identifier:xid``.  ``pg_control_system()``
  opens, reads and checksums the cluster's control file at every call, and the
  write trigger calls it for every row.  The txId now hashes ``<the server's start, in microseconds since
  the epoch>:<xid>``.  It keeps what the txId must be: one per transaction (an
  xid8 is never reused in a cluster, and no transaction outlives its server's
  start), chosen by no session, and never a copied row's — a row copied from
  another server (a logical copy, a restore from backup, a promoted replica)
  has that server's start in its txId, while the system identifier did not
  tell a restored cluster or a promoted replica from the one it came from,
  which keep it and, past the restore point, reuse its xids.  The start is
  spelled as an integer, which no session setting changes: a timestamp's text
  follows DateStyle and TimeZone, and on PostgreSQL 13 ``extract`` gives a
  double whose text follows extra_float_digits (a red-team finding: a session
  could have split its own transaction in two).  txIds already written
  keep their values: nothing recomputes them, and no transaction after this
  upgrade has an xid of one before it.
* An UPDATE or DELETE first asked the history whether this transaction had
  written the document already (its one revision is reshaped, not doubled).
  The trigger stamps every row it writes with its transaction's ``tx_time``,
  so a current row with another ``tx_time`` is not this transaction's and the
  query is skipped (0010's trigger with this txId alone: 159–160 µs per
  update, against 172–204 before, in another pair of runs).

Like 0008 and 0010, the upgrade and the downgrade wait for every transaction
writing a live ledger and hold off new ones until they commit: no
transaction's revisions get txIds of two spellings.

Revision ID: 0012
Revises: 0011
"""

from alembic import op
from qldb_migrate.schema.versions import earlier, edited

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_V0008 = earlier("0008_cheaper_ledger_writes")
_V0010 = earlier("0010_queue_free_writes")

# The transaction's id (QLDB's txId), the same for every row it writes: see the module docstring.  One expression,
# which the planner inlines.
TX_ID = r"""
CREATE OR REPLACE FUNCTION qldb.tx_id() RETURNS text LANGUAGE sql VOLATILE AS $$
    SELECT translate(left(encode(sha256(convert_to(
               (extract(epoch FROM pg_postmaster_start_time()) * 1000000)::bigint::text || ':'
               || pg_current_xact_id()::text,
               'UTF8')), 'base64'), 22), '+/', 'AB')
$$;
"""


# 0010's write trigger, asking "already written by this transaction?" only of a row stamped with its tx_time
_OWN_QUERY = """    SELECT true INTO v_own FROM %2$I.%3$I h
     WHERE h.document_id = OLD.document_id AND h.version = OLD.version AND h.xid = v_xid AND h.tx_id = v_tx;
"""
_OWN_QUERY_IF_STAMPED = """    -- each row the trigger writes has its transaction's time: another time is not ours
    IF OLD.tx_time = v_time THEN
        SELECT true INTO v_own FROM %2$I.%3$I h
         WHERE h.document_id = OLD.document_id AND h.version = OLD.version AND h.xid = v_xid AND h.tx_id = v_tx;
    END IF;
"""
WRITE_FUNCTION = edited(_V0010.WRITE_FUNCTION, [(_OWN_QUERY, _OWN_QUERY_IF_STAMPED)])

# 0010's qldb.seal_backlog, skipping the "sealed?" probe at or above the cursor's probe_below as the sealer's rounds
# do since 0011 (NULL, another cluster's cursor: every candidate probed): a monitor polling it, or the bench's lag
# sampler twice a second, costs a probe per waiting revision only below the last round's snapshot.
SEAL_BACKLOG = edited(_V0010._SEAL_BACKLOG, [
    ("CREATE FUNCTION qldb.seal_backlog", "CREATE OR REPLACE FUNCTION qldb.seal_backlog"),
    ("'AND (SELECT true FROM '", "'AND (h.xid >= $5 OR (SELECT true FROM '"),
    ("AND s.document_id = h.document_id AND s.version = h.version) IS NULL', t.pg_schema,",
     "AND s.document_id = h.document_id AND s.version = h.version) IS NULL)', t.pg_schema,"),
    ("USING c.horizon, p_strand, t.table_id, c.waiting;",
     "USING c.horizon, p_strand, t.table_id, c.waiting, c.probe_below;"),
])
SEAL_BACKLOG_0010 = edited(_V0010._SEAL_BACKLOG, [("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION")])


def _install(tx_id: str, write_function: str, seal_backlog: str) -> None:
    op.execute(_V0010._quiesce(queue=False))
    op.execute(tx_id)
    op.execute(_V0008.make_write_function(write_function))
    op.execute(_V0008._regenerate(write_function))
    op.execute(seal_backlog)


def upgrade() -> None:
    _install(TX_ID, WRITE_FUNCTION, SEAL_BACKLOG)


def downgrade() -> None:
    _install(_V0008.TX_ID, _V0010.WRITE_FUNCTION, SEAL_BACKLOG_0010)
