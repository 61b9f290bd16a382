"""``check``: re-prove the migrated ledger from PostgreSQL rows, anchored by a digest kept outside.

Anyone who can write to the database can rewrite the hashes stored in it as
well as the data.  So the rows are re-proved bottom-up — data -> data hash ->
revision hash -> the block's revision list -> entries -> block hash -> chain
-> digest root — and the result is *anchored* only when a digest file given
from outside the database matches the recomputed root.  Digests stored in
``qldb.digest`` are checked too, but they live in the database and anchor
nothing.  Everything streams through server-side cursors: memory stays flat.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from .. import native
from ..native import canonical_json
from ..verify.chain import Digest, DigestOutcome
from ..verify.findings import BlockAddress, Finding, Kind, Location, Severity
from ..verify.hashes import MerkleAccumulator, dot, merkle_root
from ..verify.ionhash import ion_hash
from ..verify.ionparse import IonParseError, loads


@dataclass
class CheckResult:
    findings: list[Finding] = field(default_factory=list)
    blocks: int = 0
    rows: int = 0
    tables: int = 0
    outside: list[DigestOutcome] = field(default_factory=list)
    stored: list[DigestOutcome] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.is_error]

    @property
    def anchored(self) -> bool:
        return any(o.matched for o in self.outside) and not any(o.matched is False for o in self.outside)


def _hash_error(code: str, message: str, where: Location, expected: Any = None, computed: Any = None) -> Finding:
    return Finding(code, Kind.HASH, Severity.ERROR, message, where, expected, computed)


def _consistency(code: str, message: str, where: Location, expected: Any = None, found: Any = None) -> Finding:
    return Finding(code, Kind.CONSISTENCY, Severity.ERROR, message, where, expected, found)


_UNPARSEABLE = object()


def _parse(ion: Any, column: str, where: Location, result: CheckResult) -> Any:
    """The Ion value of a bytea column, or ``_UNPARSEABLE`` with a finding: a tampered column must be named."""
    try:
        return loads(bytes(ion))
    except IonParseError as exc:
        result.findings.append(_hash_error(f"{column.replace('_', '-')}-invalid", f"{column} is not valid Ion: {exc}",
                                           where))
        return _UNPARSEABLE


def _hash_of(ion: Any, value: Any) -> bytes:
    """H of a column's Ion: straight from its bytes where the C hasher can state it, else of the parsed value."""
    return native.hash_binary(bytes(ion)) or ion_hash(value)


def _b(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


def run_check(conn: psycopg.Connection, outside: list[Digest]) -> CheckResult:
    started = time.perf_counter()
    # One snapshot for the whole check: a migration that commits meanwhile must not show the
    # blocks of one state and the rows of another (READ COMMITTED would, statement by statement).
    conn.commit()
    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
    result = CheckResult()
    result.outside = [DigestOutcome(d) for d in outside]
    stored = conn.execute("SELECT strand_id, tip_sequence_no, digest, source FROM qldb.digest").fetchall()
    result.stored = [DigestOutcome(Digest(bytes(d), BlockAddress(s, t), f"qldb.digest ({src})"))
                     for s, t, d, src in stored]
    _check_blocks(conn, result)
    tables = conn.execute(
        "SELECT strand_id, table_id, table_name, pg_schema, current_name, history_name FROM qldb.ledger_table "
        "ORDER BY strand_id, table_name"
    ).fetchall()
    result.tables = len(tables)
    for strand, _table_id, qldb_name, schema, current, history in tables:
        _check_history(conn, result, strand, qldb_name, schema, history)
        _check_current(conn, result, qldb_name, schema, current, history)
    _check_block_rows_claimed(conn, result, tables)
    _check_counts(conn, result, tables)
    for outcome in result.outside:
        if outcome.matched is None:
            outcome.unreached_reason = "its tip is not in the database"
            result.findings.append(
                Finding("digest-not-reached", Kind.UNPROVEN, Severity.WARNING,
                        f"digest {outcome.digest.source}: tip block {outcome.digest.tip.sequence_no} is not stored",
                        Location(block=outcome.digest.tip))
            )
    if not result.anchored and not result.errors:
        result.findings.append(
            Finding("not-anchored", Kind.UNPROVEN, Severity.WARNING,
                    "internally consistent, not anchored: no digest from outside the database was given or matched; "
                    "whoever can write to the database could have rewritten data and hashes together",
                    Location())
        )
    conn.rollback()
    result.seconds = time.perf_counter() - started
    return result


def _check_blocks(conn: psycopg.Connection, result: CheckResult) -> None:
    digests_by_tip: dict[tuple[str, int], list[DigestOutcome]] = defaultdict(list)
    for outcome in result.outside + result.stored:
        digests_by_tip[(outcome.digest.tip.strand_id, outcome.digest.tip.sequence_no)].append(outcome)
    with conn.cursor(name="check_blocks") as cur:
        cur.itersize = 2000
        cur.execute(
            "SELECT strand_id, sequence_no, block_hash, entries_hash, previous_block_hash, entries_hash_list, "
            "revision_hashes, transaction_id, transaction_info::text, transaction_info_ion, redaction_info_ion, "
            "source_object FROM qldb.block ORDER BY strand_id, sequence_no"
        )
        last: tuple[str, int, bytes] | None = None
        merkle = MerkleAccumulator()
        chain_ok = True
        for (strand, seq, block_hash, entries_hash, previous, entries, revisions, _tx_id, tx_json, tx_ion,
             redaction_ion, source) in cur:
            result.blocks += 1
            where = Location(f"qldb.block ({source})", BlockAddress(strand, seq))
            block_hash, entries_hash, previous = bytes(block_hash), bytes(entries_hash), bytes(previous)
            entries = [bytes(e) for e in entries]
            entry_set = set(entries)
            if merkle_root(entries) != entries_hash:
                result.findings.append(_hash_error("entries-hash-mismatch", "entries_hash differs from the Merkle "
                                                   "root of entries_hash_list", where, entries_hash,
                                                   merkle_root(entries)))
            computed = dot(entries_hash, previous)
            if computed != block_hash:
                result.findings.append(_hash_error("block-hash-mismatch", "block_hash differs from "
                                                   "dot(entries_hash, previous_block_hash)", where, block_hash,
                                                   computed))
            if revisions and merkle_root([bytes(r) for r in revisions]) not in entry_set:
                result.findings.append(_hash_error("revisions-root-not-in-entries", "Merkle root of "
                                                   "revision_hashes is not in entries_hash_list", where))
            for name, ion in (("transaction_info_ion", tx_ion), ("redaction_info_ion", redaction_ion)):
                if ion is not None and (value := _parse(ion, name, where, result)) is not _UNPARSEABLE:
                    if _hash_of(ion, value) not in entry_set:
                        result.findings.append(_hash_error(f"{name.replace('_', '-')}-not-in-entries",
                                                           f"H({name}) is not in entries_hash_list", where))
                    if name == "transaction_info_ion" and tx_json != canonical_json(value):
                        result.findings.append(_consistency("transaction-info-json-mismatch", "transaction_info "
                                                            "(jsonb) differs from the canonical JSON of its Ion",
                                                            where))
            if last is None or last[0] != strand:
                merkle = MerkleAccumulator()
                chain_ok = seq == 0
                if seq != 0:
                    result.findings.append(Finding("partial", Kind.UNPROVEN, Severity.WARNING,
                                                   f"the stored chain starts at block {seq}, not 0", where))
            elif seq != last[1] + 1:
                chain_ok = False
                result.findings.append(_consistency("gap", f"blocks {last[1] + 1}..{seq - 1} are missing from "
                                                    "qldb.block", where, last[1] + 1, seq))
            elif previous != last[2]:
                chain_ok = False
                result.findings.append(_hash_error("chain-link-mismatch", "previous_block_hash is not the "
                                                   "stored hash of the block before it", where, last[2], previous))
            if chain_ok:
                merkle.append(block_hash)
            for outcome in digests_by_tip.get((strand, seq), []):
                if not chain_ok:
                    outcome.failed = True
                    outcome.unreached_reason = "the stored chain before its tip is broken"
                    continue
                root = merkle.root()
                if not outcome.record(f"merkle root over stored blocks 0..{seq}", root):
                    result.findings.append(_hash_error("digest-mismatch", f"digest {outcome.digest.source} does "
                                                       "not match the root recomputed from qldb.block", where,
                                                       outcome.digest.digest, root))
            last = (strand, seq, block_hash)


def _check_history(conn: psycopg.Connection, result: CheckResult, strand: str, qldb_name: str, schema: str,
                   history: str) -> None:
    query = sql.SQL(
        """SELECT h.document_id, h.version, h.data::text, h.data_ion, h.metadata_ion, h.revision_hash, h.data_hash,
                  h.operation, h.redacted, h.tx_id, h.block_sequence, h.index_in_block,
                  b.revision_hashes[h.index_in_block + 1], b.revision_documents[h.index_in_block + 1],
                  b.transaction_id, b.sequence_no IS NOT NULL
           FROM {} h LEFT JOIN qldb.block b ON b.strand_id = %s AND b.sequence_no = h.block_sequence"""
    ).format(sql.Identifier(schema, history))
    with conn.cursor(name=f"check_{history}") as cur:
        cur.itersize = 2000
        cur.execute(query, (strand,))
        for (doc, version, data, data_ion, meta_ion, rev_hash, data_hash, op, redacted, tx_id, seq, idx, listed,
             listed_doc, block_tx, block_exists) in cur:
            result.rows += 1
            where = Location(None, BlockAddress(strand, seq), idx, doc, version, f"{schema}.{history}")
            rev_hash, data_hash = bytes(rev_hash), _b(data_hash)
            if not block_exists:
                result.findings.append(_consistency("row-without-block", "history row names a block that "
                                                    "qldb.block does not hold", where))
            elif _b(listed) != rev_hash or listed_doc != doc:
                result.findings.append(_hash_error("row-not-in-block", "revision_hash (or document) is not the one "
                                                   "qldb.block lists at that block and index", where, _b(listed),
                                                   rev_hash))
            if data_ion is not None:
                value = _parse(data_ion, "data_ion", where, result)
                if value is not _UNPARSEABLE:
                    computed = _hash_of(data_ion, value)
                    if computed != data_hash:
                        result.findings.append(_hash_error("data-hash-mismatch", "H(data_ion) differs from "
                                                           "data_hash", where, data_hash, computed))
                    if data != canonical_json(value):
                        result.findings.append(_consistency("jsonb-mismatch", "data (jsonb) differs, as text, from "
                                                            "the canonical JSON of data_ion", where))
            elif data is not None and not redacted:
                result.findings.append(_consistency("jsonb-without-ion", "data (jsonb) has no data_ion to prove it",
                                                    where))
            if redacted and (data is not None or data_ion is not None):
                result.findings.append(_consistency("redacted-with-data", "redacted revision still holds data", where))
            meta_value = _parse(meta_ion, "metadata_ion", where, result)
            if meta_value is not _UNPARSEABLE:
                computed = dot(_hash_of(meta_ion, meta_value), data_hash or b"")
                if computed != rev_hash and not (op == "delete" and data_hash is None):
                    result.findings.append(_hash_error("revision-hash-mismatch", "revision_hash differs from "
                                                       "dot(H(metadata_ion), data_hash)", where, rev_hash, computed))
                meta_doc = meta_value.get("id") if hasattr(meta_value, "get") else None
                meta_version = meta_value.get("version") if hasattr(meta_value, "get") else None
                if (str(meta_doc), meta_version) != (doc, version):
                    result.findings.append(_consistency("row-key-mismatch", "document_id/version differ from the "
                                                        "metadata the hash covers", where,
                                                        f"{meta_doc} v{meta_version}", f"{doc} v{version}"))
            if tx_id != block_tx:
                result.findings.append(_consistency("tx-id-mismatch", "tx_id differs from the block's "
                                                    "transaction_id (no hash covers either)", where, block_tx, tx_id))


def _check_current(conn: psycopg.Connection, result: CheckResult, qldb_name: str, schema: str, current: str,
                   history: str) -> None:
    query = sql.SQL(
        """WITH latest AS (
               SELECT document_id, version, data, data_ion, revision_hash, block_sequence
               FROM (SELECT DISTINCT ON (document_id) * FROM {history} ORDER BY document_id, version DESC) l
               WHERE operation <> 'delete'),
           cur AS (SELECT document_id, version, data, data_ion, revision_hash, block_sequence FROM {current})
           SELECT 'missing or different in the current table', * FROM (TABLE latest EXCEPT TABLE cur) a
           UNION ALL
           SELECT 'not the latest non-deleted history revision', * FROM (TABLE cur EXCEPT TABLE latest) b
           ORDER BY 2 LIMIT 1000"""
    ).format(history=sql.Identifier(schema, history), current=sql.Identifier(schema, current))
    for problem, doc, version, *_rest in conn.execute(query):
        result.findings.append(_consistency("current-row-mismatch", f"{schema}.{current}: {problem}",
                                            Location(document_id=doc, version=version, table=f"{schema}.{current}")))


def _check_block_rows_claimed(conn: psycopg.Connection, result: CheckResult, tables: list[tuple]) -> None:
    """Every user revision a block lists has its history row (a deleted row is caught here)."""
    if not tables:
        parts = [sql.SQL("SELECT NULL::text AS strand_id, NULL::text AS document_id, NULL::bigint AS block_sequence, "
                         "NULL::int AS index_in_block WHERE false")]
    else:
        parts = [
            sql.SQL("SELECT {} AS strand_id, document_id, block_sequence, index_in_block FROM {}").format(
                sql.Literal(strand), sql.Identifier(schema, history))
            for strand, _tid, _name, schema, _cur, history in tables
        ]
    query = sql.SQL(
        """WITH rows AS ({rows})
           SELECT b.strand_id, b.sequence_no, u.idx - 1, u.doc
           FROM qldb.block b, unnest(b.revision_documents) WITH ORDINALITY AS u(doc, idx)
           WHERE u.doc IS NOT NULL AND NOT EXISTS (
               SELECT 1 FROM rows r WHERE r.strand_id = b.strand_id AND r.block_sequence = b.sequence_no
                                      AND r.index_in_block = u.idx - 1 AND r.document_id = u.doc)
           ORDER BY 1, 2, 3 LIMIT 1000"""
    ).format(rows=sql.SQL(" UNION ALL ").join(parts))
    for strand, seq, idx, doc in conn.execute(query):
        result.findings.append(_consistency("history-row-missing", "qldb.block lists this revision but no history "
                                            "row holds it", Location(None, BlockAddress(strand, seq), idx, doc)))


def _check_counts(conn: psycopg.Connection, result: CheckResult, tables: list[tuple]) -> None:
    """History row counts against what the recorded runs loaded."""
    loaded: dict[str, int] = defaultdict(int)
    for (counts,) in conn.execute("SELECT counts FROM qldb.migration_run WHERE verdict IN ('loaded', 'unchanged')"):
        for name, figures in (counts or {}).get("tables", {}).items():
            loaded[name] += int(figures.get("loaded", 0))
    for _strand, _tid, qldb_name, schema, _cur, history in tables:
        count = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, history))).fetchone()[0]
        if count != loaded.get(qldb_name, 0):
            result.findings.append(_consistency("row-count-mismatch", f"{schema}.{history} holds {count} rows; the "
                                                f"recorded runs loaded {loaded.get(qldb_name, 0)}",
                                                Location(table=f"{schema}.{history}"), loaded.get(qldb_name, 0),
                                                count))
