"""The on-disk index of a stream archive's records: one SQLite file in a directory the caller gives.

A stream archive is not in block order (Kinesis delivers at least once and
in no order across shards), and it can be far larger than memory, so the
first pass spills every record here and the second reads blocks back in
sequence order.  SQLite because it is in the standard library, indexes on
disk, and can be opened read-only by any number of worker processes.

Table ``records`` holds one row per *distinct* record: its identity
(strand, sequence number, kind, document id and version), the SHA-256 of
its bytes, where it came from (object, record index, label), the few fields
the cross-checks need without a parse (a details record's revision hash, a
summary's revision summaries), and its bytes exactly as read.  A unique
index on identity plus byte digest makes a byte-identical redelivery an
ignored insert; copies that differ in bytes (another symbol table, or real
tampering) stay as separate rows for ``scan_stream_archive`` to judge.
Rows are inserted in arrival order, so ``id`` orders them as they came.
The identity index also gives the second pass its order (strand, sequence
number, kind); no other index is built.

Memory is bounded whatever the archive's size: each connection caches
``CACHE_KIB`` of pages (SQLite's sorter may use as much again, which is why
no query sorts every row), and Python holds a batch of rows and one block
at a time.  Pages are 16 KiB (a record is about 1 KB).

The file is scratch data: no journal, no fsync.  A run that dies leaves it
behind in the caller's directory, to be scanned again.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

__all__ = ["KIND_DETAILS", "KIND_SUMMARY", "SCHEMA_VERSION", "connect", "create", "open_read_only"]

SCHEMA_VERSION = "1"
KIND_SUMMARY = 1
KIND_DETAILS = 2

#: No document id / version for a summary: '' and -1, never NULL (NULLs are all distinct in a unique index).
NO_DOCUMENT = ""
NO_VERSION = -1

_SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE objects(id INTEGER PRIMARY KEY, key TEXT NOT NULL);
CREATE TABLE arns(id INTEGER PRIMARY KEY, arn TEXT NOT NULL UNIQUE, ledger TEXT NOT NULL);
CREATE TABLE records(
    id INTEGER PRIMARY KEY,
    strand TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    doc TEXT NOT NULL,
    version INTEGER NOT NULL,
    digest BLOB NOT NULL,
    arn INTEGER NOT NULL,
    obj INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    label TEXT NOT NULL,
    rhash BLOB,
    entries TEXT,
    foreign_ledger INTEGER NOT NULL DEFAULT 0,
    body BLOB NOT NULL
);
CREATE UNIQUE INDEX records_identity ON records(strand, seq, kind, doc, version, digest);
"""

INSERT = (
    "INSERT OR IGNORE INTO records(strand, seq, kind, doc, version, digest, arn, obj, idx, label, rhash, entries, "
    "body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


#: Pages each connection caches, in KiB: SQLite's sorter may hold as much again.  The same bound whatever the
#: archive's size, so memory stays flat: the identity index's hot end (Kinesis delivers roughly in order) and the
#: block being rebuilt are what is read back, the rest is in the operating system's file cache.
CACHE_KIB = 16384


def _tune(conn: sqlite3.Connection) -> None:
    conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
    conn.execute("PRAGMA temp_store = FILE")


def create(path: Path) -> sqlite3.Connection:
    """A new, empty spill file at ``path`` (an old one there is replaced)."""
    for stale in (path, path.with_name(path.name + "-journal")):
        stale.unlink(missing_ok=True)
    conn = sqlite3.connect(path)
    # A record is about 1 KB: 16 KiB pages hold a dozen (4 KiB ones four), and pass 1's inserts cost ~20% less CPU.
    conn.execute("PRAGMA page_size = 16384")
    conn.execute("PRAGMA journal_mode = OFF")
    conn.execute("PRAGMA synchronous = OFF")
    _tune(conn)
    conn.executescript(_SCHEMA)
    conn.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
    conn.commit()
    return conn


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path)
    _tune(conn)
    return conn


def open_read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection of its own: safe in any number of worker processes at once."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    _tune(conn)
    schema = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    if schema is None or schema[0] != SCHEMA_VERSION:
        conn.close()
        raise ValueError(f"{path}: not a stream archive spill file of schema {SCHEMA_VERSION}")
    return conn
