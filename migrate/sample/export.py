"""``sample-export``: a faithful QLDB journal export of a generated ledger.

Two passes keep memory small: the first plans the ledger's *structure*
(blocks, transactions, document ids and versions, deletes, redactions); the
second renders documents and streams every block into each export that
covers it.  Exports overlap; an export taken after a redaction shows the
redacted revision with ``dataHash`` even in blocks older than the redaction,
as QLDB did, while older exports still hold the data.

Layout written (DESIGN §2), as a local copy of ``s3://bucket/{prefix}``:
``{exportId}.started.manifest``, ``{exportId}.{strandId}.completed.manifest``,
``yyyy/mm/dd/hh/{strandId}.{first}-{last}.ion|json``, the migration sample's
``…proofs.json`` sidecar beside each completed manifest, and GetDigest-style
digest files in ``digests/`` (outside any export's keys).
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import json
import random
import string
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from amazon.ion import simpleion
from amazon.ion.core import IonType, Timestamp
from amazon.ion.simple_types import IonPyDict, IonPyNull
from amazon.ion.symbols import SymbolToken

from ..ionwrite import dumps_binary_stream, dumps_text
from .blocks import BlockSpec, RevisionSpec, build_block, metadata, struct, writer_dot, writer_merkle
from .documents import INDEXES, TABLES, business_keys, document, exotic_document

FORMATS = ("ion_text", "ion_binary", "json")
BASE_TIME = _dt.datetime(2024, 3, 1, 9, 0, 0, tzinfo=_dt.UTC)
BLOCKS_PER_OBJECT = 250


def _ident(rng: random.Random, n: int = 22) -> str:
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(n))


@dataclass
class Op:
    table: str
    doc_id: str
    version: int
    kind: str  # insert | update | delete
    keys: dict[str, Any] = field(default_factory=dict)  # business keys: fixed at insert, kept by updates
    style: int = 0  # which statement form the application used (parameterized or literal)


@dataclass
class BlockPlan:
    seq: int
    tx_id: str | None
    ops: list[Op] = field(default_factory=list)
    system_revisions: int = 0
    internal_entries: int = 0
    redacts: tuple[str, str, int, int] | None = None  # (table, doc_id, version, block seq of the revision)
    exotic: bool = False
    ddl: list[str] = field(default_factory=list)  # CREATE TABLE / CREATE INDEX statements of a DDL transaction
    lookups: list[tuple[str, str, Any]] = field(default_factory=list)  # SELECT ... WHERE key = ? (table, key, value)


@dataclass
class LedgerPlan:
    strand_id: str
    table_ids: dict[str, str]
    blocks: list[BlockPlan]
    redacted: dict[tuple[int, str, int], int]  # (block seq, doc id, version) -> seq of the redaction block
    revisions: int


def ddl_statements(tables: tuple[str, ...], rng: random.Random) -> list[str]:
    """CREATE TABLE and CREATE INDEX for ``tables``, in the spellings applications used."""
    out = []
    for table in tables:
        out.append(f"CREATE TABLE {table}")
        for index, name in enumerate(INDEXES[table]):
            if index == 1 and rng.random() < 0.5:
                out.append(f'create index on "{table}" ({name})')  # lower-case keywords, quoted name
            else:
                out.append(f"CREATE INDEX ON {table} ({name})")
    return out


def plan_ledger(revisions: int, seed: int) -> LedgerPlan:
    rng = random.Random(seed)
    strand = _ident(rng)
    table_ids = {t: _ident(rng) for t in TABLES}
    # doc id, version, block seq, business keys
    live: dict[str, list[tuple[str, int, int, dict[str, Any]]]] = {t: [] for t in TABLES}
    inserted: dict[str, int] = dict.fromkeys(TABLES, 0)
    accounts: list[str] = []
    superseded: list[tuple[str, str, int, int]] = []
    blocks = [BlockPlan(0, None, internal_entries=2)]  # genesis: no transactionInfo
    # the application's first transactions create its tables and indexes (the recipe's create-tables.sql)
    blocks.append(BlockPlan(1, _ident(rng), system_revisions=4, ddl=ddl_statements(TABLES[:4], rng)))
    blocks.append(BlockPlan(2, _ident(rng), system_revisions=3, ddl=ddl_statements(TABLES[4:], rng)))
    produced = 0
    seq = 2
    redaction_at = {int(revisions * f) for f in (0.55, 0.7, 0.85)} if revisions >= 20 else set()
    while produced < revisions:
        seq += 1
        if seq % 97 == 0:  # a system block: no transactionInfo, no user revisions
            blocks.append(BlockPlan(seq, None, system_revisions=rng.randrange(0, 2), internal_entries=1))
            continue
        block = BlockPlan(seq, _ident(rng), system_revisions=1 if rng.random() < 0.08 else 0,
                          internal_entries=1 if rng.random() < 0.3 else 0)
        if redaction_at and produced >= min(redaction_at) and superseded:
            redaction_at.discard(min(redaction_at))
            block.redacts = superseded.pop(rng.randrange(len(superseded)))
            blocks.append(block)
            continue
        touched: set[str] = set()
        for _ in range(rng.choice([1, 1, 1, 2, 2, 3, 4, 6])):
            table = rng.choice(TABLES)
            docs = live[table]
            roll = rng.random()
            if docs and roll < 0.35:
                i = rng.randrange(len(docs))
                doc_id, version, at, keys = docs[i]
                if doc_id in touched:
                    continue
                superseded.append((table, doc_id, version, at))
                docs[i] = (doc_id, version + 1, seq, keys)
                if rng.random() < 0.5:  # read it by its key first, as applications do
                    key = next(iter(keys))
                    block.lookups.append((table, key, keys[key]))
                block.ops.append(Op(table, doc_id, version + 1, "update", keys, rng.randrange(2)))
            elif docs and roll < 0.42:
                i = rng.randrange(len(docs))
                doc_id, version, _at, keys = docs[i]
                if doc_id in touched:
                    continue
                docs.pop(i)
                block.ops.append(Op(table, doc_id, version + 1, "delete", keys))
            else:
                doc_id = _ident(rng)
                inserted[table] += 1
                keys = business_keys(table, inserted[table], rng, accounts)
                if table == "Accounts":
                    accounts.append(keys["accountId"])
                docs.append((doc_id, 0, seq, keys))
                block.ops.append(Op(table, doc_id, 0, "insert", keys, rng.randrange(2)))
            touched.add(block.ops[-1].doc_id)
        if any(op.kind == "delete" for op in block.ops):
            # a delete beside a system revision cannot be told from a revision with data taken apart
            # (verify.block.check_deletes): the sample keeps them apart; tests build that case on purpose
            block.system_revisions = 0
        block.exotic = seq % 401 == 5
        produced += len(block.ops)
        blocks.append(block)
    redacted = {(b.redacts[3], b.redacts[1], b.redacts[2]): b.seq for b in blocks if b.redacts}
    return LedgerPlan(strand, table_ids, blocks, redacted, produced)


def _statement(op: Op, data: Any) -> tuple[str, list[Any]]:
    """(statement text, its parameters) as the application sent it; the parameters are not in the journal."""
    if op.kind == "insert":
        return (f"INSERT INTO {op.table} ?", [data]) if op.style == 0 else (f"INSERT INTO {op.table} VALUE ?", [data])
    if op.kind == "update":
        if op.style == 0:
            return f"UPDATE {op.table} AS t BY id SET t = ? WHERE id = ?", [data, op.doc_id]
        return f"UPDATE {op.table} AS t BY id SET t = ? WHERE id = '{op.doc_id}'", [data]
    return f"DELETE FROM {op.table} AS t BY id WHERE id = '{op.doc_id}'", []  # literal: its digest is H(statement)


def _moment(seq: int) -> _dt.datetime:
    return BASE_TIME + _dt.timedelta(seconds=seq * 7, milliseconds=(seq * 37) % 1000)


def render_block(plan: LedgerPlan, bp: BlockPlan, seed: int, redacted_seqs: set[int] | None) -> BlockSpec:
    """The block's spec; ``redacted_seqs`` are redaction blocks the export already saw."""
    rng = random.Random(seed * 1_000_003 + bp.seq)
    moment = _moment(bp.seq)
    spec = BlockSpec(plan.strand_id, bp.seq, moment, bp.tx_id)
    spec.statements.extend((text, []) for text in bp.ddl)
    for table, key, value in bp.lookups:
        spec.statements.append((f"SELECT * FROM {table} WHERE {key} = ?", [value]))
    for op in bp.ops:
        meta = metadata(op.doc_id, op.version, moment - _dt.timedelta(milliseconds=5), bp.tx_id or "")
        data = None
        if op.kind == "delete":
            rev = RevisionSpec(meta, None, deleted=True, table_name=op.table, table_id=plan.table_ids[op.table])
        else:
            data = (exotic_document(rng) if bp.exotic and op is bp.ops[0]
                    else document(op.table, rng, moment, op.keys))
            redaction = plan.redacted.get((bp.seq, op.doc_id, op.version))
            is_redacted = redaction is not None and redacted_seqs is not None and redaction in redacted_seqs
            rev = RevisionSpec(meta, data, redacted=is_redacted, table_name=op.table,
                               table_id=plan.table_ids[op.table])
        rev.statement_index = len(spec.statements)
        spec.statements.append(_statement(op, data))
        spec.revisions.append(rev)
    for i in range(bp.system_revisions):
        spec.revisions.append(RevisionSpec(system_hash=hashlib.sha256(b"system %d %d" % (bp.seq, i)).digest()))
    spec.internal_entries = [hashlib.sha256(b"internal %d %d" % (bp.seq, i)).digest()
                             for i in range(bp.internal_entries)]
    if bp.redacts is not None:
        table, doc_id, version, at = bp.redacts
        spec.statements.append(("EXEC redact_revision ?, ?, ?", [
            struct({"strandId": plan.strand_id, "sequenceNo": at}), plan.table_ids[table], doc_id]))
        spec.redaction_info = struct({
            "tableId": plan.table_ids[table], "documentId": doc_id, "version": version,
            "blockAddress": struct({"strandId": plan.strand_id, "sequenceNo": at}),
        })
        # the redaction transaction's own system revision
        spec.revisions.append(RevisionSpec(system_hash=hashlib.sha256(b"redaction %d" % bp.seq).digest()))
    return spec


def iter_ledger_blocks(revisions: int, seed: int, as_committed: bool = False) -> Iterator[IonPyDict]:
    """Every block of the ledger ``write_sample_export(out, revisions, seed=seed)`` plans, in order: in its
    final state (every redaction applied, as an export covering the whole ledger shows it), or ``as_committed``
    (every revision with its data, as a QLDB stream wrote it at commit, before any later redaction).

    One block at a time, so other writers (the stream archive sample) can take the same ledger without
    holding it.
    """
    plan = plan_ledger(revisions, seed)
    redactions = set() if as_committed else set(plan.redacted.values())
    previous = b""
    for bp in plan.blocks:
        block, previous = build_block(render_block(plan, bp, seed, redactions), previous)
        yield block


# --- JSON down-conversion (what QLDB's JSON export does to Ion) ------------------


def to_json(value: Any) -> Any:
    ion_type = getattr(value, "ion_type", None)
    if value is None or isinstance(value, IonPyNull):
        return None
    if isinstance(value, IonPyDict):
        return {str(k): to_json(v) for k, v in value.iteritems()}
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, bool):
        return value
    if isinstance(value, Timestamp) or ion_type is IonType.TIMESTAMP:
        return dumps_text(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, SymbolToken):
        return value.text
    if isinstance(value, Decimal):
        return _JsonDecimal(value)
    if isinstance(value, float):
        return _JsonFloat(value) if value == value and value not in (float("inf"), float("-inf")) else None
    return value


class _JsonDecimal(float):
    """Marks a decimal for the encoder: written with a decimal point and no exponent."""

    def __new__(cls, d: Decimal) -> _JsonDecimal:
        obj = super().__new__(cls, 0.0)
        obj.text = format(d, "f")
        if "." not in obj.text:
            obj.text += ".0"
        return obj

    def __repr__(self) -> str:
        return self.text


class _JsonFloat(float):
    """Written with an exponent, so it reads back as a float."""

    def __repr__(self) -> str:
        return format(float(self), ".17e")


class _Encoder(json.JSONEncoder):
    def iterencode(self, o: Any, _one_shot: bool = False) -> Any:
        # json's C encoder ignores float subclasses' repr; the Python one honours float.__repr__
        return json.encoder._make_iterencode(  # type: ignore[attr-defined]
            {}, self.default, json.encoder.encode_basestring_ascii, self.indent, lambda f: repr(f),
            self.key_separator, self.item_separator, self.sort_keys, self.skipkeys, _one_shot,
        )(o, 0)


def json_line(block: Any) -> str:
    return _Encoder(separators=(",", ":")).encode(to_json(block))


# --- writing the layout -------------------------------------------------------------


@dataclass
class _ExportWriter:
    export_id: str
    first: int
    last: int
    fmt: str
    out: Path
    prefix: str
    strand: str
    keys: list[str] = field(default_factory=list)
    _fh: IO[bytes] | None = None
    _obj_first: int = 0
    _obj_blocks: list[Any] = field(default_factory=list)
    _obj_exact: list[bool] = field(default_factory=list)
    _obj_hour: str = ""

    @property
    def ext(self) -> str:
        return "json" if self.fmt == "json" else "ion"

    def add(self, seq: int, block: Any, exact: bool = False) -> None:
        """``exact``: the block holds values amazon-ion's C writer would round (the exotic documents)."""
        hour = _moment(seq).strftime("%Y/%m/%d/%H")
        if self._obj_blocks and (hour != self._obj_hour or len(self._obj_blocks) >= BLOCKS_PER_OBJECT):
            self.flush()
        if not self._obj_blocks:
            self._obj_first, self._obj_hour = seq, hour
        self._obj_blocks.append(block)
        self._obj_exact.append(exact)

    def flush(self) -> None:
        if not self._obj_blocks:
            return
        last = self._obj_first + len(self._obj_blocks) - 1
        rel = f"{self._obj_hour}/{self.strand}.{self._obj_first}-{last}.{self.ext}"
        path = self.out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if self.fmt == "ion_binary":
            if any(self._obj_exact):
                path.write_bytes(dumps_binary_stream(self._obj_blocks))
            else:
                path.write_bytes(simpleion.dumps(self._obj_blocks, binary=True, sequence_as_stream=True))
        elif self.fmt == "ion_text":
            lines = [dumps_text(b) if exact else simpleion.dumps(b, binary=False, omit_version_marker=True)
                     for b, exact in zip(self._obj_blocks, self._obj_exact, strict=True)]
            path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        else:
            path.write_text("\n".join(json_line(b) for b in self._obj_blocks) + "\n", encoding="utf-8")
        self.keys.append(self.prefix + rel)
        self._obj_blocks = []
        self._obj_exact = []


def _address_text(strand: str, seq: int) -> str:
    return f'{{strandId:"{strand}",sequenceNo:{seq}}}'


def audit_path(leaves: list[bytes], m: int) -> list[bytes]:
    """RFC 6962 audit path of leaf ``m``, deepest sibling first (what QLDB's proofs list)."""
    n = len(leaves)
    if n <= 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return [*audit_path(leaves[:k], m), writer_merkle(leaves[k:])]
    return [*audit_path(leaves[k:], m - k), writer_merkle(leaves[:k])]


def _digest_json(strand: str, tip: int, digest: bytes) -> dict[str, Any]:
    return {"Digest": base64.b64encode(digest).decode(), "DigestTipAddress": {"IonText": _address_text(strand, tip)}}


@dataclass
class SampleSummary:
    out: Path
    strand_id: str
    blocks: int
    revisions: int
    exports: list[dict[str, Any]]
    digests: list[Path]
    proofs: list[Path] = field(default_factory=list)  # get-digest / get-block / get-revision files
    seconds: float = 0.0


def write_sample_export(
    out: Path,
    revisions: int = 1000,
    fmt: str = "ion_text",
    exports: int = 1,
    seed: int = 1,
    prefix: str = "qldb-exports/vehicle-registration/",
    bucket: str = "qldb-migrate-sample",
    progress: Callable[[int, int], None] | None = None,
) -> SampleSummary:
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    started = time.perf_counter()
    plan = plan_ledger(revisions, seed)
    n = len(plan.blocks)
    showcase_seq = _showcase_block(plan)
    showcase: Any = None
    exports = max(1, min(exports, n))
    size = n // exports
    overlap = max(1, size // 10) if exports > 1 else 0
    rng = random.Random(seed + 17)
    writers = []
    for k in range(exports):
        first = 0 if k == 0 else k * size - overlap
        last = n - 1 if k == exports - 1 else (k + 1) * size - 1
        writers.append(_ExportWriter(_ident(rng), first, last, fmt, out, prefix, plan.strand_id))
    out.mkdir(parents=True, exist_ok=True)
    block_hashes: list[bytes] = []
    previous = b""
    redaction_seqs = sorted(plan.redacted.values())
    for bp in plan.blocks:
        variants: dict[frozenset[int], Any] = {}
        for w in writers:
            if not w.first <= bp.seq <= w.last:
                continue
            seen = frozenset(s for s in redaction_seqs if s <= w.last)
            if seen not in variants:
                spec = render_block(plan, bp, seed, set(seen))
                variants[seen] = build_block(spec, previous)
            w.add(bp.seq, variants[seen][0], exact=bp.exotic)
        if not variants:  # not in any export (cannot happen with contiguous ranges)
            spec = render_block(plan, bp, seed, set())
            variants[frozenset()] = build_block(spec, previous)
        hashes = {v[1] for v in variants.values()}
        assert len(hashes) == 1, "a redaction must not change a block hash"
        if bp.seq == showcase_seq:
            showcase = variants[max(variants, key=len)][0]  # the newest export's form
        previous = hashes.pop()
        block_hashes.append(previous)
        if progress is not None and (bp.seq % 100 == 0 or bp.seq == n - 1):
            progress(bp.seq + 1, n)

    summaries = []
    for w in writers:
        w.flush()
        started_manifest = {
            "ledgerName": "vehicle-registration", "exportId": w.export_id, "bucket": bucket, "prefix": prefix,
            "inclusiveStartTime": _moment(w.first).isoformat(), "exclusiveEndTime": _moment(w.last + 1).isoformat(),
            "objectEncryptionType": "SSE_S3", "outputFormat": w.fmt.upper(),
        }
        completed_name = f"{w.export_id}.{plan.strand_id}.completed.manifest"
        (out / f"{w.export_id}.started.manifest").write_text(json.dumps(started_manifest, indent=1) + "\n")
        (out / completed_name).write_text(json.dumps({"keys": w.keys}, indent=1) + "\n")
        tip = w.last
        leaves = block_hashes[: tip + 1]
        digest = writer_merkle(leaves)
        sidecar = {**_digest_json(plan.strand_id, tip, digest), "LastBlockNum": tip,
                   "Proof": {"IonText": "[" + ",".join(f"{{{{{base64.b64encode(h).decode()}}}}}"
                                                      for h in audit_path(leaves, tip)) + "]"}}
        (out / (completed_name + f"{w.export_id}.{plan.strand_id}.proofs.json")).write_text(json.dumps(sidecar) + "\n")
        summaries.append({"exportId": w.export_id, "first": w.first, "last": w.last, "objects": len(w.keys)})

    digest_dir = out / "digests"
    digest_dir.mkdir(exist_ok=True)
    digest_files = []
    for tip in sorted({n // 3, (2 * n) // 3, n - 1}):
        path = digest_dir / f"digest-tip-{tip}.json"
        path.write_text(json.dumps(_digest_json(plan.strand_id, tip, writer_merkle(block_hashes[: tip + 1]))) + "\n")
        digest_files.append(path)
    final = writer_merkle(block_hashes)
    console = digest_dir / "vehicle-registration-digest.ion.txt"
    console.write_text(
        "{\n  ledger: \"vehicle-registration\",\n"
        f"  date: {_moment(n).strftime('%Y-%m-%dT%H:%M:%S.000Z')},\n"
        f"  digest: \"{base64.b64encode(final).decode()}\",\n"
        f"  digestTipAddress: \"{_address_text(plan.strand_id, n - 1).replace(chr(34), chr(92) + chr(34))}\"\n}}\n"
    )
    digest_files.append(console)
    proof_files = _write_proofs(out / "proofs", plan.strand_id, showcase_seq, showcase, block_hashes)
    # one sanity link between the writer's own dot and its proofs: the last leaf's path folds to the root
    acc = block_hashes[-1]
    for sibling in audit_path(block_hashes, n - 1):
        acc = writer_dot(acc, sibling)
    assert acc == final
    return SampleSummary(out, plan.strand_id, n, plan.revisions, summaries, digest_files, proof_files,
                         time.perf_counter() - started)


def _showcase_block(plan: LedgerPlan) -> int:
    """A block near the middle whose first revision is an insert or update: the one the proof files show."""
    candidates = [b.seq for b in plan.blocks if b.ops and b.ops[0].kind != "delete" and not b.exotic
                  and (b.seq, b.ops[0].doc_id, b.ops[0].version) not in plan.redacted]
    return candidates[len(candidates) // 2] if candidates else 0


def _proof_json(proof: list[bytes]) -> dict[str, str]:
    return {"IonText": "[" + ",".join(f"{{{{{base64.b64encode(h).decode()}}}}}" for h in proof) + "]"}


def _write_proofs(directory: Path, strand: str, seq: int, block: Any, block_hashes: list[bytes]) -> list[Path]:
    """GetDigest, GetBlock and GetRevision output for one block and one of its revisions, as the AWS CLI printed
    them, so ``verify-proof`` can be tried at once."""
    if block is None:
        return []
    directory.mkdir(parents=True, exist_ok=True)
    tip = len(block_hashes) - 1
    digest_path = directory / "get-digest.json"
    digest_path.write_text(json.dumps(_digest_json(strand, tip, writer_merkle(block_hashes)), indent=2) + "\n")
    block_path_hashes = audit_path(block_hashes, seq)
    block_file = directory / f"get-block-{seq}.json"
    block_file.write_text(json.dumps({"Block": {"IonText": dumps_text(block)},
                                      "Proof": _proof_json(block_path_hashes)}, indent=2) + "\n")
    revision = block["revisions"][0]
    revision_hashes = [bytes(r["hash"]) for r in block["revisions"]]
    entries = [bytes(e) for e in block["entriesHashList"]]
    root = writer_merkle(revision_hashes)
    proof = [*audit_path(revision_hashes, 0), *audit_path(entries, entries.index(root)),
             bytes(block["previousBlockHash"]), *block_path_hashes]
    pairs = [("blockAddress", struct({"strandId": strand, "sequenceNo": seq}))]
    pairs += [(str(k), v) for k, v in revision.items()]
    meta = revision["metadata"]
    revision_file = directory / f"get-revision-{meta['id']}-v{meta['version']}.json"
    revision_file.write_text(json.dumps({"Revision": {"IonText": dumps_text(struct(pairs))},
                                         "Proof": _proof_json(proof)}, indent=2) + "\n")
    return [digest_path, block_file, revision_file]


__all__ = ["FORMATS", "SampleSummary", "iter_ledger_blocks", "json_line", "plan_ledger", "write_sample_export"]
