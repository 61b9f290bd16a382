"""The check that ends a ``migrate`` run: re-prove from the rows what was just published.

Streams every history row with a server-side cursor: H(data_ion) must equal
data_hash, dot(H(metadata_ion), data_hash) must equal revision_hash, the
JSONB must equal, as text, the canonical JSON of data_ion, and each revision
hash must be the one ``qldb.block`` lists at that block and index.  Then the
chain: each block's previous_block_hash must be the previous block's hash.
(`qldb-migrate check` will add digests from outside the database.)
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from ..verify.hashes import dot
from ..verify.ionhash import ion_hash
from ..verify.ionparse import loads
from .jsoncanon import canonical_json
from .target import Target, connect


def post_load_check(target: Target, result: Any) -> list[str]:
    problems: list[str] = []
    with connect(target) as conn:
        tables = conn.execute("SELECT strand_id, table_name, pg_schema, history_name FROM qldb.ledger_table").fetchall()
        for strand, qldb_name, schema, history in tables:
            problems += _check_history(conn, strand, qldb_name, schema, history)
        problems += _check_chain(conn)
    return problems


def _check_history(conn: psycopg.Connection, strand: str, qldb_name: str, schema: str, history: str) -> list[str]:
    problems: list[str] = []
    query = sql.SQL(
        """SELECT h.document_id, h.version, h.data::text, h.data_ion, h.metadata_ion, h.revision_hash, h.data_hash,
                  h.operation, h.block_sequence, h.index_in_block, b.revision_hashes[h.index_in_block + 1]
           FROM {} h LEFT JOIN qldb.block b ON b.strand_id = %s AND b.sequence_no = h.block_sequence"""
    ).format(sql.Identifier(schema, history))
    with conn.cursor(name=f"check_{history}") as cur:
        cur.itersize = 2000
        cur.execute(query, (strand,))
        for doc, version, data, data_ion, meta_ion, rev_hash, data_hash, op, seq, idx, listed in cur:
            where = f"{schema}.{history} document {doc} v{version} (block {seq}, revision #{idx})"
            rev_hash = bytes(rev_hash)
            if listed is None or bytes(listed) != rev_hash:
                problems.append(f"{where}: revision_hash is not the one qldb.block lists there")
            if data_ion is not None:
                value = loads(bytes(data_ion))
                if data_hash is None or ion_hash(value) != bytes(data_hash):
                    problems.append(f"{where}: H(data_ion) differs from data_hash")
                if data != canonical_json(value):
                    problems.append(f"{where}: data (jsonb) differs from the canonical JSON of data_ion")
            if data_hash is not None or op != "delete":
                computed = dot(ion_hash(loads(bytes(meta_ion))), bytes(data_hash) if data_hash else b"")
                if computed != rev_hash and not (op != "delete" and data_hash is None):
                    problems.append(f"{where}: revision_hash differs from dot(H(metadata_ion), data_hash)")
    return problems


def _check_chain(conn: psycopg.Connection) -> list[str]:
    problems: list[str] = []
    with conn.cursor(name="check_chain") as cur:
        cur.itersize = 10000
        cur.execute("SELECT strand_id, sequence_no, block_hash, previous_block_hash FROM qldb.block "
                    "ORDER BY strand_id, sequence_no")
        last: tuple[str, int, bytes] | None = None
        for strand, seq, block_hash, previous in cur:
            if last is not None and last[0] == strand:
                if seq != last[1] + 1:
                    problems.append(f"qldb.block strand {strand}: blocks {last[1] + 1}..{seq - 1} are missing")
                elif bytes(previous) != last[2]:
                    problems.append(f"qldb.block strand {strand} block {seq}: previous_block_hash breaks the chain")
            last = (strand, seq, bytes(block_hash))
    return problems
