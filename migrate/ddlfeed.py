"""Feeding a block's ``transactionInfo`` (as the database stores it, JSON) into ``LedgerSchema``.

The migrated ``qldb.block.transaction_info`` is the canonical JSON of the
hashed Ion (its hash is among the block's entries, so ``check`` proves it);
reading DDL from it rather than from the export means an incremental
``migrate`` and a first one see exactly the same statements.  Pure: no I/O.

Only blocks that can change the schema matter: those with a statement that
may be DDL (every DDL form contains ``create`` or ``drop``, in any case;
``MAY_BE_DDL`` is a superset the parser then decides on) and those writing a
table id the schema has not seen.  ``MAY_BE_DDL_JSONPATH`` is the same test
for a SQL filter.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from .ddlstate import DocumentRef, Finding, LedgerSchema

MAY_BE_DDL = re.compile(r"create|drop", re.IGNORECASE)
MAY_BE_DDL_JSONPATH = '$.statements[*].statement ? (@ like_regex "create|drop" flag "i")'


def statements_of(info: Any) -> list[str]:
    """The statement texts, in order ([] when the block has none or they are not a list)."""
    items = info.get("statements") if isinstance(info, dict) else None
    if not isinstance(items, list):
        return []
    return [str(s.get("statement")) if isinstance(s, dict) else "" for s in items]


def documents_of(info: Any) -> list[DocumentRef]:
    """Each ``documents`` entry that names a table (name and id both strings), with its statement indices."""
    entries = info.get("documents") if isinstance(info, dict) else None
    if not isinstance(entries, dict):
        return []
    out = []
    for entry in entries.values():
        if not isinstance(entry, dict):
            continue
        name, table_id = entry.get("tableName"), entry.get("tableId")
        if isinstance(name, str) and isinstance(table_id, str) and name and table_id:
            indices = entry.get("statements")
            ints = tuple(int(i) for i in indices if isinstance(i, int)) if isinstance(indices, list) else ()
            out.append(DocumentRef(name, table_id, ints))
    return out


def may_change_schema(schema: LedgerSchema, info: Any) -> bool:
    """Whether the block holds a statement that may be DDL, or a document of a table id not known yet."""
    if any(MAY_BE_DDL.search(text) for text in statements_of(info)):
        return True
    return any(schema.by_id(doc.table_id) is None for doc in documents_of(info))


def feed(schema: LedgerSchema, blocks: Iterable[tuple[int, str | None, Any]]) -> list[Finding]:
    """Applies ``(sequence_no, block timestamp as Ion text, transactionInfo as JSON)`` in chain order.

    Blocks at or below the last one applied are skipped (an earlier run applied them); blocks that cannot
    change the schema are passed over.
    """
    findings: list[Finding] = []
    for sequence_no, time, info in blocks:
        if schema.last_sequence_no is not None and sequence_no <= schema.last_sequence_no:
            continue
        if info is None or not may_change_schema(schema, info):
            continue
        findings.extend(schema.apply(sequence_no, time, statements_of(info), documents_of(info)))
    return findings


__all__ = ["MAY_BE_DDL", "MAY_BE_DDL_JSONPATH", "documents_of", "feed", "may_change_schema", "statements_of"]
