"""What the journal says, computed straight from an export's Ion files: the expected answers to the README's queries.

Independent of the tool: amazon-ion reads the data objects (not our reader,
not the database), and QLDB's semantics are applied here in plain Python —
the committed view (each document's latest revision unless it is a delete),
``history()`` (a revision is active from its txTime until the next revision
of its document), and the DDL the journal recorded.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from amazon.ion import simpleion


@dataclass
class Revision:
    table: str
    document_id: str
    version: int
    data: Any  # None: a delete revision, or redacted
    tx_time: _dt.datetime
    tx_id: str
    sequence_no: int
    deleted: bool


def _instant(value: Any) -> _dt.datetime:
    """An Ion timestamp as an aware datetime (no offset, or -00:00, read as UTC, as Ion says)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=_dt.UTC)
    return value.astimezone(_dt.UTC)


class Journal:
    """Every user revision and DDL statement of an export (overlapping exports read once; redactions applied)."""

    def __init__(self, export: Path) -> None:
        self.revisions: dict[tuple[str, int], Revision] = {}
        self.statements: list[tuple[int, str]] = []  # (sequence_no, statement text), every block once
        seen: set[int] = set()
        redacted: set[tuple[str, int]] = set()
        for path in sorted(export.rglob("*.ion")):
            with open(path, "rb") as fh:
                for block in simpleion.load(fh, single_value=False, text_buffer_size_limit=1 << 20):
                    seq = int(block["blockAddress"]["sequenceNo"])
                    first = seq not in seen
                    seen.add(seq)
                    if "redactionInfo" in block:
                        info = block["redactionInfo"]
                        redacted.add((str(info["documentId"]), int(info["version"])))
                    if "transactionInfo" not in block:
                        continue
                    info = block["transactionInfo"]
                    if first:
                        self.statements.extend((seq, str(s["statement"])) for s in info.get("statements", []))
                    tables = {str(k): str(v["tableName"]) for k, v in (info.get("documents") or {}).items()}
                    for rev in block.get("revisions") or []:
                        if "metadata" not in rev:
                            continue  # a system revision
                        meta = rev["metadata"]
                        key = (str(meta["id"]), int(meta["version"]))
                        self.revisions[key] = Revision(
                            tables[key[0]], key[0], key[1], rev.get("data") if "dataHash" not in rev else None,
                            _instant(meta["txTime"]), str(meta["txId"]), seq,
                            "data" not in rev and "dataHash" not in rev)
        for key in redacted:
            self.revisions[key].data = None

    # --- QLDB's views -------------------------------------------------------------------------
    def history(self, table: str, start: _dt.datetime | None = None,
                end: _dt.datetime | None = None) -> list[Revision]:
        """``history(table, start, end)``: revisions active in [start, end], by document id and version."""
        revs = sorted((r for r in self.revisions.values() if r.table == table),
                      key=lambda r: (r.document_id, r.version))
        out = []
        for i, rev in enumerate(revs):
            nxt = revs[i + 1] if i + 1 < len(revs) and revs[i + 1].document_id == rev.document_id else None
            if end is not None and rev.tx_time > end:
                continue
            if start is not None and nxt is not None and nxt.tx_time <= start:
                continue
            out.append(rev)
        return out

    def committed(self, table: str) -> list[Revision]:
        """The committed view: each document's latest revision, unless it deleted the document."""
        latest: dict[str, Revision] = {}
        for rev in self.history(table):
            latest[rev.document_id] = rev
        return [r for r in latest.values() if not r.deleted]

    def ddl(self) -> list[tuple[int, str]]:
        """The statements that look like DDL (for the expected indexes)."""
        return [(s, t) for s, t in self.statements if t.lstrip().upper().startswith(("CREATE", "DROP", "UNDROP"))]


def field(rev: Revision, name: str) -> Any:
    """A top-level field of the revision's data (None where missing), as PartiQL's ``t.name`` reads it."""
    if rev.data is None or name not in rev.data:
        return None
    return rev.data[name]


def decimal_text(value: Any) -> Decimal:
    return Decimal(str(value))


__all__ = ["Journal", "Revision", "decimal_text", "field"]
