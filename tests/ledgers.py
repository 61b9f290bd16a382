"""Hand-built ledgers for cases the sample generator does not make (a table name reused after a drop, ...).

Blocks are built with the sample writer's own hash arithmetic (``qldb_migrate.sample.blocks``), written as one
ION_TEXT export with its manifests and a GetDigest file, exactly as ``sample-export`` lays one out.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path
from typing import Any

from qldb_migrate.ionwrite import dumps_text
from qldb_migrate.sample.blocks import BlockSpec, RevisionSpec, build_block, metadata, struct, writer_merkle

T0 = dt.datetime(2024, 6, 1, 12, 0, 0, tzinfo=dt.UTC)


def revision(doc_id: str, version: int, data: Any, table: str, table_id: str, seq: int, deleted: bool = False
             ) -> RevisionSpec:
    meta = metadata(doc_id, version, T0 + dt.timedelta(seconds=seq), f"tx{seq}")
    return RevisionSpec(meta, None if deleted else data, deleted=deleted, table_name=table, table_id=table_id,
                        statement_index=0)


def write_export(out: Path, strand: str, blocks: list[tuple[list[tuple[str, list[Any]]], list[RevisionSpec]]],
                 ledger: str = "hand-built") -> Path:
    """Blocks 0..n (block 0: genesis with no transactionInfo, then one block per (statements, revisions) pair);
    returns the digest file over all of them."""
    out.mkdir(parents=True, exist_ok=True)
    built, hashes, previous = [], [], b""
    specs = [BlockSpec(strand, 0, T0, None)]
    for i, (statements, revisions) in enumerate(blocks, start=1):
        specs.append(BlockSpec(strand, i, T0 + dt.timedelta(seconds=i), f"tx{i}", statements, revisions))
    for spec in specs:
        if spec.sequence_no == 0:
            spec.internal_entries = [b"\x01" * 32]
        block, previous = build_block(spec, previous)
        built.append(block)
        hashes.append(previous)
    last = len(built) - 1
    key = f"2024/06/01/12/{strand}.0-{last}.ion"
    (out / key).parent.mkdir(parents=True, exist_ok=True)
    (out / key).write_text("\n".join(dumps_text(b) for b in built) + "\n")
    (out / "E1.started.manifest").write_text(json.dumps({"ledgerName": ledger, "exportId": "E1", "prefix": "",
                                                         "outputFormat": "ION_TEXT"}))
    (out / f"E1.{strand}.completed.manifest").write_text(json.dumps({"keys": [key]}))
    digest = out.parent / f"{out.name}-digest.json"
    digest.write_text(json.dumps({"Digest": base64.b64encode(writer_merkle(hashes)).decode(),
                                  "DigestTipAddress": {"IonText": f'{{strandId:"{strand}",sequenceNo:{last}}}'}}))
    return digest


def doc(**fields: Any) -> Any:
    return struct(fields)
