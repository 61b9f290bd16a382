"""Durable per-object progress for ``migrate``: what a rerun after a kill, a lost connection or a reboot reuses.

Publishing stays one transaction (``loader``): the ledger tables see nothing
of a run until its last chain link, digest and opt-out check passed.  What is
made durable, beside it, is each object's *worker result* — the block
summaries, findings and COPY-ready rows that verifying the object produced —
committed per object in ``qldb.stage_object`` on a second session, together
with the object's identity.  A rerun re-plans the sources and, for an object
staged with the same identity, replays the staged result instead of parsing
and re-hashing the object; everything sequential (chain join, overlaps,
digests, opt-outs, the COPY into the ledger tables inside the publishing
transaction) runs again over all results, staged and fresh alike.  So a
resumed run publishes exactly the rows an uninterrupted run publishes, and
redoes only the objects that were in flight.

Identity, never trusted on a name: the SHA-256 of the object's bytes (a
worker re-reads and hashes the object: much cheaper than verifying it), its
size, its ETag where S3 gives one (a cheap early "changed"), its place in the
plan (manifest, export, range, format: findings depend on it) and the code
that produced the result (version and stage format).  An S3 ETag alone is
not enough: a single-part ETag is an MD5, and MD5 collisions can be chosen.
Staged results are signed (HMAC-SHA-256) with a key kept on this machine,
outside the database: a result altered in the database, or staged by another
machine, fails its signature and the object is verified again — and nothing
unsigned is ever unpickled.

Stream-archive ranges are not staged (their bytes come from a spill rebuilt
on every run); they are always redone.  The staged rows of a schema are
deleted in the publishing transaction itself; ``--restart`` deletes them
before a run.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import os
import pickle
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import astuple, dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from ..exports import DataObject
from ..sourceplan import STREAM
from ..sources import SourceError, SourceSpec
from ..verifier import ObjectResult, _source, check_object
from .workerload import WorkerLoad, check_and_stage, forget_rows

STAGE_FORMAT = 2  # bump when ObjectResult / BlockRows change shape: older staged results are then redone
#: A larger result is not staged (its object is verified again on a rerun): a bytea holds at most 1 GB, and the
#: publishing session needs the memory too.
STAGE_LIMIT = 256 << 20
KEY_ENV = "QLDB_MIGRATE_STAGE_KEY"  # a file holding the signing key (default: in the user data directory)


def producer() -> str:
    """What produced a staged result: results of other code are never replayed."""
    from importlib.metadata import PackageNotFoundError, version

    from .. import native

    try:
        tool = version("qldb-migrate")
    except PackageNotFoundError:
        tool = "unknown"
    return f"qldb-migrate {tool}; stage {STAGE_FORMAT}; native {native.AVAILABLE}"


def object_place(obj: DataObject) -> str:
    """The object's place in the plan: the same bytes under another manifest entry may give other findings."""
    return hashlib.sha256(repr(astuple(obj)).encode()).hexdigest()


@dataclass(frozen=True)
class Identity:
    sha256: str
    size: int
    etag: str | None


@dataclass
class Reused:
    """A worker's answer for an object whose bytes still match the staged identity: replay the staged result."""

    obj: DataObject
    identity: Identity
    spec: SourceSpec
    with_rows: bool
    reference: bool


@dataclass
class Pickled:
    """A worker's fresh result, pickled once, in the worker: the bytes this process unpickles are the bytes it
    stages (pickling the result again here cost about a tenth of a run's CPU)."""

    blob: bytes


def _hash_object(spec: SourceSpec, key: str) -> tuple[str, int]:
    """SHA-256 and size of the bytes as the verifier reads them (``source.open``: gunzipped), without parsing."""
    digest = hashlib.sha256()
    size = 0
    with _source(spec).open(key) as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def check_or_reuse(spec: SourceSpec, obj: DataObject, with_rows: bool, reference: bool,
                   staged: Identity | None, load: WorkerLoad | None = None) -> Pickled | Reused:
    """Worker: ``Reused`` when the object's bytes are those staged, else the full check (``check_object``; with
    ``load``, ``workerload.check_and_stage``: the worker stages the object's rows in the target itself)."""
    if staged is not None:
        with contextlib.suppress(SourceError, OSError):  # unreadable now: the full check reports it
            etag = _source(spec).info(obj.key).etag
            if staged.etag is None or etag is None or etag == staged.etag:
                sha256, size = _hash_object(spec, obj.key)
                if (sha256, size) == (staged.sha256, staged.size):
                    return Reused(obj, Identity(sha256, size, etag), spec, with_rows, reference)
    result = check_object(spec, obj, with_rows, reference) if load is None else check_and_stage(
        load, spec, obj, with_rows, reference)
    return Pickled(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))


def key_path() -> Path:
    explicit = os.environ.get(KEY_ENV)
    if explicit:
        return Path(explicit)
    import platformdirs

    return Path(platformdirs.user_data_dir("qldb-migrate")) / "stage-signing-key"


def signing_key() -> bytes:
    """This machine's key for staged results (created on first use, readable by its owner only).

    Where no key can be kept, a key for this run only: its progress is still staged, but a rerun cannot
    prove it wrote it and verifies every object again (never trusts it).
    """
    path = key_path()
    for _attempt in range(2):
        try:
            key = path.read_bytes()
        except FileNotFoundError:
            key = None
        except OSError:
            break
        if key is not None:
            if len(key) >= 32:
                return key
            break  # a short key (another run writing it this instant, or not ours): not ours to overwrite
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # two first runs: one key wins
        except FileExistsError:
            continue
        except OSError:
            break
        key = secrets.token_bytes(32)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key)
        return key
    return secrets.token_bytes(32)


@dataclass
class ResumeStats:
    objects: int = 0  # objects the run's plan holds
    staged_before: int = 0  # staged results found for this schema (same producer) when the run started
    reused: int = 0  # replayed from the stage
    redone: int = 0  # verified in this run (new, changed, in flight when interrupted, or not stageable)
    changed: int = 0  # of the redone: staged, but the object's bytes or place differ now
    rejected: int = 0  # of the redone: same bytes, but the staged result failed its signature (altered in the
    #                    database, or signed on another machine)
    restarted: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"objects": self.objects, "stagedBefore": self.staged_before, "reused": self.reused,
                "redone": self.redone, "changed": self.changed, "rejected": self.rejected,
                "restarted": self.restarted}


@dataclass
class Stage:
    """The run's staged progress on its own session (``conn``), each object committed as it is received."""

    conn: psycopg.Connection
    schema: str
    load: WorkerLoad | None = None  # the workers stage each object's rows in the target themselves (workerload)
    key: bytes = field(default_factory=signing_key, repr=False)
    stats: ResumeStats = field(default_factory=ResumeStats)
    _staged: dict[str, tuple[str, Identity]] = field(default_factory=dict)  # key -> (place, identity)
    _producer: str = field(default_factory=producer)

    def begin(self, restart: bool) -> None:
        """Under the run's migration lock: forget the stage (``--restart``), else read what it holds."""
        if restart:
            self.conn.execute("DELETE FROM qldb.stage_object WHERE pg_schema = %s", (self.schema,))
            forget_rows(self.conn, self.schema)
            self.stats.restarted = True
        rows = self.conn.execute(
            "SELECT object_key, place, sha256, size, etag FROM qldb.stage_object WHERE pg_schema = %s "
            "AND producer = %s", (self.schema, self._producer)).fetchall()
        self.conn.commit()
        self._staged = {k: (place, Identity(sha, size, etag)) for k, place, sha, size, etag in rows}
        self.stats.staged_before = len(self._staged)

    def tasks(self, items: Iterable[tuple[Any, ...]]) -> tuple[Callable[..., Any], Iterator[tuple[Any, ...]]]:
        """The per-object work: ``check_or_reuse`` with each object's staged identity (if its place matches)."""
        def with_identity() -> Iterator[tuple[Any, ...]]:
            for spec, obj, with_rows, reference in items:
                self.stats.objects += 1
                staged = self._staged.get(obj.key)
                same = staged is not None and staged[0] == object_place(obj)
                yield spec, obj, with_rows, reference, staged[1] if same and staged is not None else None
        task = check_or_reuse if self.load is None else functools.partial(check_or_reuse, load=self.load)
        return task, with_identity()

    def received(self, result: Pickled | Reused) -> ObjectResult:
        """The object's result: replayed from the stage, or fresh (then staged, committed, before it is used)."""
        blob, why = None, "changed"
        if isinstance(result, Reused):
            replayed, why = self._replay(result)
            if replayed is not None:
                self.stats.reused += 1
                return replayed
            fresh = check_object(result.spec, result.obj, result.with_rows, result.reference)
        else:
            blob = result.blob
            fresh = pickle.loads(blob)  # from this run's own worker, as the executor's transport already does
        self.stats.redone += 1
        if why == "rejected":
            self.stats.rejected += 1
        elif fresh.obj.key in self._staged:
            self.stats.changed += 1
        self._store(fresh, blob)
        return fresh

    def _mac(self, key: str, place: str, identity: Identity, blob: bytes) -> bytes:
        head = "\x00".join([self.schema, key, place, identity.sha256, str(identity.size), self._producer])
        return hmac.new(self.key, head.encode() + b"\x00" + blob, hashlib.sha256).digest()

    def _replay(self, reused: Reused) -> tuple[ObjectResult | None, str]:
        """(the staged result, "") or (None, why not: "changed" — gone, or other bytes or place — or "rejected",
        its signature fails)."""
        obj = reused.obj
        with self.conn.cursor(binary=True) as cur:
            row = cur.execute("SELECT place, sha256, size, result, mac FROM qldb.stage_object WHERE pg_schema = %s "
                              "AND object_key = %s AND producer = %s", (self.schema, obj.key, self._producer)
                              ).fetchone()
        self.conn.commit()
        if row is None:
            return None, "changed"
        place, sha256, size, blob, mac = row
        blob = bytes(blob)
        identity = Identity(sha256, size, reused.identity.etag)
        if place != object_place(obj) or (sha256, size) != (reused.identity.sha256, reused.identity.size):
            return None, "changed"
        if not hmac.compare_digest(bytes(mac), self._mac(obj.key, place, identity, blob)):
            return None, "rejected"  # altered in the database, or signed elsewhere: verify the object again
        result: ObjectResult = pickle.loads(blob)
        result.obj = obj
        return result, ""

    def _store(self, result: ObjectResult, blob: bytes | None = None) -> None:
        obj = result.obj
        if obj.key in self._staged and not any(rows.stage_token for rows in result.rows.values()):
            forget_rows(self.conn, self.schema, obj.key)  # rows a worker staged for the object's older bytes
        stageable = (obj.fmt != STREAM and result.unreadable is None and result.sha256
                     and not any(f.is_error for f in result.findings))
        if not stageable:
            self._forget(obj.key)  # stale if staged: the object changed, and its new bytes did not verify
            return
        if blob is None:
            blob = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
        if len(blob) > STAGE_LIMIT:
            self._forget(obj.key)
            return
        place = object_place(obj)
        identity = Identity(result.sha256, result.size, result.etag)
        self.conn.execute(
            "INSERT INTO qldb.stage_object (pg_schema, object_key, place, sha256, size, etag, producer, blocks, "
            "result, mac) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %b, %b) ON CONFLICT (pg_schema, object_key) DO "
            "UPDATE SET place = excluded.place, sha256 = excluded.sha256, size = excluded.size, etag = excluded.etag, "
            "producer = excluded.producer, blocks = excluded.blocks, result = excluded.result, mac = excluded.mac, "
            "staged_at = clock_timestamp()",
            (self.schema, obj.key, place, identity.sha256, identity.size, identity.etag, self._producer,
             len(result.blocks), blob, self._mac(obj.key, place, identity, blob)))
        self.conn.commit()

    def forget(self, key: str) -> None:
        """The object's staged result and rows, whatever this run knew of them (the publish found its rows
        changed: a rerun must verify the object again, not replay the result)."""
        self.conn.execute("DELETE FROM qldb.stage_object WHERE pg_schema = %s AND object_key = %s", (self.schema, key))
        forget_rows(self.conn, self.schema, key)
        self.conn.commit()

    def _forget(self, key: str) -> None:
        if key in self._staged:
            self.conn.execute("DELETE FROM qldb.stage_object WHERE pg_schema = %s AND object_key = %s",
                              (self.schema, key))
            self.conn.commit()

    def clear(self, publishing: psycopg.Connection) -> None:
        """Inside the publishing transaction: the staged results go with the publish, atomically."""
        publishing.execute("DELETE FROM qldb.stage_object WHERE pg_schema = %s", (self.schema,))
        forget_rows(publishing, self.schema)


__all__ = ["Identity", "Pickled", "ResumeStats", "Reused", "Stage", "check_or_reuse", "producer", "signing_key"]
