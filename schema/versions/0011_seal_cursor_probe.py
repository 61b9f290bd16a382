"""The sealer's cursor says from which transaction id on no revision can be sealed yet.

A round of the sealer reads the live history rows its cursor says may wait
(schema 0010) and, for each, probed ``qldb.sealed_revision`` to skip those a
block already holds.  That probe — a random read of the ledger's largest index
— was most of the round's reading (``EXPLAIN ANALYZE`` of a round over 8,371
revisions: 276 of its 306 ms).  Yet a revision can be sealed only if a round's
snapshot saw it committed, so its xid is below the xmax of the last round's
snapshot.  ``probe_below`` records that xmax: a candidate at or above it is
not probed.  Below it (the transactions that were running then, and those a
round over its limit left) the probe stays.

Nothing rests on it for safety: ``qldb.sealed_revision``'s primary key refuses
a revision sealed twice, so a ``probe_below`` moved by hand stops the sealer
(it names the revision) rather than doubling it.  NULL — a cursor of an
earlier version, or of another cluster — probes every candidate, as before.

Revision ID: 0011
Revises: 0010
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE qldb.seal_cursor ADD COLUMN probe_below xid8")
    op.execute("COMMENT ON COLUMN qldb.seal_cursor.probe_below IS 'no revision of a transaction at or above this id "
               "is sealed (the xmax of the last round''s snapshot); NULL: any may be'")


def downgrade() -> None:
    op.execute("ALTER TABLE qldb.seal_cursor DROP COLUMN probe_below")
