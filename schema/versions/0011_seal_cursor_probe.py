"""The sealer's cursor says from which transaction id on no revision is sealed; the tree's lowest levels go.

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
earlier version, or of another cluster — probes every candidate, as before,
and the round then sets it above every live row it sees (a logical copy keeps
the old cluster's xids, which may be far ahead of the new cluster's own).

From this version on, ``qldb.merkle_node`` keeps the block-hash tree's
subtrees of 16 blocks and more (``live/stored_tree.py``); the smaller ones
are recomputed from ``qldb.block``.  Rows an earlier version stored below
level 4 stay (append-only) and are no longer read.  The downgrade stores the
missing ones again, from the block hashes, so that an earlier version finds
the whole tree it reads.

Revision ID: 0011
Revises: 0010
"""

from alembic import op
from qldb_migrate.schema.versions import earlier

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_V0010 = earlier("0010_queue_free_writes")

# 0010's, with probe_below: the one place that says which cursor this cluster may use (another cluster's reads as
# none: horizon 0, probe_below NULL)
LIVE_CURSOR = r"""
CREATE FUNCTION qldb.live_cursor(p_strand text, OUT horizon xid8, OUT waiting xid8[], OUT probe_below xid8)
LANGUAGE sql STABLE AS $$
    SELECT coalesce(c.horizon, '0'::xid8), coalesce(c.waiting, '{}'::xid8[]), c.probe_below
      FROM (SELECT (pg_control_system()).system_identifier::text AS id) here
      LEFT JOIN qldb.seal_cursor c ON c.strand_id = p_strand AND c.cluster = here.id
$$;
"""


def upgrade() -> None:
    op.execute("ALTER TABLE qldb.seal_cursor ADD COLUMN probe_below xid8")
    op.execute("COMMENT ON COLUMN qldb.seal_cursor.probe_below IS 'no revision of a transaction at or above this id "
               "is sealed (the xmax of the last round''s snapshot); NULL: any may be'")
    op.execute("DROP FUNCTION qldb.live_cursor(text)")
    op.execute(LIVE_CURSOR)


def downgrade() -> None:
    op.execute("DROP FUNCTION qldb.live_cursor(text)")
    op.execute(_V0010.LIVE_CURSOR)
    op.execute("ALTER TABLE qldb.seal_cursor DROP COLUMN probe_below")
    # the tree's levels 0-3 of every live ledger whose chain starts at block 0, as 0005-0010 stored them
    op.execute("""
        CREATE TEMP TABLE qldb_tree_strands ON COMMIT DROP AS
            SELECT l.strand_id FROM qldb.ledger l WHERE l.state = 'live'
               AND (SELECT min(b.sequence_no) FROM qldb.block b WHERE b.strand_id = l.strand_id) = 0;
        INSERT INTO qldb.merkle_node (strand_id, level, idx, hash)
            SELECT b.strand_id, 0, b.sequence_no, b.block_hash FROM qldb.block b
             WHERE b.strand_id IN (SELECT strand_id FROM qldb_tree_strands)
            ON CONFLICT DO NOTHING;
        """)
    for level in (1, 2, 3):
        op.execute(f"""
            INSERT INTO qldb.merkle_node (strand_id, level, idx, hash)
                SELECT a.strand_id, {level}, a.idx / 2, qldb.dot(a.hash, b.hash)
                  FROM qldb.merkle_node a JOIN qldb.merkle_node b
                    ON b.strand_id = a.strand_id AND b.level = a.level AND b.idx = a.idx + 1
                 WHERE a.level = {level - 1} AND a.idx % 2 = 0
                   AND a.strand_id IN (SELECT strand_id FROM qldb_tree_strands)
                ON CONFLICT DO NOTHING
            """)
