"""In-database verification for auditors who will not install the tool.

PL/pgSQL over PostgreSQL's built-in sha256(): QLDB's dot, Merkle roots, the
block checks that need no Ion (entries hash, block hash, revisions root among
the entries, chain links) and digest roots.  Limits: Ion hashing of revision
data, metadata and transactionInfo stays in the tool (``qldb-migrate check``);
these functions trust the stored revision hashes and re-prove everything
above them.  They are slow next to the tool (a few thousand blocks a second)
but need nothing but SQL:

    SELECT * FROM qldb.verify_chain();                          -- one row per problem
    SELECT qldb.digest_root('strand', 123);                     -- Merkle root over blocks 0..123
    SELECT qldb.digest_matches('strand', 123, decode('…', 'base64'));

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        r"""
        CREATE FUNCTION qldb.dot(a bytea, b bytea) RETURNS bytea
        LANGUAGE plpgsql IMMUTABLE STRICT AS $$
        DECLARE
            i int;
            x int;
            y int;
        BEGIN
            IF length(a) = 0 THEN RETURN b; END IF;
            IF length(b) = 0 THEN RETURN a; END IF;
            -- order by bytes compared as signed integers, from the last byte to the first
            FOR i IN REVERSE length(a) - 1 .. 0 LOOP
                x := get_byte(a, i); IF x > 127 THEN x := x - 256; END IF;
                y := get_byte(b, i); IF y > 127 THEN y := y - 256; END IF;
                IF x < y THEN RETURN sha256(a || b); END IF;
                IF x > y THEN RETURN sha256(b || a); END IF;
            END LOOP;
            RETURN sha256(a || b);
        END $$;

        CREATE FUNCTION qldb.merkle_root(leaves bytea[]) RETURNS bytea
        LANGUAGE plpgsql IMMUTABLE AS $$
        DECLARE
            level bytea[] := leaves;
            next_level bytea[];
            n int;
            i int;
        BEGIN
            IF leaves IS NULL OR cardinality(leaves) = 0 THEN RETURN ''::bytea; END IF;
            WHILE cardinality(level) > 1 LOOP
                next_level := '{}';
                n := cardinality(level);
                i := 1;
                WHILE i < n LOOP
                    next_level := next_level || qldb.dot(level[i], level[i + 1]);
                    i := i + 2;
                END LOOP;
                IF n % 2 = 1 THEN next_level := next_level || level[n]; END IF;
                level := next_level;
            END LOOP;
            RETURN level[1];
        END $$;

        CREATE FUNCTION qldb.verify_chain(p_strand text DEFAULT NULL)
        RETURNS TABLE (strand_id text, sequence_no bigint, problem text)
        LANGUAGE plpgsql STABLE AS $$
        DECLARE
            r record;
            prev_strand text := NULL;
            prev_seq bigint;
            prev_hash bytea;
            computed bytea;
        BEGIN
            FOR r IN SELECT b.* FROM qldb.block b
                     WHERE p_strand IS NULL OR b.strand_id = p_strand
                     ORDER BY b.strand_id, b.sequence_no LOOP
                strand_id := r.strand_id; sequence_no := r.sequence_no;
                computed := qldb.merkle_root(r.entries_hash_list);
                IF computed IS DISTINCT FROM r.entries_hash THEN
                    problem := 'entries_hash differs from the Merkle root of entries_hash_list'; RETURN NEXT;
                END IF;
                IF qldb.dot(r.entries_hash, r.previous_block_hash) IS DISTINCT FROM r.block_hash THEN
                    problem := 'block_hash differs from dot(entries_hash, previous_block_hash)'; RETURN NEXT;
                END IF;
                IF cardinality(r.revision_hashes) > 0
                   AND NOT (qldb.merkle_root(r.revision_hashes) = ANY (r.entries_hash_list)) THEN
                    problem := 'Merkle root of revision_hashes is not in entries_hash_list'; RETURN NEXT;
                END IF;
                IF r.strand_id IS NOT DISTINCT FROM prev_strand THEN
                    IF r.sequence_no <> prev_seq + 1 THEN
                        problem := format('blocks %s..%s are missing', prev_seq + 1, r.sequence_no - 1); RETURN NEXT;
                    ELSIF r.previous_block_hash IS DISTINCT FROM prev_hash THEN
                        problem := 'previous_block_hash is not the hash of the block before it'; RETURN NEXT;
                    END IF;
                ELSIF r.sequence_no <> 0 THEN
                    problem := format('chain starts at block %s, not 0: its predecessor is unanchored', r.sequence_no);
                    RETURN NEXT;
                END IF;
                prev_strand := r.strand_id; prev_seq := r.sequence_no; prev_hash := r.block_hash;
            END LOOP;
        END $$;

        CREATE FUNCTION qldb.digest_root(p_strand text, p_tip bigint) RETURNS bytea
        LANGUAGE sql STABLE AS $$
            SELECT CASE WHEN count(*) = p_tip + 1 THEN qldb.merkle_root(array_agg(block_hash ORDER BY sequence_no)) END
            FROM qldb.block WHERE strand_id = p_strand AND sequence_no <= p_tip
        $$;

        CREATE FUNCTION qldb.digest_matches(p_strand text, p_tip bigint, p_digest bytea) RETURNS boolean
        LANGUAGE sql STABLE AS $$ SELECT qldb.digest_root(p_strand, p_tip) = p_digest $$;
        """
    )


def downgrade() -> None:
    op.execute(
        "DROP FUNCTION qldb.digest_matches(text, bigint, bytea), qldb.digest_root(text, bigint), "
        "qldb.verify_chain(text), qldb.merkle_root(bytea[]), qldb.dot(bytea, bytea)"
    )
