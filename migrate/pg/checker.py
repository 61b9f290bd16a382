"""``check``: re-prove the migrated ledgers from PostgreSQL rows, anchored by digests kept outside.

Anyone who can write to the database can rewrite the hashes stored in it as
well as the data.  So every column a reader relies on is either re-derived
from what the hashes bind or checked against it, bottom-up — data -> data hash
-> revision hash -> the block's revision list -> entries -> block hash ->
chain -> digest root — and the result is *anchored* only when something kept
outside the database (a digest file, a saved proof, or the export itself,
re-hashed) matches what the stored blocks give.  Digests stored in
``qldb.digest`` are checked too, but they live in the database and anchor
nothing.  Everything streams through server-side cursors: memory stays flat.

What each stored column is checked against (the README's table lists them):

* ``data_ion`` — its Ion hash is ``data_hash``; ``data`` (jsonb) equals its
  canonical JSON as text;
* ``revision_hash`` — dot(H(``metadata_ion``), ``data_hash``), and the hash
  ``qldb.block`` lists at that block and index;
* ``document_id``, ``version``, ``tx_id``, ``tx_time``, ``tx_time_ion`` — the
  metadata the revision hash covers;
* ``operation`` — from the version and the presence of data (a delete
  revision has no data hash, and its hash is H(metadata));
* ``data``/``data_ion`` cleared — only where a stored redactionInfo (hashed
  into its block's entries) names that revision, or a recorded reservation
  says the export delivered it so;
* the table a row is in — the table the block's transactionInfo names for
  its document; every document transactionInfo lists has its row;
* ``transaction_info`` — hashed into the block's entries; present wherever
  the block holds user revisions;
* current tables — the latest non-deleted history revision of each document;
* counts — from the blocks (``qldb.migration_run`` is anyone's to edit).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from .. import native
from ..iontext import timestamp_text
from ..native import canonical_json
from ..verify.block import utc_instant
from ..verify.chain import Digest, DigestOutcome
from ..verify.findings import BlockAddress, Finding, FindingLog, Kind, Location, Severity
from ..verify.hashes import MerkleAccumulator, dot, fold_proof, merkle_root
from ..verify.ionhash import ion_hash
from ..verify.ionparse import IonParseError, loads
from ..verify.ionvalue import field_or_none, is_null, struct_keys
from .jsoncanon import json_string as _json_string

#: progress(done, total) in history rows; total may be an estimate
Progress = Callable[[int, int], None]


@dataclass
class LedgerCheck:
    """One ledger's outcome: what was re-proved and how far something outside anchors it."""

    strand_id: str
    ledger_name: str | None
    schema: str | None
    state: str
    blocks: int = 0
    first: int | None = None
    last: int | None = None
    rows: int = 0
    tables: int = 0
    listed_revisions: int = 0  # user revisions the stored blocks list
    anchored_through: int | None = None
    anchored_by: list[tuple[int, str]] = field(default_factory=list)  # (tip reached, by what)
    reservations: Counter[str] = field(default_factory=Counter)
    redactions: set[tuple[str, str, int]] = field(default_factory=set)  # named by stored redactionInfo
    unsealed: int = 0  # revisions written after cut-over and not sealed yet (in no block, under no digest)
    live_tables: set[str] = field(default_factory=set)  # table ids whose history has the live ledger's columns

    def anchor(self, tip: int, how: str) -> None:
        if self.anchored_through is None or tip > self.anchored_through:
            self.anchored_through = tip
        self.anchored_by.append((tip, how))

    @property
    def anchor_names(self) -> str:
        """What reaches the furthest anchored block (the verdict names it; the report lists every anchor).

        One entry per digest with its ways in brackets; what the user kept outside first, an export's own
        sidecar (which lives beside what it vouches for) last."""
        ways: dict[str, list[str]] = {}
        for tip, how in self.anchored_by:
            if tip == self.anchored_through:
                name, _, way = how.rpartition(" (") if how.endswith(")") else (how, "", "")
                ways.setdefault(name, [])
                if way and way[:-1] not in ways[name]:
                    ways[name].append(way[:-1])
        names = sorted(ways, key=lambda name: "own sidecar" in name)
        return "; ".join(f"{name} ({'; '.join(ways[name])})" if ways[name] else name for name in names) or "nothing"

    def to_json(self) -> dict[str, Any]:
        return {"strandId": self.strand_id, "ledgerName": self.ledger_name, "schema": self.schema,
                "state": self.state, "blocks": self.blocks, "first": self.first, "last": self.last,
                "historyRows": self.rows, "tables": self.tables, "listedRevisions": self.listed_revisions,
                "anchoredThrough": self.anchored_through,
                "anchoredBy": [{"tip": tip, "by": how} for tip, how in self.anchored_by],
                "reservations": dict(self.reservations), "unsealed": self.unsealed}


@dataclass
class CheckResult:
    findings: FindingLog = field(default_factory=FindingLog)
    ledgers: list[LedgerCheck] = field(default_factory=list)
    outside: list[DigestOutcome] = field(default_factory=list)
    stored: list[DigestOutcome] = field(default_factory=list)
    source: Any = None  # the VerifyResult of ``--source``, when given
    seconds: float = 0.0

    @property
    def errors(self) -> list[Finding]:
        return self.findings.errors

    @property
    def error_count(self) -> int:
        return self.findings.error_count

    @property
    def blocks(self) -> int:
        return sum(ledger.blocks for ledger in self.ledgers)

    @property
    def rows(self) -> int:
        return sum(ledger.rows for ledger in self.ledgers)

    @property
    def tables(self) -> int:
        return sum(ledger.tables for ledger in self.ledgers)

    @property
    def anchored(self) -> bool:
        """Every ledger checked is anchored, through its last block, by something kept outside the database."""
        return bool(self.ledgers) and all(
            ledger.anchored_through is not None and ledger.last is not None and ledger.anchored_through >= ledger.last
            for ledger in self.ledgers) and not any(o.matched is False for o in self.outside)

    @property
    def partly_anchored(self) -> bool:
        return any(ledger.anchored_through is not None for ledger in self.ledgers)

    @property
    def reservations(self) -> int:
        return sum(self.reservation_kinds.values())

    @property
    def reservation_kinds(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for ledger in self.ledgers:
            total.update(ledger.reservations)
        return total

    @property
    def unsealed(self) -> int:
        """Revisions written after cut-over that no block holds yet (counted, not re-proved)."""
        return sum(ledger.unsealed for ledger in self.ledgers)


def _hash_error(code: str, message: str, where: Location, expected: Any = None, computed: Any = None) -> Finding:
    return Finding(code, Kind.HASH, Severity.ERROR, message, where, expected, computed)


def _consistency(code: str, message: str, where: Location, expected: Any = None, found: Any = None) -> Finding:
    return Finding(code, Kind.CONSISTENCY, Severity.ERROR, message, where, expected, found)


_UNPARSEABLE = object()
_COLUMNS_MATCH = object()  # the metadata's bytes were shown to be exactly the row's columns (``_metadata_matches``)


def _read(ion: Any, column: str, where: Location, result: CheckResult, expected: Any = None) -> tuple[Any, bytes]:
    """(the Ion value of a bytea column, its Ion hash), or ``(_UNPARSEABLE, b"")`` with a finding naming it.

    The hash comes straight from the bytes where the C hasher can state it —
    it reads every byte, so bytes it accepts are well framed and the C reader
    may parse them without the framing walk — else from the parsed value.
    Where the hash is not ``expected`` (or not among a set of them), the bytes
    are read again with the exact reader before anything is decided
    (``ionparse.EXACT_READER_WHY``): a stored value the C reader misreads is
    not a changed one.
    """
    data = bytes(ion)
    digest = native.hash_binary(data)
    try:
        value = loads(data, own_encoding=digest is not None)
    except IonParseError as exc:
        result.findings.append(_hash_error(f"{column.replace('_', '-')}-invalid", f"{column} is not valid Ion: {exc}",
                                           where))
        return _UNPARSEABLE, b""
    if digest is None:
        digest = ion_hash(value)
    if expected is not None and digest != expected and not (isinstance(expected, set) and digest in expected):
        try:
            exact = loads(data, exact=True)
        except IonParseError:
            return value, digest
        return exact, ion_hash(exact)
    return value, digest


def _b(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


def ledgers_in(conn: psycopg.Connection, only: str | None = None) -> list[LedgerCheck]:
    """Every ledger the database holds (by strand), or the one ``only`` names (strand id or ledger name)."""
    rows = conn.execute(
        """SELECT s.strand_id, l.ledger_name, l.pg_schema, coalesce(l.state, 'migrated')
           FROM (SELECT DISTINCT strand_id FROM qldb.block UNION SELECT strand_id FROM qldb.ledger) s
           LEFT JOIN qldb.ledger l USING (strand_id) ORDER BY 1"""
    ).fetchall()
    out = [LedgerCheck(strand, name, schema, state) for strand, name, schema, state in rows]
    if only is not None:
        out = [ledger for ledger in out if only in (ledger.strand_id, ledger.ledger_name, ledger.schema)]
    return out


def run_check(conn: psycopg.Connection, outside: list[Digest], only: str | None = None, source: Any = None,
              progress: Progress | None = None, executor: Any = None, conninfo: str | None = None) -> CheckResult:
    """Re-prove every ledger (or the one ``only`` names); ``source`` is a ``SourceAnchor`` for ``--source``.

    With local worker processes (``executor``, started before ``conn`` was opened) and the ``conninfo`` they may
    connect with, the history rows — most of the work — are re-proved in parallel, each worker in the check's own
    snapshot (``pg_export_snapshot``): what they see is exactly what this connection sees.
    """
    started = time.perf_counter()
    # One snapshot for the whole check: a migration that commits meanwhile must not show the
    # blocks of one state and the rows of another (READ COMMITTED would, statement by statement).
    conn.commit()
    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
    result = CheckResult()
    result.outside = [DigestOutcome(d) for d in outside]
    result.ledgers = ledgers_in(conn, only)
    strands = {ledger.strand_id for ledger in result.ledgers}
    stored = conn.execute("SELECT strand_id, tip_sequence_no, digest, source FROM qldb.digest").fetchall()
    result.stored = [DigestOutcome(Digest(bytes(d), BlockAddress(s, t), f"qldb.digest ({src})"))
                     for s, t, d, src in stored if s in strands]
    total = _estimated_rows(conn, result.ledgers) if progress else 0
    done = [0]

    def advance(n: int) -> None:
        done[0] += n
        if progress:
            progress(done[0], total)

    parallel = conninfo is not None and executor is not None and getattr(executor, "workers", 1) > 1 \
        and not getattr(executor, "remote", False)
    snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0] if parallel else None
    for ledger in result.ledgers:
        if parallel:
            parts = executor.workers
            for blocks in executor.map_ordered(check_blocks_part, [(conninfo, snapshot, ledger, (k, parts))
                                                                    for k in range(parts)]):
                result.findings.merge(blocks.findings)
                ledger.redactions |= blocks.redactions
                ledger.listed_revisions += blocks.listed_revisions
        else:
            _check_blocks(conn, result, ledger)
        _check_chain(conn, result, ledger)
        tables = conn.execute(
            "SELECT table_id, table_name, pg_schema, current_name, history_name FROM qldb.ledger_table "
            "WHERE strand_id = %s ORDER BY table_name, table_id", (ledger.strand_id,)
        ).fetchall()
        ledger.tables = len(tables)
        _live_tables(conn, result, ledger, tables)
        reserved = _reservations(conn, result, ledger)
        if parallel:
            parts = executor.workers
            tasks = [(conninfo, snapshot, ledger, table_id, schema, history, reserved, (k, parts))
                     for table_id, _name, schema, _current, history in tables for k in range(parts)]
            for part in executor.map_ordered(check_history_part, tasks):
                result.findings.merge(part.findings)
                ledger.rows += part.rows
                ledger.unsealed += part.unsealed
                advance(part.rows)
        else:
            for table_id, _name, schema, _current, history in tables:
                _check_history(conn, result, ledger, table_id, schema, history, reserved, advance)
        for table_id, _name, schema, current, history in tables:
            _check_current(conn, result, schema, current, history, table_id in ledger.live_tables)
        _check_listed_rows(conn, result, ledger, tables)
        _check_table_names(conn, result, ledger, tables)
        _report_reservations(conn, result, ledger)
        if ledger.unsealed:
            result.findings.append(Finding(
                "not-sealed-yet", Kind.UNPROVEN, Severity.WARNING,
                f"{ledger.unsealed} revisions written after cut-over are not sealed yet: no block and no digest covers "
                "them (run qldb-migrate seal)", Location(block=BlockAddress(ledger.strand_id, ledger.last or 0))))
    if source is not None:
        result.source = source.run(conn, result)
    _unmatched_outside(result, strands)
    conn.rollback()
    result.seconds = time.perf_counter() - started
    return result


def _estimated_rows(conn: psycopg.Connection, ledgers: list[LedgerCheck]) -> int:
    total = 0
    for ledger in ledgers:
        for (n,) in conn.execute(
            "SELECT greatest(c.reltuples, 0)::bigint FROM qldb.ledger_table t JOIN pg_namespace n "
            "ON n.nspname = t.pg_schema JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = t.history_name "
            "WHERE t.strand_id = %s", (ledger.strand_id,)):
            total += int(n)
    return total


def _check_blocks(conn: psycopg.Connection, result: CheckResult, ledger: LedgerCheck,
                  part: tuple[int, int] = (0, 1)) -> None:
    """Each stored block's own hashes and structure (of the blocks whose sequence number falls in ``part`` =
    (k, n): the k-th of n slices, when workers share the table); the chain between them is ``_check_chain``'s."""
    strand = ledger.strand_id
    with conn.cursor(name=f"check_blocks_{strand}") as cur:
        cur.itersize = 2000
        cur.execute(
            "SELECT sequence_no, block_hash, entries_hash, previous_block_hash, entries_hash_list, revision_hashes, "
            "revision_documents, transaction_info::text, transaction_info_ion, redaction_info_ion, source_object "
            "FROM qldb.block WHERE strand_id = %s AND sequence_no %% %s = %s ORDER BY sequence_no",
            (strand, part[1], part[0])
        )
        for (seq, block_hash, entries_hash, previous, entries, revisions, documents, tx_json, tx_ion,
             redaction_ion, source) in cur:
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
            if len(documents or []) != len(revisions or []):
                result.findings.append(_consistency("revision-documents-length", "revision_documents and "
                                                    "revision_hashes differ in length", where,
                                                    len(revisions or []), len(documents or [])))
            redaction_value = None
            tx_named = None if tx_ion is None else _proven_documents(bytes(tx_ion), tx_json, entry_set)
            for name, ion in (("transaction_info_ion", tx_ion), ("redaction_info_ion", redaction_ion)):
                if ion is None or (name == "transaction_info_ion" and tx_named is not None):
                    continue
                value, digest = _read(ion, name, where, result, entry_set)
                if value is _UNPARSEABLE:
                    continue
                if digest not in entry_set:
                    result.findings.append(_hash_error(f"{name.replace('_', '-')}-not-in-entries",
                                                       f"H({name}) is not in entries_hash_list", where))
                    continue
                if name == "transaction_info_ion":
                    tx_named = set(struct_keys(field_or_none(value, "documents")))
                    if tx_json != native.binary_json(bytes(ion)) and tx_json != canonical_json(value):
                        result.findings.append(_consistency("transaction-info-json-mismatch", "transaction_info "
                                                            "(jsonb) differs from the canonical JSON of its Ion",
                                                            where))
                else:
                    redaction_value = value
            named = _redaction_named(redaction_value)
            if named is not None:
                ledger.redactions.add(named)
            _check_listed_documents(result, ledger, where, documents or [], tx_ion, tx_named, named)


def _check_chain(conn: psycopg.Connection, result: CheckResult, ledger: LedgerCheck) -> None:
    """The stored blocks in order: their links, and the digests (outside and stored) over them and their proofs.

    Reads only what the links need; each block's own hash is proven from its entries by ``_check_blocks``."""
    strand = ledger.strand_id
    outcomes: dict[int, list[DigestOutcome]] = defaultdict(list)
    proofs: dict[int, list[DigestOutcome]] = defaultdict(list)
    for outcome in result.outside + result.stored:
        if outcome.digest.tip.strand_id != strand:
            continue
        outcomes[outcome.digest.tip.sequence_no].append(outcome)
        if outcome.digest.proof is not None and outcome in result.outside:
            proofs[outcome.digest.proof_sequence or 0].append(outcome)
    with conn.cursor(name=f"check_chain_{strand}", binary=True) as cur:
        cur.itersize = 5000
        cur.execute("SELECT sequence_no, block_hash, previous_block_hash, source_object FROM qldb.block "
                    "WHERE strand_id = %s ORDER BY sequence_no", (strand,))
        last: tuple[int, bytes] | None = None
        merkle = MerkleAccumulator()
        run_start: int | None = None  # first block of the unbroken run of links that ends at the current block
        for seq, block_hash, previous, source in cur:
            ledger.blocks += 1
            ledger.first = seq if ledger.first is None else ledger.first
            ledger.last = seq
            block_hash, previous = bytes(block_hash), bytes(previous)
            if last is None:
                run_start = seq
                if seq != 0:
                    result.findings.append(Finding("partial", Kind.UNPROVEN, Severity.WARNING,
                                                   f"the stored chain starts at block {seq}, not 0",
                                                   Location(f"qldb.block ({source})", BlockAddress(strand, seq))))
            elif seq != last[0] + 1:
                run_start = None
                result.findings.append(_consistency("gap", f"blocks {last[0] + 1}..{seq - 1} are missing from "
                                                    "qldb.block", Location(f"qldb.block ({source})",
                                                                           BlockAddress(strand, seq)),
                                                    last[0] + 1, seq))
            elif previous != last[1]:
                run_start = None
                result.findings.append(_hash_error("chain-link-mismatch", "previous_block_hash is not the "
                                                   "stored hash of the block before it",
                                                   Location(f"qldb.block ({source})", BlockAddress(strand, seq)),
                                                   last[1], previous))
            from_genesis = run_start == 0
            if from_genesis:
                merkle.append(block_hash)
            if seq in proofs or seq in outcomes:
                _check_digests_at(result, ledger, seq, block_hash, run_start, merkle, proofs, outcomes,
                                  Location(f"qldb.block ({source})", BlockAddress(strand, seq)))
            last = (seq, block_hash)


def _check_digests_at(result: CheckResult, ledger: LedgerCheck, seq: int, block_hash: bytes, run_start: int | None,
                      merkle: MerkleAccumulator, proofs: dict[int, list[DigestOutcome]],
                      outcomes: dict[int, list[DigestOutcome]], where: Location) -> None:
    """The saved proofs that start at stored block ``seq`` and the digests whose tip it is."""
    from_genesis = run_start == 0
    for outcome in proofs.get(seq, []):
        # a saved proof ties this stored block to the digest: it anchors the blocks linked up to it
        folded = fold_proof(block_hash, outcome.digest.proof or ())
        if outcome.record(f"saved proof of stored block {seq}", folded):
            if run_start is not None:
                ledger.anchor(seq, f"{outcome.digest.name} (saved proof of block {seq})")
        else:
            result.findings.append(_hash_error("digest-mismatch", f"digest {outcome.digest.source}: its saved "
                                               f"proof does not fold from stored block {seq} to the digest",
                                               where, outcome.digest.digest, folded))
    for outcome in outcomes.get(seq, []):
        if not from_genesis:
            if outcome.digest.proof is not None and outcome.matched:
                continue  # reached by its saved proof instead
            outcome.failed = True
            outcome.unreached_reason = "the stored chain before its tip is broken or does not start at 0"
            if outcome in result.outside:
                result.findings.append(_consistency(
                    "digest-not-provable", f"digest {outcome.digest.source} cannot be proven: the stored "
                    "chain before its tip is broken or does not start at block 0", where))
            continue
        root = merkle.root()
        if outcome.record(f"merkle root over stored blocks 0..{seq}", root):
            if outcome in result.outside:
                ledger.anchor(seq, f"{outcome.digest.name} (merkle root over blocks 0..{seq})")
        else:
            result.findings.append(_hash_error("digest-mismatch", f"digest {outcome.digest.source} does "
                                               "not match the root recomputed from qldb.block", where,
                                               outcome.digest.digest, root))


def _redaction_named(value: Any) -> tuple[str, str, int] | None:
    if value is None or value is _UNPARSEABLE:
        return None
    table, doc, version = (field_or_none(value, k) for k in ("tableId", "documentId", "version"))
    if isinstance(table, str) and isinstance(doc, str) and isinstance(version, int) and not isinstance(version, bool):
        return str(table), str(doc), int(version)
    return None


class _DuplicateKey(Exception):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        raise _DuplicateKey
    return found


def _proven_documents(tx_ion: bytes, tx_json: str | None, entries: set[bytes]) -> set[str] | None:
    """The document ids transactionInfo lists, without parsing its Ion, when that is sound; else None.

    Sound when the C hasher finds H(transaction_info_ion) among the entries and the C renderer's canonical
    JSON of those bytes is exactly the stored jsonb text: that text is then the Ion's own rendering (field
    names as written), so its ``documents`` object names the same documents.  Parsing the Ion here was 40% of
    ``check``'s CPU.  Anything else (bytes outside the C subset, a JSON difference, a name given twice) goes
    the full way, ``_read``, which decides and reports.
    """
    if tx_json is None or native.hash_binary(tx_ion) not in entries or native.binary_json(tx_ion) != tx_json:
        return None
    try:
        value = json.loads(tx_json, object_pairs_hook=_unique_keys)
    except (ValueError, _DuplicateKey, RecursionError):
        return None
    if not isinstance(value, dict):
        return None
    documents = value.get("documents")
    return set(documents) if isinstance(documents, dict) else set()


def _check_listed_documents(result: CheckResult, ledger: LedgerCheck, where: Location, documents: list[str | None],
                            tx_ion: Any, named: set[str] | None, redaction: tuple[str, str, int] | None) -> None:
    """The block's own structure, as ``verify`` checks it on the export (verify.block.check_documents).

    ``named``: the documents transactionInfo lists (None: it was unparseable or not hashed into the entries,
    already an error)."""
    listed_docs = [d for d in documents if d is not None]
    ledger.listed_revisions += len(listed_docs)
    if tx_ion is None:
        if listed_docs:
            result.findings.append(_consistency(
                "transaction-info-missing", f"block lists {len(listed_docs)} user revision(s) but has no "
                "transaction_info: their documents' tables cannot be proven", where))
        return
    if named is None:
        return  # unparseable or not hashed into the entries: already an error
    for doc in sorted(set(listed_docs) - named):
        result.findings.append(_consistency(
            "revision-not-in-documents", "revision_documents names a document the block's transactionInfo does "
            "not list", Location(where.object_key, where.block, document_id=doc)))
    for doc in sorted(named - set(listed_docs)):
        if redaction is not None and redaction[1] == doc:
            continue
        result.findings.append(_consistency(
            "document-revision-missing", "transactionInfo lists this document but revision_documents holds no "
            "revision of it", Location(where.object_key, where.block, document_id=doc)))


def _reservations(conn: psycopg.Connection, result: CheckResult,
                  ledger: LedgerCheck) -> dict[tuple[str, str, int], set[str]]:
    """The reservations recorded for a ledger; one no run that accepted unverifiable revisions made is an error."""
    out: dict[tuple[str, str, int], set[str]] = defaultdict(set)
    for table_id, doc, version, kind, seq, run_id, allowed in conn.execute(
        "SELECT v.table_id, v.document_id, v.version, v.kind, v.block_sequence, v.run_id, "
        "coalesce('allow-unverifiable' = ANY(r.opt_outs), false) FROM qldb.reservation v "
        "LEFT JOIN qldb.migration_run r ON r.run_id = v.run_id WHERE v.strand_id = %s", (ledger.strand_id,)
    ):
        if not allowed:
            result.findings.append(_consistency(
                "reservation-without-opt-out", f"qldb.reservation records '{kind}' under run {run_id}, which did "
                "not accept unverifiable revisions (--allow-unverifiable): only such a run records reservations, so "
                "this one was written by hand", Location(None, None if seq is None else
                                                         BlockAddress(ledger.strand_id, seq), None, doc,
                                                         None if version < 0 else version)))
            continue
        out[(table_id, doc, version)].add(kind)
        ledger.reservations[kind] += 1
    return out


_RESERVATION_TEXT = {
    "json-not-rehashed": "its data came through JSON and could not be re-hashed: its JSONB is not proven",
    "deleted-hash-not-recomputed": "a delete revision whose hash rule did not match: its revision hash is not "
                                   "recomputed",
    "unexplained-redaction": "delivered redacted with no redactionInfo naming it: its erasure is not explained by "
                             "the chain",
    "not-present": "a stream revision whose details never arrived: no row",
    "ambiguous-delete": "a delete revision beside a system revision, which the hashes cannot tell from a revision "
                        "with data taken apart: that its data was removed is not proven",
}


_RESERVATION_COUNTED = {
    "json-not-rehashed": "whose data came through JSON and could not be re-hashed",
    "deleted-hash-not-recomputed": "deletes whose hash rule did not match",
    "unexplained-redaction": "redacted with no redactionInfo naming them",
    "not-present": "from a stream whose details never arrived",
    "ambiguous-delete": "deletes beside a system revision (removal of data not proven)",
}


def reservation_counts(counts: Counter[str]) -> str:
    """One phrase per kind of reservation with its count, for a run's one-line summary."""
    return "; ".join(f"{n:,} revisions {_RESERVATION_COUNTED.get(kind, kind)}" for kind, n in sorted(counts.items()))


def _report_reservations(conn: psycopg.Connection, result: CheckResult, ledger: LedgerCheck) -> None:
    """One finding per reserved revision, named; the finding log keeps the first few of each kind and counts all."""
    if not ledger.reservations:
        return
    with conn.cursor(name="reservations") as cur:
        cur.itersize = 5000
        cur.execute(
            "SELECT v.kind, v.table_id, coalesce(t.table_name, v.table_id), v.document_id, v.version, "
            "v.block_sequence FROM qldb.reservation v LEFT JOIN qldb.ledger_table t "
            "ON t.strand_id = v.strand_id AND t.table_id = v.table_id JOIN qldb.migration_run r "
            "ON r.run_id = v.run_id AND 'allow-unverifiable' = ANY(r.opt_outs) WHERE v.strand_id = %s "
            "ORDER BY v.kind, v.block_sequence NULLS LAST, v.document_id, v.version", (ledger.strand_id,))
        for kind, _table_id, table, doc, version, seq in cur:
            result.findings.append(Finding(
                f"reservation-{kind}", Kind.UNPROVEN, Severity.WARNING,
                f"{_RESERVATION_TEXT.get(kind, kind)} (migrated with --allow-unverifiable, recorded in "
                "qldb.reservation)",
                Location(None, None if seq is None else BlockAddress(ledger.strand_id, seq), None, doc,
                         None if version < 0 else version, table)))


@contextlib.contextmanager
def _in_snapshot(conninfo: str, snapshot: str) -> Iterator[psycopg.Connection]:
    """A worker's read-only connection in the coordinating check's exported snapshot: it sees what check sees."""
    with psycopg.connect(conninfo) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
        yield conn
        conn.rollback()


@dataclass
class BlocksPart:
    """What one worker found in its slice of one ledger's stored blocks."""

    findings: FindingLog
    redactions: set[tuple[str, str, int]]
    listed_revisions: int


def check_blocks_part(conninfo: str, snapshot: str, ledger: LedgerCheck, part: tuple[int, int]) -> BlocksPart:
    """Worker: one slice of a ledger's stored blocks, each re-proved on its own, in the check's snapshot."""
    result = CheckResult()
    mine = LedgerCheck(ledger.strand_id, ledger.ledger_name, ledger.schema, ledger.state)
    with _in_snapshot(conninfo, snapshot) as conn:
        _check_blocks(conn, result, mine, part)
    return BlocksPart(result.findings, mine.redactions, mine.listed_revisions)


@dataclass
class HistoryPart:
    """What one worker found in its slice of one history table."""

    findings: FindingLog
    rows: int
    unsealed: int


def check_history_part(conninfo: str, snapshot: str, ledger: LedgerCheck, table_id: str, schema: str, history: str,
                       reserved: dict[tuple[str, str, int], set[str]], part: tuple[int, int]) -> HistoryPart:
    """Worker: one slice of one history table, re-proved in the coordinating check's snapshot."""
    result = CheckResult()
    mine = LedgerCheck(ledger.strand_id, ledger.ledger_name, ledger.schema, ledger.state, redactions=ledger.redactions,
                       live_tables=ledger.live_tables)
    with _in_snapshot(conninfo, snapshot) as conn:
        _check_history(conn, result, mine, table_id, schema, history, reserved, lambda _n: None, part)
    return HistoryPart(result.findings, mine.rows, mine.unsealed)


def _check_delete(result: CheckResult, where: Location, version: int, sibling_system: bool, kinds: set[str]) -> None:
    """A delete revision the hashes cannot tell from a revision with data taken apart (verify.block.check_deletes)."""
    if version == 0:
        result.findings.append(_consistency("delete-at-version-0", "a delete revision at version 0: a document's "
                                            "first revision is its insert", where))
    if sibling_system and "ambiguous-delete" not in kinds:
        result.findings.append(_consistency(
            "ambiguous-delete-unrecorded", "a delete revision whose Merkle sibling is a system revision (the pair "
            "also hashes as one revision with data), which the run that loaded it did not record as a reservation: "
            "the block or the row was rewritten", where))


def _check_operation(result: CheckResult, where: Location, op: str, version: int, data: str | None,
                     redacted: bool) -> None:
    """A revision not sealed yet has no hash to derive its operation from: its data and version must agree."""
    derived = "delete" if data is None and not redacted else ("insert" if version == 0 else "update")
    if op != derived:
        result.findings.append(_consistency("operation-mismatch", f"operation says {op}; the version and the data "
                                            f"make it {derived}", where, derived, op))


def _derived_operation(version: int, data_hash: bytes | None, json_reserved: bool) -> str:
    if data_hash is None and not json_reserved:
        return "delete"
    return "insert" if version == 0 else "update"


def _check_history(conn: psycopg.Connection, result: CheckResult, ledger: LedgerCheck, table_id: str, schema: str,
                   history: str, reserved: dict[tuple[str, str, int], set[str]], advance: Callable[[int], None],
                   part: tuple[int, int] = (0, 1)) -> None:
    """Every history row of one table (of the rows whose document falls in ``part`` = (k, n): the k-th of n
    slices by a hash of the document id, when workers share the table)."""
    strand = ledger.strand_id
    live = table_id in ledger.live_tables
    # After cut-over, what the sealer assigned (hashes, Ion, block, index) is in qldb.sealed_revision, not the row.
    query = sql.SQL(
        """SELECT h.document_id, h.version, h.data::text,
                  coalesce(h.data_ion, s.data_ion), coalesce(h.metadata_ion, s.metadata_ion),
                  coalesce(h.revision_hash, s.revision_hash), coalesce(h.data_hash, s.data_hash),
                  h.operation, h.redacted, h.tx_id, h.tx_time, h.tx_time_ion,
                  coalesce(h.block_sequence, s.block_sequence), coalesce(h.index_in_block, s.index_in_block),
                  b.revision_hashes[coalesce(h.index_in_block, s.index_in_block) + 1],
                  b.revision_documents[coalesce(h.index_in_block, s.index_in_block) + 1],
                  b.transaction_id, b.sequence_no IS NOT NULL,
                  b.transaction_info -> 'documents' -> h.document_id ->> 'tableId',
                  {write_seq}, s.document_id IS NOT NULL,
                  coalesce(h.index_in_block, s.index_in_block) # 1 < cardinality(b.revision_hashes)
                      AND b.revision_documents[(coalesce(h.index_in_block, s.index_in_block) # 1) + 1] IS NULL,
                  num_nonnulls(h.data_ion, h.metadata_ion, h.revision_hash, h.data_hash, h.block_sequence,
                               h.index_in_block) > 0,
                  {waiting},
                  h.tx_time_ion = to_char(h.tx_time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
                      AND date_trunc('milliseconds', h.tx_time) = h.tx_time
                      AND h.tx_time >= timestamptz '0001-01-01 00:00:00+00'  -- YYYY drops the era
           FROM {history} h
           LEFT JOIN qldb.sealed_revision s ON s.strand_id = %s AND s.table_id = %s AND s.document_id = h.document_id
                                           AND s.version = h.version
           LEFT JOIN qldb.block b ON b.strand_id = %s
                                 AND b.sequence_no = coalesce(h.block_sequence, s.block_sequence)
           WHERE (hashtext(h.document_id) & 2147483647) %% %s = %s"""
    ).format(history=sql.Identifier(schema, history), write_seq=sql.SQL("h.write_seq" if live else "NULL::bigint"),
             # the sealer has not reached it yet: its cursor says it may wait (schema 0010; qldb.live_cursor: none,
             # or another cluster's, and every live revision may)
             waiting=sql.SQL("(h.xid >= %s::xid8 OR h.xid = ANY(%s::xid8[]))" if live else "false"))
    name = f"{schema}.{history}"
    pending = 0
    cursor: tuple[str, list[str]] | tuple[()] = ()
    if live:
        cursor = conn.execute("SELECT horizon::text, waiting::text[] FROM qldb.live_cursor(%s)", (strand,)).fetchone()
    with conn.cursor(name=f"check_{strand}_{history}"[:60], binary=True) as cur:  # bytea as bytes, no hex
        cur.itersize = 2000
        cur.execute(query, (*cursor, strand, table_id, strand, part[1], part[0]))
        for (doc, version, data, data_ion, meta_ion, rev_hash, data_hash, op, redacted, tx_id, tx_time, tx_time_ion,
             seq, idx, listed, listed_doc, block_tx, block_exists, block_table, write_seq, sealed_live, sibling_system,
             row_has_seal, queued, tx_time_is_utc_ms) in cur:
            ledger.rows += 1
            pending += 1
            if pending == 5000:
                advance(pending)
                pending = 0
            where = Location(None, None if seq is None else BlockAddress(strand, seq), idx, doc, version, name)
            if write_seq is not None:  # written after cut-over
                if row_has_seal:
                    result.findings.append(_consistency(
                        "live-row-holds-seal", "a revision written after cut-over holds hashes or a block in its "
                        "history row; the sealer records those only in qldb.sealed_revision", where))
                if not sealed_live:
                    if queued:
                        ledger.unsealed += 1
                    else:
                        result.findings.append(_consistency(
                            "live-row-neither-sealed-nor-queued", "a revision written after cut-over is in no block, "
                            "and the sealer's cursor (qldb.seal_cursor) is past its transaction id (or it has none): "
                            "it will never be sealed", where))
                    _check_operation(result, where, op, version, data, redacted)
                    continue
            elif rev_hash is None:
                result.findings.append(_consistency("revision-hash-missing", "history row has no revision_hash",
                                                    where))
                continue
            rev_hash, data_hash = bytes(rev_hash), _b(data_hash)
            kinds = reserved.get((table_id, doc, version), set())
            json_reserved = "json-not-rehashed" in kinds
            if not block_exists:
                result.findings.append(_consistency("row-without-block", "history row names a block that "
                                                    "qldb.block does not hold", where))
            else:
                if _b(listed) != rev_hash or listed_doc != doc:
                    result.findings.append(_hash_error("row-not-in-block", "revision_hash (or document) is not the "
                                                       "one qldb.block lists at that block and index", where,
                                                       _b(listed), rev_hash))
                if block_table != table_id:
                    result.findings.append(_consistency(
                        "row-in-wrong-table", f"the block's transactionInfo puts this document in table "
                        f"{block_table or '(none)'}, not in this table ({table_id})", where, table_id, block_table))
            if data_ion is not None:
                if _data_matches(data_ion, data_hash, data):
                    value = _UNPARSEABLE  # everything below holds already: nothing to parse
                else:
                    value, computed = _read(data_ion, "data_ion", where, result, data_hash)
                if value is not _UNPARSEABLE:
                    if computed != data_hash:
                        result.findings.append(_hash_error("data-hash-mismatch", "H(data_ion) differs from "
                                                           "data_hash", where, data_hash, computed))
                    if data != canonical_json(value):
                        result.findings.append(_consistency("jsonb-mismatch", "data (jsonb) differs, as text, from "
                                                            "the canonical JSON of data_ion", where))
                if (table_id, doc, version) in ledger.redactions:
                    result.findings.append(_consistency("redaction-not-applied", "a stored redactionInfo names this "
                                                        "revision but it still holds data", where))
            elif data is not None and not json_reserved:
                result.findings.append(_consistency("jsonb-without-ion", "data (jsonb) has no data_ion to prove it",
                                                    where))
            if data_ion is None and data_hash is not None and not json_reserved:
                # the data is gone but its hash is not: only a redaction may do that
                if (table_id, doc, version) not in ledger.redactions and "unexplained-redaction" not in kinds:
                    result.findings.append(_consistency(
                        "data-erased-without-redaction", "the revision's data is cleared but no stored redactionInfo "
                        "names it (and no reservation records it delivered so)", where))
                if not redacted:
                    result.findings.append(_consistency("redacted-flag-mismatch", "data is cleared but redacted is "
                                                        "false", where, True, False))
            if redacted and (data is not None or data_ion is not None):
                result.findings.append(_consistency("redacted-with-data", "redacted revision still holds data", where))
            if redacted and data_hash is None:
                result.findings.append(_consistency("redacted-flag-mismatch", "a delete revision is flagged redacted",
                                                    where, False, True))
            derived = _derived_operation(version, data_hash, json_reserved)
            if op != derived:
                result.findings.append(_consistency(
                    "operation-mismatch", f"operation says {op}; the version and the data the hash covers make it "
                    f"{derived}", where, derived, op))
            meta_value: Any = _COLUMNS_MATCH
            meta_hash = _metadata_matches(meta_ion, doc, version, tx_id, tx_time_ion, tx_time_is_utc_ms, block_tx)
            if meta_hash is None:
                meta_value, meta_hash = _read(meta_ion, "metadata_ion", where, result)
                if meta_value is _UNPARSEABLE:
                    continue
            if not (json_reserved and data_hash is None):
                computed = dot(meta_hash, data_hash or b"")
                if computed != rev_hash and not (data_hash is None and "deleted-hash-not-recomputed" in kinds):
                    result.findings.append(_hash_error("revision-hash-mismatch", "revision_hash differs from "
                                                       "dot(H(metadata_ion), data_hash)", where, rev_hash, computed))
                if data_hash is None and computed == rev_hash:
                    _check_delete(result, where, version, sibling_system, kinds)
            if meta_value is not _COLUMNS_MATCH:
                _check_metadata_columns(result, where, meta_value, doc, version, tx_id, tx_time, tx_time_ion,
                                        block_tx)
    advance(pending)


# Most rows are proven without parsing their Ion: the C reader hashes the bytes and renders them as canonical
# JSON, and where both agree exactly with the stored columns, parsing the value could find nothing more.  Any
# disagreement, or bytes outside the C reader's subset, go the full way (``_read``), which decides and reports.

def _data_matches(data_ion: Any, data_hash: bytes | None, data: str | None) -> bool:
    """H(data_ion) is data_hash and data (jsonb, as text) is the canonical JSON of data_ion: both from the bytes."""
    if data_hash is None or data is None:
        return False
    raw = bytes(data_ion)
    return native.hash_binary(raw) == data_hash and native.binary_json(raw) == data


def _metadata_matches(meta_ion: Any, doc: str, version: int, tx_id: str | None, tx_time_ion: str | None,
                      tx_time_is_utc_ms: bool | None, block_tx: str | None) -> bytes | None:
    """H(metadata_ion) when the metadata is exactly {id: doc, version, txTime, txId} of the row's columns.

    The typed rendering tells a string from a timestamp and an int from a decimal; the database has
    compared tx_time with tx_time_ion (``tx_time_is_utc_ms``: the text is tx_time, in UTC, to the
    millisecond, as QLDB writes it).  Anything else: None, and ``_check_metadata_columns`` decides.
    """
    if meta_ion is None or not tx_time_is_utc_ms or tx_id is None or (block_tx is not None and block_tx != tx_id):
        return None
    raw = bytes(meta_ion)
    digest = native.hash_binary(raw)
    if digest is None:
        return None
    expected = (f'{{"id": s{_json_string(doc)}, "txId": s{_json_string(tx_id)}, "txTime": t{_json_string(tx_time_ion)}'
                f', "version": i{version}}}')
    return digest if native.binary_json(raw, typed=True) == expected else None


def _check_metadata_columns(result: CheckResult, where: Location, meta: Any, doc: str, version: int,
                            tx_id: str | None, tx_time: Any, tx_time_ion: str | None, block_tx: str | None) -> None:
    """Columns a reader trusts, against the metadata the revision hash covers."""
    meta_doc, meta_version = field_or_none(meta, "id"), field_or_none(meta, "version")
    if (str(meta_doc), meta_version) != (doc, version):
        result.findings.append(_consistency("row-key-mismatch", "document_id/version differ from the metadata the "
                                            "hash covers", where, f"{meta_doc} v{meta_version}", f"{doc} v{version}"))
    meta_tx = field_or_none(meta, "txId")
    meta_tx = None if is_null(meta_tx) else str(meta_tx)
    if tx_id != meta_tx:
        result.findings.append(_consistency("tx-id-mismatch", "tx_id differs from metadata.txId (which the hash "
                                            "covers)", where, meta_tx, tx_id))
    elif block_tx is not None and tx_id != block_tx:
        result.findings.append(_consistency("tx-id-mismatch", "tx_id differs from the block's transaction_id",
                                            where, block_tx, tx_id))
    meta_time = field_or_none(meta, "txTime")
    if is_null(meta_time):
        if tx_time is not None or tx_time_ion is not None:
            result.findings.append(_consistency("tx-time-mismatch", "tx_time is set but the metadata has no txTime",
                                                where))
        return
    if utc_instant(meta_time) != tx_time or timestamp_text(meta_time) != tx_time_ion:
        result.findings.append(_consistency("tx-time-mismatch", "tx_time / tx_time_ion differ from metadata.txTime "
                                            "(which the hash covers)", where, timestamp_text(meta_time),
                                            f"{tx_time} / {tx_time_ion}"))


def _live_tables(conn: psycopg.Connection, result: CheckResult, ledger: LedgerCheck, tables: list[tuple]) -> None:
    """Which tables are live is read from the tables themselves (the write_seq column cut-over adds), not only from
    qldb.ledger.state: a state changed behind the guard must not change what the check compares."""
    for table_id, _name, schema, _current, history in tables:
        if conn.execute("SELECT 1 FROM pg_attribute WHERE attrelid = %s::regclass AND attname = 'write_seq' "
                        "AND NOT attisdropped", (sql.Identifier(schema, history).as_string(conn),)).fetchone():
            ledger.live_tables.add(table_id)
    shapes = {table_id in ledger.live_tables for table_id, *_ in tables}
    if shapes and (len(shapes) > 1 or shapes != {ledger.state == "live"}):
        live = sorted(f"{schema}.{history}" for tid, _n, schema, _c, history in tables if tid in ledger.live_tables)
        result.findings.append(_consistency(
            "ledger-state-mismatch", f"qldb.ledger says the ledger is {ledger.state}, but "
            f"{len(live)} of its {len(tables)} history tables have the live ledger's columns"
            + (f" ({', '.join(live[:5])})" if live else ""),
            Location(block=BlockAddress(ledger.strand_id, ledger.first or 0)), ledger.state,
            "live" if live else "migrated"))


def _check_table_names(conn: psycopg.Connection, result: CheckResult, ledger: LedgerCheck,
                       tables: list[tuple]) -> None:
    """Each table's QLDB name (qldb.ledger_table, which the SQL functions look tables up by) is the name the hashed
    transaction info gives its table id.  QLDB never renames a table: a name reused after a drop is another id."""
    seen: dict[str, set[str]] = defaultdict(set)
    for table_id, name in conn.execute(
            "SELECT DISTINCT d.value ->> 'tableId', d.value ->> 'tableName' FROM qldb.block b, "
            "jsonb_each(b.transaction_info -> 'documents') d WHERE b.strand_id = %s "
            "AND jsonb_typeof(b.transaction_info -> 'documents') = 'object'", (ledger.strand_id,)):
        seen[table_id].add(name)
    for table_id, name, schema, _current, history in tables:
        if table_id in seen and name not in seen[table_id]:
            result.findings.append(_consistency(
                "table-name-mismatch", f"qldb.ledger_table names table {table_id} ({schema}.{history}) '{name}', "
                "but the ledger's transaction info names it otherwise", Location(table=f"{schema}.{history}"),
                ", ".join(sorted(seen[table_id])), name))


def _check_current(conn: psycopg.Connection, result: CheckResult, schema: str, current: str, history: str,
                   live: bool) -> None:
    """The current table holds the latest non-deleted history revision of each document, no more, no less.

    After cut-over a row the application wrote carries no hash or block (the sealer assigns those later, in
    qldb.sealed_revision): its document, version, data and time are compared.
    """
    # data as text: jsonb equality calls 1.0 and 1.00 the same number, the ledger does not
    columns = sql.SQL("document_id, version, data::text, tx_time" if live else
                      "document_id, version, data::text, data_ion, revision_hash, tx_time, block_sequence")
    query = sql.SQL(
        """WITH latest AS (
               SELECT {columns}
               FROM (SELECT DISTINCT ON (document_id) * FROM {history} ORDER BY document_id, version DESC) l
               WHERE operation <> 'delete'),
           cur AS (SELECT {columns} FROM {current})
           SELECT 'missing or different in the current table', * FROM (TABLE latest EXCEPT TABLE cur) a
           UNION ALL
           SELECT 'not the latest non-deleted history revision', * FROM (TABLE cur EXCEPT TABLE latest) b
           ORDER BY 2 LIMIT 1000"""
    ).format(history=sql.Identifier(schema, history), current=sql.Identifier(schema, current), columns=columns)
    for problem, doc, version, *_rest in conn.execute(query):
        result.findings.append(_consistency("current-row-mismatch", f"{schema}.{current}: {problem}",
                                            Location(document_id=doc, version=version, table=f"{schema}.{current}")))


def _check_listed_rows(conn: psycopg.Connection, result: CheckResult, ledger: LedgerCheck, tables: list[tuple]) -> None:
    """Every user revision a block lists has its history row (a deleted row is caught here)."""
    parts = [
        sql.SQL("SELECT h.document_id, coalesce(h.block_sequence, s.block_sequence), "
                "coalesce(h.index_in_block, s.index_in_block) FROM {} h LEFT JOIN qldb.sealed_revision s "
                "ON s.strand_id = {} AND s.table_id = {} AND s.document_id = h.document_id AND s.version = h.version"
                ).format(sql.Identifier(schema, history), sql.Literal(ledger.strand_id), sql.Literal(tid))
        for tid, _name, schema, _cur, history in tables
    ] or [sql.SQL("SELECT NULL::text, NULL::bigint, NULL::int WHERE false")]
    query = sql.SQL(
        """WITH rows (document_id, block_sequence, index_in_block) AS ({rows})
           SELECT b.sequence_no, u.idx - 1, u.doc, b.transaction_info -> 'documents' -> u.doc ->> 'tableId'
           FROM qldb.block b, unnest(b.revision_documents) WITH ORDINALITY AS u(doc, idx)
           WHERE b.strand_id = %s AND u.doc IS NOT NULL AND NOT EXISTS (
               SELECT 1 FROM rows r WHERE r.block_sequence = b.sequence_no
                                      AND r.index_in_block = u.idx - 1 AND r.document_id = u.doc)
             AND NOT EXISTS (
               SELECT 1 FROM qldb.reservation v WHERE v.strand_id = b.strand_id AND v.kind = 'not-present'
                                                  AND v.document_id = u.doc AND v.block_sequence = b.sequence_no)
           ORDER BY 1, 2 LIMIT 10000"""
    ).format(rows=sql.SQL(" UNION ALL ").join(parts))
    where_rows = {tid: f"{schema}.{history}" for tid, _name, schema, _cur, history in tables}
    for seq, idx, doc, table_id in conn.execute(query, (ledger.strand_id,)):
        result.findings.append(_consistency(
            "history-row-missing", "qldb.block lists this revision but no history row holds it",
            Location(None, BlockAddress(ledger.strand_id, seq), idx, doc,
                     table=where_rows.get(table_id, f"table id {table_id}"))))


def _unmatched_outside(result: CheckResult, strands: set[str]) -> None:
    """A digest the user gives is a claim to be proven: one the stored chain cannot reach is an error."""
    last = {ledger.strand_id: ledger.last for ledger in result.ledgers}
    for outcome in result.outside:
        if outcome.matched is not None or outcome.failed:
            continue
        tip = outcome.digest.tip
        if tip.strand_id not in strands:
            outcome.failed = True
            outcome.unreached_reason = "no ledger in the database has its strand"
            result.findings.append(_consistency(
                "digest-other-ledger", f"digest {outcome.digest.source} is for strand {tip.strand_id}, which the "
                "database does not hold (another ledger, or not migrated)", Location(block=tip)))
            continue
        stored_last = last.get(tip.strand_id)
        outcome.failed = True
        outcome.unreached_reason = f"its tip (block {tip.sequence_no}) is beyond the stored chain (last {stored_last})"
        result.findings.append(_consistency(
            "digest-beyond-stored-chain",
            f"digest {outcome.digest.source} has tip block {tip.sequence_no}, but the stored chain ends at block "
            f"{stored_last}: either the database lost blocks {(stored_last or 0) + 1}..{tip.sequence_no}, or the "
            "digest is newer than what was migrated (migrate the later export, then check again)",
            Location(block=tip), tip.sequence_no, stored_last))


__all__ = ["CheckResult", "LedgerCheck", "ledgers_in", "run_check"]
