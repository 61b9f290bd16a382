"""The sealer: committed writes become blocks, one per PostgreSQL transaction, continuing QLDB's hash chain.

Writers only append: the revision to ``<table>_history`` with their
transaction's xid (schema 0010), the rare event (a redaction, a new table)
to ``qldb.pending_event``.  One sealer per ledger integrates what has
committed, in batches (the Trillian sequencer's division of labour), finding
it in one snapshot per round through a cursor (``_pending``).  Writers never
wait for it and it takes no lock they need: it reads committed rows and
deletes only the events of transactions that have ended.

Order.  Each write carries ``write_seq``, taken from a sequence when
the write happens — after the row lock on its document was granted.  A
transaction that writes a document another transaction wrote can only do so
after that one committed, so it draws a larger ``write_seq`` than everything
the first one drew.  Sealing the committed transactions in order of their
largest ``write_seq`` therefore puts every document's versions in version
order, whatever the concurrency; a transaction that commits later with a
smaller number wrote nothing they wrote, and may follow them.

Each block is QLDB's: revision hash = dot(H(metadata), H(data)) with H the Ion
Hash of the document's Ion reading (``live.reading``), H(metadata) alone for
a delete; entriesHashList = [H(transactionInfo), Merkle root of the revision
hashes, H(redactionInfo) for a redaction]; entriesHash = its Merkle root;
blockHash = dot(entriesHash, previousBlockHash), the previous block being the
last migrated QLDB block for the first one sealed.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import time
import weakref
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from amazon.ion.core import IonType
from amazon.ion.simple_types import IonPyBytes, IonPyDict
from psycopg import sql

from .. import native
from ..native import canonical_json, prove
from ..pg.copybinary import copy_tuples, row_encoder
from ..pg.rows import exact_binary
from ..pg.target import LOCK_KEY
from ..verify.hashes import dot as reference_dot
from ..verify.hashes import merkle_root
from ..verify.ionhash import ion_hash
from .merkle import Appender, peaks_of
from .reading import ion_millis, ion_reading, metadata, millis_instant, millis_timestamp
from .stored_tree import NodeReader, to_store

SOURCE = "sealed by qldb-migrate seal"

#: the C paths where they apply (False: the Python reference throughout; tests and bench/seal_cost.py compare the two)
FAST_PATH = True


class SealRefused(Exception):
    """The sealer will not go on: another one runs, the chain was restored behind a saved digest, or a queued
    revision is missing.  ``exit_code`` per DESIGN §5."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def seal_lock_key(strand: str) -> tuple[int, int]:
    return LOCK_KEY[0], zlib.crc32(strand.encode()) & 0x7FFFFFFF


@dataclass
class SealStats:
    blocks: int = 0
    revisions: int = 0
    events: int = 0
    tip: int | None = None
    seconds: float = 0.0
    lag_seconds: float | None = None  # age of the oldest write still queued after the round
    pending: int = 0

    def add(self, other: SealStats) -> None:
        self.blocks += other.blocks
        self.revisions += other.revisions
        self.events += other.events
        self.tip = other.tip if other.tip is not None else self.tip
        self.seconds += other.seconds
        self.lag_seconds, self.pending = other.lag_seconds, other.pending


def _encoded(value: Any) -> tuple[bytes, bytes]:
    """(binary Ion, its Ion hash): the C writer where it can, the exact writer otherwise; the hash is of the bytes."""
    encoded, digest = prove(value)
    if encoded is None:
        encoded = exact_binary(value, digest)
    return encoded, digest


def _struct(pairs: list[tuple[str, Any]]) -> IonPyDict:
    out = IonPyDict()
    for key, value in pairs:
        out.add_item(key, value)
    return out


@dataclass
class _Tip:
    sequence: int
    block_hash: bytes
    timestamp: _dt.datetime
    merkle: Appender | None  # None: the stored chain does not start at block 0 (no digest can cover it)


#: per connection and ledger, the tip a round of this sealer committed and its tree's peaks: (sequence, block hash,
#: peaks).  The next round reads the stored tip as always; when it is that block, the peaks are not read again (a
#: stored node or a low-level block range, ~1.4 ms of an empty round's ~6.6 on PostgreSQL 15).  They are what this
#: sealer computed and committed, so nothing is taken on trust that the stored nodes would not give; any other tip
#: (a restore, another sealer since) reads them afresh.
_COMMITTED_TREES: weakref.WeakKeyDictionary[psycopg.Connection, dict[str, tuple[int, bytes, list[bytes]]]] = (
    weakref.WeakKeyDictionary())


def _open_tip(conn: psycopg.Connection, strand: str) -> _Tip:
    """The stored chain's last block and the roots its Merkle tree ends with."""
    row = conn.execute("SELECT sequence_no, block_hash, block_timestamp, (SELECT min(sequence_no) FROM qldb.block "
                       "WHERE strand_id = %s) FROM qldb.block WHERE strand_id = %s ORDER BY sequence_no DESC LIMIT 1",
                       (strand, strand)).fetchone()
    if row is None:
        raise SealRefused(f"ledger {strand} has no blocks: migrate it and cut it over first", 2)
    seq, block_hash, ts, first = row
    block_hash = bytes(block_hash)
    merkle = None
    if first == 0:
        size = seq + 1
        known = _COMMITTED_TREES.get(conn, {}).get(strand)
        if known is not None and known[:2] == (seq, block_hash):
            merkle = Appender(size, list(known[2]), _dot())
        else:
            peaks = peaks_of(size)
            reader = NodeReader(conn, strand, lambda message: SealRefused(
                f"{message}: the stored Merkle tree of its {size} blocks is incomplete (cut-over did not complete?)"))
            reader.fetch(peaks)
            merkle = Appender(size, [reader(*p) for p in peaks], _dot())
    return _Tip(seq, block_hash, ts or _dt.datetime.now(_dt.UTC), merkle)


def _committed(conn: psycopg.Connection, strand: str, tip: _Tip) -> None:
    """Remember the tip a round has just committed, with its tree's peaks (``_COMMITTED_TREES``)."""
    if tip.merkle is not None:
        _COMMITTED_TREES.setdefault(conn, {})[strand] = (tip.sequence, tip.block_hash, list(tip.merkle.peaks))


@dataclass
class _Revision:
    table_id: str
    document_id: str
    version: int
    write_seq: int
    data: str | None = None
    tx_time_ion: str = ""
    operation: str = ""


@dataclass
class _Tx:
    tx_id: str
    revisions: list[_Revision] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    has_events: bool = False


_XID8_MAX = str(2**64 - 1)  # probe_below when the cursor has none: probe every candidate


@dataclass
class _Round:
    """What one round found committed and not sealed: the transactions it takes, and the cursor after it."""

    txs: list[_Tx]
    horizon: str  # the cursor after this round (schema 0010): below it and not waiting, all committed is sealed
    waiting: list[str]
    left_revisions: int  # committed revisions left for the next round (over the round's limit)
    left_age: float | None  # seconds since the oldest of those was written
    probe_below: str  # no sealed revision is of a transaction at or above it (schema 0011; _next_probe_below)


def _pending(conn: psycopg.Connection, strand: str, tables: dict[str, tuple[str, str, str]], limit: int) -> _Round:
    """The committed transactions first in line, in order of their largest write_seq (module docstring).

    Runs in the round's REPEATABLE READ snapshot S, which sees committed rows only.  Candidates are the live
    history rows that the ledger's cursor (``qldb.seal_cursor``, schema 0010) says may not be sealed — a
    transaction at or above its ``horizon``, or one of its ``waiting`` — and that ``qldb.sealed_revision`` does not
    hold, and the queued events.  The cursor becomes S's own: horizon = its xmax, and waiting = the transactions
    running at S.  When the round leaves transactions for the next (over its limit), the horizon stays at the
    oldest of them instead (and waiting keeps the running ones below it): the next round reads again from there,
    probing what this one sealed.  Either way no committed revision is ever passed over.
    """
    # the cursor as this cluster may use it: none, or another cluster's (a logical copy, pg_upgrade), reads as
    # horizon 0 — every live revision is a candidate once, and the cursor this round writes is this cluster's
    # (probe_below, schema 0011: no revision of a transaction at or above it is sealed; NULL, as for another
    # cluster's cursor, probes every candidate)
    xmax, running, cursor_horizon, waiting, probe_below = conn.execute(
        "SELECT pg_snapshot_xmax(s)::text, ARRAY(SELECT pg_snapshot_xip(s))::text[], c.horizon::text, "
        "c.waiting::text[], c.probe_below::text FROM pg_current_snapshot() s CROSS JOIN qldb.live_cursor(%s) c",
        (strand,)).fetchone()
    if int(cursor_horizon) > int(xmax):
        raise SealRefused(
            f"ledger {strand}: the sealer's cursor (qldb.seal_cursor) is at transaction id {cursor_horizon}, beyond "
            f"this cluster's ({xmax}): no round of this cluster's wrote it (changed by hand?), and it would pass over "
            "new writes. Sealing stops; delete the ledger's row of qldb.seal_cursor to make the next round read "
            "every live revision (README: 'After a restore from backup').")
    # The plan must not depend on statistics, which a just cut-over ledger lacks (a fresh xid column, an empty
    # sealed_revision): a sequential scan of a migrated history, or an anti-join that reads the ledger's sealed
    # revisions once per candidate, would make every round cost the size of the ledger.  So the candidates come
    # through the xid index, and "not sealed" is a scalar sub-select (kept a per-row primary-key probe: PostgreSQL
    # does not turn it into a join, as it would NOT EXISTS), skipped at or above probe_below (an OR's arms are
    # evaluated in order).  No JIT: the inflated estimates would compile the
    # query at every round (~60 ms).  The plan is made once per connection (a prepared statement, its generic
    # plan): planning this query was most of an empty round (2.7 ms of ~6.6 on PostgreSQL 15).
    conn.execute("SET LOCAL enable_seqscan = off; SET LOCAL jit = off; SET LOCAL plan_cache_mode = force_generic_plan")
    next_probe_below = _next_probe_below(conn, tables, xmax, probe_below)
    parts = [sql.SQL(
        "SELECT {tid}::text AS table_id, h.document_id, h.version, h.write_seq, h.tx_id, h.xid, h.tx_time AS at, "
        "false AS ev, h.data::text AS data, h.operation, h.tx_time_ion FROM {history} h "
        "WHERE (h.xid >= %(horizon)s::xid8 OR h.xid = ANY(%(waiting)s::xid8[])) "
        "AND (h.xid >= %(probe_below)s::xid8 OR (SELECT true FROM qldb.sealed_revision s "
        "WHERE s.strand_id = %(strand)s AND s.table_id = {tid} "
        "AND s.document_id = h.document_id AND s.version = h.version) IS NULL)"
    ).format(tid=sql.Literal(table_id), history=sql.Identifier(schema, history))
        for table_id, (_name, schema, history) in sorted(tables.items())]
    parts.append(sql.SQL("SELECT NULL, NULL, NULL, e.write_seq, e.tx_id, e.xid, e.at, true, NULL, NULL, NULL "
                         "FROM qldb.pending_event e WHERE e.strand_id = %(strand)s"))
    query = sql.SQL(
        """WITH c AS ({candidates}),
                g AS (SELECT tx_id, max(write_seq) AS last, bool_or(ev) AS has_events, min(xid) AS xid,
                             min(at) AS at, count(*) FILTER (WHERE NOT ev) AS n,
                             row_number() OVER (ORDER BY max(write_seq)) AS rn
                        FROM c GROUP BY tx_id),
                rest AS (SELECT min(xid)::text AS xid, coalesce(sum(n), 0) AS n,
                                extract(epoch FROM clock_timestamp() - min(at)) AS age FROM g WHERE rn > %(limit)s)
           SELECT g.tx_id, g.has_events, c.table_id, c.document_id, c.version, c.write_seq, c.data, c.operation,
                  c.tx_time_ion, rest.xid, rest.n, rest.age
             FROM g CROSS JOIN rest LEFT JOIN c ON c.tx_id = g.tx_id AND NOT c.ev
            WHERE g.rn <= %(limit)s
            ORDER BY g.rn, c.write_seq""").format(candidates=sql.SQL(" UNION ALL ").join(parts))
    txs: dict[str, _Tx] = {}
    horizon, left, age = int(xmax), 0, None
    for (tx_id, has_events, table_id, doc, version, seq, data, operation, tx_time_ion, rest_xid, rest_n,
         rest_age) in conn.execute(
            query, {"horizon": cursor_horizon, "waiting": waiting, "strand": strand, "limit": limit,
                    "probe_below": probe_below or _XID8_MAX}, prepare=True):
        tx = txs.get(tx_id)
        if tx is None:
            tx = txs[tx_id] = _Tx(tx_id, has_events=has_events)
        if table_id is not None:
            tx.revisions.append(_Revision(table_id, doc, version, seq, data, tx_time_ion, operation))
        if rest_xid is not None:  # the round leaves transactions: the horizon stays at the oldest of them
            horizon, left, age = min(horizon, int(rest_xid)), int(rest_n), float(rest_age)
    with_events = [tx_id for tx_id, tx in txs.items() if tx.has_events]
    if with_events:
        names = ("tx_id", "write_seq", "kind", "table_id", "table_name", "document_id", "version", "statement", "at")
        for row in conn.execute(
                "SELECT tx_id, write_seq, kind, table_id, table_name, document_id, version, statement, at "
                "FROM qldb.pending_event WHERE strand_id = %s AND tx_id = ANY(%s) ORDER BY write_seq",
                (strand, with_events)):
            event = dict(zip(names, row, strict=True))
            txs[event["tx_id"]].events.append(event)
    return _Round(list(txs.values()), str(horizon), sorted((x for x in running if int(x) < horizon), key=int), left,
                  age, next_probe_below)


def _next_probe_below(conn: psycopg.Connection, tables: dict[str, tuple[str, str, str]], xmax: str,
                      probe_below: str | None) -> str:
    """The cursor's probe_below after this round: no sealed revision is of a transaction at or above it.

    What this cluster seals is below its snapshot's xmax.  Rows it did not seal may lie above: a logical copy
    keeps the old cluster's xids, far ahead of the new one's.  So a round that starts without a bound of this
    cluster's (none, or another cluster's cursor) raises it above every live row it can see (once: the
    highest xid through the index), and later rounds never lower it; until this cluster's ids pass the copied
    ones, rounds probe every candidate (correct, but slower).
    """
    bound = int(xmax)
    if probe_below is None:
        highest = conn.execute(sql.SQL("SELECT max(m)::text FROM ({}) x").format(sql.SQL(" UNION ALL ").join(
            sql.SQL("SELECT max(xid) AS m FROM {} WHERE xid IS NOT NULL").format(sql.Identifier(schema, history))
            for _name, schema, history in tables.values()))).fetchone()[0] if tables else None
        if highest is not None:
            bound = max(bound, int(highest) + 1)
    else:
        bound = max(bound, int(probe_below))
    return str(bound)


def _advance(conn: psycopg.Connection, strand: str, found: _Round) -> None:
    """Move the ledger's cursor, in the round's transaction: it commits with the blocks it vouches for."""
    conn.execute("INSERT INTO qldb.seal_cursor (strand_id, horizon, waiting, cluster, probe_below) VALUES (%s, "
                 "%s::xid8, %s::xid8[], (pg_control_system()).system_identifier::text, %s::xid8) ON CONFLICT "
                 "(strand_id) DO UPDATE SET horizon = excluded.horizon, waiting = excluded.waiting, "
                 "cluster = excluded.cluster, probe_below = excluded.probe_below",
                 (strand, found.horizon, found.waiting, found.probe_below))


def _dequeue(conn: psycopg.Connection, strand: str, txs: list[_Tx]) -> None:
    """Delete the queued events of the sealed transactions (revisions have no queue: schema 0010)."""
    with_events = [t.tx_id for t in txs if t.has_events]
    if with_events:
        conn.execute("DELETE FROM qldb.pending_event WHERE strand_id = %s AND tx_id = ANY(%s)", (strand, with_events))


def _data(strand: str, ledger_tables: dict[str, tuple[str, str, str]], rev: _Revision) -> tuple[bytes, bytes]:
    """(binary Ion, Ion hash) of a revision's data: read in C from the jsonb text where the C reader states it for
    certain, else by ``ion_reading`` in Python (the reference, which also decides what cannot be sealed)."""
    if rev.data is None:
        raise SealRefused(f"ledger {strand}: revision {rev.document_id} v{rev.version} has no data to seal: a "
                          "redacted revision, which is already in a block and which this round should not have read "
                          "as waiting; nothing was written. If the ledger's row of qldb.seal_cursor was changed by "
                          "hand, delete it, and the next round probes every live revision")
    if FAST_PATH:
        fast = native.json_ion(rev.data)
        if fast is not None:
            return fast
    try:
        return _encoded(ion_reading(rev.data))
    except (ValueError, ArithmeticError, RecursionError, MemoryError) as exc:
        # the trigger bounds what it accepts; a row that still will not encode stops the sealer here,
        # named, rather than in a traceback on every later run
        raise SealRefused(f"ledger {strand}: revision {rev.document_id} v{rev.version} of table "
                          f"{ledger_tables[rev.table_id][0]} cannot be read as Ion ({type(exc).__name__}: "
                          f"{str(exc)[:200]}): sealing stops here") from None


def _metadata(rev: _Revision, tx_id: str) -> tuple[bytes, bytes]:
    """(binary Ion, Ion hash) of a revision's metadata, written in C where it can be, else built in Python."""
    if FAST_PATH:
        fast = native.revision_metadata(rev.document_id, rev.version, rev.tx_time_ion, tx_id)
        if fast is not None:
            return fast
    return _encoded(metadata(rev.document_id, rev.version, rev.tx_time_ion, tx_id))


def _revision_block(strand: str, ledger_tables: dict[str, tuple[str, str, str]], seq: int,
                    redaction_blocks: dict[tuple[str, str, int], int], tx: _Tx) -> dict[str, Any]:
    """Everything the sealer writes for one transaction's block (its hash comes later, chained).

    ``tx_info`` is (binary Ion, Ion hash, jsonb text) of its transactionInfo: written in C for a block without
    statements (nearly every one), built as an Ion value and encoded otherwise.
    """
    revisions, sealed = [], []
    latest = ""
    dot = _dot()
    for index, rev in enumerate(tx.revisions):
        meta_ion, meta_hash = _metadata(rev, tx.tx_id)
        data_ion = data_hash = None
        if rev.operation != "delete":
            data_ion, data_hash = _data(strand, ledger_tables, rev)
        rev_hash = dot(meta_hash, data_hash or b"")
        revisions.append(rev_hash)
        sealed.append((strand, rev.table_id, rev.document_id, rev.version, seq, index, rev_hash, data_hash, meta_ion,
                       data_ion))
        if rev.tx_time_ion > latest:
            latest = rev.tx_time_ion
    documents = [(rev.document_id, ledger_tables[rev.table_id][0], rev.table_id) for rev in tx.revisions]
    tx_info = native.tx_info(documents) if FAST_PATH and not tx.events else None
    redaction = None
    if tx_info is None:
        tx_info, redaction, latest = _tx_info_value(strand, redaction_blocks, tx, documents, latest)
    return {"revisions": revisions, "sealed": sealed, "tx_info": tx_info, "redaction": redaction,
            "documents": [r.document_id for r in tx.revisions], "latest": latest}


def _tx_info_value(strand: str, redaction_blocks: dict[tuple[str, str, int], int], tx: _Tx,
                   documents: list[tuple[str, str, str]], latest: str,
                   ) -> tuple[tuple[bytes, bytes, str], IonPyDict | None, str]:
    """The transactionInfo (and redactionInfo) built as Ion values, the reference: (tx_info, redaction, latest)."""
    ion_documents = IonPyDict()
    for document_id, name, table_id in documents:
        ion_documents.add_item(document_id, _struct([("tableName", name), ("tableId", table_id), ("statements", [])]))
    statements, redaction = [], None
    for event in tx.events:
        text = event["statement"]
        if event["kind"] == "redaction":
            at = redaction_blocks[(event["table_id"], event["document_id"], event["version"])]
            address = _struct([("strandId", strand), ("sequenceNo", at)])
            text = (f"EXEC redact_revision `{{strandId:\"{strand}\",sequenceNo:{at}}}`, '{event['table_id']}', "
                    f"'{event['document_id']}'")
            redaction = _struct([("tableId", event["table_id"]), ("documentId", event["document_id"]),
                                 ("version", event["version"]), ("blockAddress", address)])
        started = ion_millis(event["at"])
        latest = max(latest, started)
        statements.append(_struct([("statement", text), ("startTime", millis_timestamp(started)),
                                   ("statementDigest", IonPyBytes.from_value(IonType.BLOB, ion_hash(text)))]))
    value = _struct([("statements", statements), ("documents", ion_documents)])
    encoded, digest = _encoded(value)
    return (encoded, digest, canonical_json(value)), redaction, latest


#: transactions sealed in one round (one transaction of the sealer's); a round that seals fewer took all there was.
#: Each round reads every committed revision not sealed yet (to order them): on a backlog, 2000 rather than 500 cut
#: the sealer's backend CPU by ~40% (bench/seal_cost.py, with the queue of schema 0005); a round of 2000 takes
#: ~0.3 s.
ROUND_LIMIT = 2000
#: the largest round ``seal`` takes on a backlog (each round reads the whole backlog again; a round this size holds
#: some tens of MB and takes a few seconds)
BACKLOG_ROUND_LIMIT = 20000


def next_limit(previous: SealStats | None) -> int:
    """The next round's limit: ROUND_LIMIT, or up to BACKLOG_ROUND_LIMIT while the last round left a backlog, which
    every round reads again whole (fewer, larger rounds read it fewer times)."""
    if previous is None:
        return ROUND_LIMIT
    return max(ROUND_LIMIT, min(previous.pending, BACKLOG_ROUND_LIMIT))


def seal_once(conn: psycopg.Connection, strand: str, limit: int = ROUND_LIMIT) -> SealStats:
    """Seal up to ``limit`` committed transactions of ``strand`` in one REPEATABLE READ transaction of its own."""
    started = time.perf_counter()
    stats = SealStats()
    conn.rollback()
    isolation = conn.isolation_level
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ  # one snapshot for the round (_pending)
    try:
        tables = {tid: (name, schema, history) for tid, name, schema, history in conn.execute(
            "SELECT table_id, table_name, pg_schema, history_name FROM qldb.ledger_table WHERE strand_id = %s",
            (strand,))}
        found = _pending(conn, strand, tables, limit)
        tip = _open_tip(conn, strand)
        stats.tip = tip.sequence
        if found.txs:
            redaction_blocks = _redaction_blocks(conn, strand, found.txs, tables)
            _write_blocks(conn, strand, tip, found.txs, tables, redaction_blocks, stats)
            _dequeue(conn, strand, found.txs)
        _advance(conn, strand, found)
        conn.commit()
        _committed(conn, strand, tip)
    finally:
        conn.rollback()
        conn.isolation_level = isolation
    stats.pending, stats.lag_seconds = found.left_revisions, found.left_age
    stats.seconds = time.perf_counter() - started
    return stats


def _redaction_blocks(conn: psycopg.Connection, strand: str, txs: list[_Tx],
                      tables: dict[str, tuple[str, str, str]]) -> dict[tuple[str, str, int], int]:
    """The block each redacted revision is in (its redactionInfo names it)."""
    out = {}
    for tx in txs:
        for event in tx.events:
            if event["kind"] != "redaction":
                continue
            key = (event["table_id"], event["document_id"], event["version"])
            _name, schema, history = tables[key[0]]
            row = conn.execute(sql.SQL(
                "SELECT coalesce(h.block_sequence, s.block_sequence) FROM {} h LEFT JOIN qldb.sealed_revision s "
                "ON s.strand_id = %s AND s.table_id = %s AND s.document_id = h.document_id AND s.version = h.version "
                "WHERE h.document_id = %s AND h.version = %s").format(sql.Identifier(schema, history)),
                (strand, key[0], key[1], key[2])).fetchone()
            if row is None or row[0] is None:
                raise SealRefused(f"ledger {strand}: the redaction of {key[1]} v{key[2]} names no sealed revision")
            out[key] = row[0]
    return out


def _dot() -> Any:
    """QLDB's dot: in C (held to the reference by tests/test_seal_native.py) unless the sealer runs the reference."""
    return native.dot if FAST_PATH else reference_dot


def _now() -> _dt.datetime:
    """The clock blocks are stamped with (no earlier than the last block's, nor than their transactions'); one
    function, so that a test can seal the same queue twice at the same time and compare the blocks."""
    return _dt.datetime.now(_dt.UTC)


def _write_blocks(conn: psycopg.Connection, strand: str, tip: _Tip, txs: list[_Tx],
                  tables: dict[str, tuple[str, str, str]], redaction_blocks: dict[tuple[str, str, int], int],
                  stats: SealStats) -> None:
    blocks, sealed, nodes = [], [], []
    now = _now()
    dot = _dot()
    rendered_from: _dt.datetime | None = None
    rendered = parsed_from = ""
    parsed = now
    for tx in txs:
        seq = tip.sequence + 1
        built = _revision_block(strand, tables, seq, redaction_blocks, tx)
        tx_info_ion, tx_info_hash, tx_info_json = built["tx_info"]
        entries = [tx_info_hash]
        if built["revisions"]:
            entries.append(merkle_root(built["revisions"], dot))
        redaction_ion = None
        if built["redaction"] is not None:
            redaction_ion, redaction_hash = _encoded(built["redaction"])
            entries.append(redaction_hash)
        entries_hash = merkle_root(entries, dot)
        block_hash = dot(entries_hash, tip.block_hash)
        moment = max(now, tip.timestamp)
        if moment is not rendered_from:  # within a round the blocks mostly share one instant: render it once
            rendered_from, rendered = moment, ion_millis(moment)
        stamp = built["latest"] if built["latest"] > rendered else rendered
        if stamp != parsed_from:
            parsed_from, parsed = stamp, millis_instant(stamp)
        moment = parsed
        blocks.append((strand, seq, block_hash, entries_hash, tip.block_hash, entries, built["revisions"],
                       built["documents"], tx.tx_id, moment, stamp, tx_info_json, tx_info_ion,
                       redaction_ion, SOURCE, 0))
        sealed.extend(built["sealed"])
        if tip.merkle is not None:
            nodes += [(strand, level, idx, h) for level, idx, h in to_store(tip.merkle.append(block_hash))]
        tip.sequence, tip.block_hash, tip.timestamp = seq, block_hash, moment
        stats.blocks += 1
        stats.revisions += len(built["revisions"])
        stats.events += len(tx.events)
    _copy(conn, "block", _BLOCK_COLUMNS, blocks)
    try:
        _copy(conn, "sealed_revision", _SEALED_COLUMNS, sealed)
    except psycopg.errors.UniqueViolation as exc:  # the primary key, not the round's probe, keeps a seal single
        raise SealRefused(
            f"ledger {strand}: a revision this round read as not sealed is already in a block "
            f"({exc.diag.message_detail}); nothing was written. Another sealer ran at the same time, or the ledger's "
            "row of qldb.seal_cursor was changed by hand: delete that row, and the next round probes every live "
            "revision") from None
    _copy(conn, "merkle_node", _NODE_COLUMNS, nodes)
    stats.tip = tip.sequence


# (column, type) of the rows the sealer writes, in the order it builds them
_BLOCK_COLUMNS = (("strand_id", "text"), ("sequence_no", "int8"), ("block_hash", "bytea"), ("entries_hash", "bytea"),
                  ("previous_block_hash", "bytea"), ("entries_hash_list", "bytea[]"), ("revision_hashes", "bytea[]"),
                  ("revision_documents", "text[]"), ("transaction_id", "text"), ("block_timestamp", "timestamptz"),
                  ("block_timestamp_ion", "text"), ("transaction_info", "jsonb"), ("transaction_info_ion", "bytea"),
                  ("redaction_info_ion", "bytea"), ("source_object", "text"), ("run_id", "int8"))
_SEALED_COLUMNS = (("strand_id", "text"), ("table_id", "text"), ("document_id", "text"), ("version", "int4"),
                   ("block_sequence", "int8"), ("index_in_block", "int4"), ("revision_hash", "bytea"),
                   ("data_hash", "bytea"), ("metadata_ion", "bytea"), ("data_ion", "bytea"))
_NODE_COLUMNS = (("strand_id", "text"), ("level", "int4"), ("idx", "int8"), ("hash", "bytea"))
_ENCODERS = {columns: row_encoder(t for _c, t in columns) for columns in (_BLOCK_COLUMNS, _SEALED_COLUMNS,
                                                                           _NODE_COLUMNS)}


def _copy(conn: psycopg.Connection, table: str, columns: tuple[tuple[str, str], ...],
          rows: list[tuple[Any, ...]]) -> None:
    """Binary COPY (``pg.copybinary``, in C where the extension is built): no per-value adaptation in Python."""
    if not rows:
        return
    copy_tuples(conn, sql.Identifier("qldb", table), tuple(c for c, _t in columns), map(_ENCODERS[columns], rows))


# --- refusing to fork a chain that was restored behind what the outside world saw ---------------------------------


def state_path(directory: Path, strand: str) -> Path:
    return directory / f"seal-{strand}.json"


def check_not_behind(conn: psycopg.Connection, strand: str, seen: list[tuple[int, bytes, str]]) -> None:
    """Refuse when the stored chain no longer holds a block something outside the database has seen.

    ``seen`` lists (block, hash, where it was seen): the sealer's own state file, and digests saved outside.
    After a restore from backup the chain may end before them; sealing on would give those block numbers new
    blocks — a fork that every saved digest and proof would contradict.
    """
    stored_tip = conn.execute("SELECT max(sequence_no) FROM qldb.block WHERE strand_id = %s", (strand,)).fetchone()[0]
    for seq, block_hash, where in seen:
        row = conn.execute("SELECT block_hash FROM qldb.block WHERE strand_id = %s AND sequence_no = %s",
                           (strand, seq)).fetchone()
        if row is None:
            raise SealRefused(
                f"ledger {strand}: {where} has seen block {seq}, but the database's chain ends at block {stored_tip}: "
                "it was restored from a backup taken before that; sealing now would fork the chain. Restore a "
                f"backup or WAL that reaches block {seq}, or, if those blocks are lost for good, follow "
                "'After a restore from backup' in the README.")
        if block_hash and bytes(row[0]) != block_hash:
            raise SealRefused(
                f"ledger {strand}: block {seq} in the database differs from the one {where} has seen: the chain was "
                "forked or rewritten; sealing stops (README: 'After a restore from backup').")


def load_state(path: Path) -> tuple[int, bytes] | None:
    try:
        data = json.loads(path.read_text())
        return int(data["tip"]), base64.b64decode(data["blockHash"])
    except (OSError, ValueError, KeyError):
        return None


def _stored_tip(conn: psycopg.Connection, strand: str) -> tuple[int, bytes] | None:
    """(sequence_no, block_hash) of the ledger's last stored block, read outside any open transaction."""
    row = conn.execute("SELECT sequence_no, block_hash FROM qldb.block WHERE strand_id = %s ORDER BY sequence_no "
                       "DESC LIMIT 1", (strand,)).fetchone()
    conn.rollback()
    return row


def save_state(path: Path, conn: psycopg.Connection, strand: str, fork: dict[str, Any] | None = None) -> None:
    """Remember the stored tip; every restore accepted with --accept-restore stays in the file's ``forks``.

    The forks are the record an auditor asks for after a restore: which block the sealer had reached, with its
    hash, and where the chain went on from. Overwriting them with the new tip would erase that evidence.
    """
    row = _stored_tip(conn, strand)
    if row is None:
        return
    try:
        forks = list(json.loads(path.read_text()).get("forks", []))
    except (OSError, ValueError, AttributeError):
        forks = []
    if fork is not None:
        forks.append(fork)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"strandId": strand, "tip": row[0], "blockHash": base64.b64encode(bytes(row[1])).decode(),
                               "savedAt": _dt.datetime.now(_dt.UTC).isoformat(), "forks": forks}, indent=1))
    tmp.replace(path)


def accepted_fork(conn: psycopg.Connection, strand: str, state: tuple[int, bytes]) -> dict[str, Any]:
    """What --accept-restore gives up: the block the sealer had sealed, and the stored tip the chain goes on from."""
    row = _stored_tip(conn, strand)
    return {"previousTip": state[0], "previousBlockHash": base64.b64encode(state[1]).decode(),
            "storedTip": None if row is None else row[0],
            "storedBlockHash": None if row is None else base64.b64encode(bytes(row[1])).decode(),
            "acceptedAt": _dt.datetime.now(_dt.UTC).isoformat()}


__all__ = ["ROUND_LIMIT", "SealRefused", "SealStats", "accepted_fork", "check_not_behind",
           "load_state", "next_limit", "save_state", "seal_lock_key", "seal_once", "state_path"]
