"""``qldb-migrate check``: every SQL tamper after a migration is caught and named; the SQL functions agree."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import psycopg
import pytest
from qldb_migrate.ionwrite import dumps_binary
from qldb_migrate.pg.jsoncanon import canonical_json
from qldb_migrate.verify.hashes import dot, merkle_root
from qldb_migrate.verify.ionhash import ion_hash
from qldb_migrate.verify.ionparse import loads

from tests.conftest import run_cli


@pytest.fixture()
def migrated(sample_factory, tmp_path: Path, pg_dsn: str) -> tuple[str, Path]:
    export = sample_factory(tmp_path, revisions=300, exports=1, seed=31)
    proc = run_cli("migrate", export, "--dsn", pg_dsn, "--no-check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return pg_dsn, export / "digests" / "vehicle-registration-digest.ion.txt"


def _one(conn: psycopg.Connection, query: str, *args):
    return conn.execute(query, args).fetchone()


def _data_row(conn: psycopg.Connection) -> tuple[str, str, int, int]:
    """(history table, document id, version, block) of a revision that still holds data."""
    doc, version, seq = _one(conn, "SELECT document_id, version, block_sequence FROM ledger.person_history "
                                   "WHERE data_ion IS NOT NULL ORDER BY block_sequence LIMIT 1")
    return "ledger.person_history", doc, version, seq


def _current_doc(conn: psycopg.Connection) -> tuple[str, int]:
    return _one(conn, "SELECT document_id, version FROM ledger.person ORDER BY document_id LIMIT 1")


TAMPERS = {
    "update a JSONB field": lambda c, d, v, s: c.execute(
        "UPDATE ledger.person_history SET data = jsonb_set(data, '{FirstName}', '\"Mallory\"') "
        "WHERE document_id = %s AND version = %s", (d, v)),
    "update data_ion": lambda c, d, v, s: c.execute(
        "UPDATE ledger.person_history SET data_ion = (SELECT data_ion FROM ledger.person_history "
        "WHERE data_ion IS NOT NULL AND document_id <> %s LIMIT 1) WHERE document_id = %s AND version = %s",
        (d, d, v)),
    # binary Ion on which amazon-ion's C reader loops forever (a NOP pad overrunning nested containers)
    "malformed data_ion": lambda c, d, v, s: c.execute(
        "UPDATE ledger.person_history SET data_ion = %s WHERE document_id = %s AND version = %s",
        (bytes.fromhex("e00100eab3b103000000"), d, v)),
    "update a hash column": lambda c, d, v, s: c.execute(
        "UPDATE ledger.person_history SET data_hash = sha256(data_hash) WHERE document_id = %s AND version = %s",
        (d, v)),
    "delete a history row": lambda c, d, v, s: c.execute(
        "DELETE FROM ledger.person_history WHERE document_id = %s AND version = %s", (d, v)),
    "insert a forged history row": lambda c, d, v, s: c.execute(
        "INSERT INTO ledger.person_history SELECT document_id, version + 100, data, data_ion, metadata_ion, "
        "revision_hash, data_hash, operation, redacted, tx_id, tx_time, tx_time_ion, block_sequence, index_in_block "
        "FROM ledger.person_history WHERE document_id = %s AND version = %s", (d, v)),
    # the columns check proves from the Ion bytes without parsing them (checker._metadata_matches, _data_matches)
    "shift tx_time by a microsecond": lambda c, d, v, s: c.execute(
        "UPDATE ledger.person_history SET tx_time = tx_time + interval '1 microsecond' "
        "WHERE document_id = %s AND version = %s", (d, v)),
    "rewrite tx_time_ion at another precision": lambda c, d, v, s: c.execute(
        "UPDATE ledger.person_history SET tx_time_ion = replace(tx_time_ion, 'Z', '0Z') "
        "WHERE document_id = %s AND version = %s", (d, v)),
    "rewrite tx_id": lambda c, d, v, s: c.execute(
        "UPDATE ledger.person_history SET tx_id = 'forgedTransactionId000' WHERE document_id = %s AND version = %s",
        (d, v)),
    "rewrite a date in the JSONB": lambda c, d, v, s: c.execute(
        "UPDATE ledger.person_history SET data = jsonb_set(data, '{DOB}', '\"1999-01-01T\"') "
        "WHERE document_id = %s AND version = %s", (d, v)),
    "update a block hash": lambda c, d, v, s: c.execute(
        "UPDATE qldb.block SET block_hash = sha256(block_hash) WHERE sequence_no = %s", (s,)),
    "delete a block": lambda c, d, v, s: c.execute("DELETE FROM qldb.block WHERE sequence_no = %s", (s,)),
}


@pytest.mark.parametrize("name", list(TAMPERS))
def test_history_and_block_tampers_are_caught_and_named(name: str, migrated: tuple[str, Path]) -> None:
    dsn, digest = migrated
    assert run_cli("check", "--dsn", dsn, "--digest", digest).returncode == 0  # untouched
    with psycopg.connect(dsn) as conn:
        _table, doc, version, seq = _data_row(conn)
        TAMPERS[name](conn, doc, version, seq)
    proc = run_cli("check", "--dsn", dsn, "--digest", digest)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, f"{name}\n{output}"
    assert "Traceback" not in output
    if "block" in name:
        assert f"sequenceNo:{seq}" in output, output
    else:
        assert f"document {doc}" in output and "person_history" in output, output


@pytest.mark.parametrize("change", ["delete", "update"])
def test_current_table_tampers_are_caught(change: str, migrated: tuple[str, Path]) -> None:
    dsn, digest = migrated
    with psycopg.connect(dsn) as conn:
        doc, _version = _current_doc(conn)
        if change == "delete":
            conn.execute("DELETE FROM ledger.person WHERE document_id = %s", (doc,))
        else:
            conn.execute("UPDATE ledger.person SET data = '{\"FirstName\": \"Eve\"}' WHERE document_id = %s", (doc,))
    proc = run_cli("check", "--dsn", dsn, "--digest", digest)
    assert proc.returncode == 1
    assert f"document {doc}" in proc.stderr and "ledger.person" in proc.stderr


def _same_number_other_scale(conn: psycopg.Connection) -> str:
    """A current row's number rewritten to a numerically equal one of another scale (5 -> 5.0): jsonb's equality
    calls them the same, the ledger's hashes do not."""
    from decimal import Decimal

    rows = [(current, doc, text) for (current,) in conn.execute("SELECT current_name FROM qldb.ledger_table").fetchall()
            for doc, text in conn.execute(f"SELECT document_id, data::text FROM ledger.{current} ORDER BY 1")]
    for current, doc, text in rows:
        data = json.loads(text, parse_float=Decimal)
        key = next((k for k, v in data.items() if isinstance(v, (int, Decimal)) and not isinstance(v, bool)), None)
        if key is None:
            continue
        conn.execute(f"UPDATE ledger.{current} SET data = jsonb_set(data, ARRAY[%s], (data->>%s || CASE WHEN "
                     "data->>%s LIKE '%%.%%' THEN '0' ELSE '.0' END)::jsonb) WHERE document_id = %s",
                     (key, key, key, doc))
        assert conn.execute(f"SELECT data = %s::jsonb AND data::text <> %s FROM ledger.{current} "
                            "WHERE document_id = %s", (text, text, doc)).fetchone()[0]
        return current
    raise AssertionError("no numeric field in any current table")


@pytest.mark.parametrize("tamper", ["renamed table", "number rescaled", "state flipped to live"])
def test_bookkeeping_tampers_are_caught(tamper: str, migrated: tuple[str, Path]) -> None:
    dsn, digest = migrated
    with psycopg.connect(dsn) as conn:
        if tamper == "renamed table":
            conn.execute("UPDATE qldb.ledger_table SET table_name = 'Impostor' WHERE table_name = 'Person'")
        elif tamper == "number rescaled":
            table = _same_number_other_scale(conn)
        else:
            conn.execute("UPDATE qldb.ledger SET state = 'live'")
    proc = run_cli("check", "--dsn", dsn, "--digest", digest)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, f"{tamper}\n{output}"
    table = locals().get("table", "")
    expected = {"renamed table": "names it otherwise", "number rescaled": f"ledger.{table}: missing or different",
                "state flipped to live": "history tables have the live ledger's columns"}[tamper]
    assert expected in output, output


def _rewrite_everything_above(conn: psycopg.Connection) -> tuple[str, int]:
    """Change one revision's data and recompute every hash above it, as an attacker with write access would."""
    doc, version, seq, idx, data_ion, meta_ion = _one(
        conn, "SELECT document_id, version, block_sequence, index_in_block, data_ion, metadata_ion "
              "FROM ledger.person_history WHERE data_ion IS NOT NULL ORDER BY block_sequence DESC LIMIT 1")
    value = loads(bytes(data_ion))
    value["FirstName"] = "Mallory"
    new_ion = dumps_binary(value)
    data_hash = ion_hash(loads(new_ion))
    rev_hash = dot(ion_hash(loads(bytes(meta_ion))), data_hash)
    conn.execute("UPDATE ledger.person_history SET data = %s, data_ion = %s, data_hash = %s, revision_hash = %s "
                 "WHERE document_id = %s AND version = %s",
                 (canonical_json(loads(new_ion)), new_ion, data_hash, rev_hash, doc, version))
    conn.execute("UPDATE ledger.person SET data = h.data, data_ion = h.data_ion, revision_hash = h.revision_hash "
                 "FROM ledger.person_history h WHERE h.document_id = person.document_id "
                 "AND h.version = person.version AND person.document_id = %s", (doc,))
    revisions, entries, previous = _one(
        conn, "SELECT revision_hashes, entries_hash_list, previous_block_hash FROM qldb.block WHERE sequence_no = %s",
        seq)
    revisions = [bytes(r) for r in revisions]
    old_root = merkle_root(revisions)
    revisions[idx] = rev_hash
    entries = [merkle_root(revisions) if bytes(e) == old_root else bytes(e) for e in entries]
    entries_hash = merkle_root(entries)
    block_hash = dot(entries_hash, bytes(previous))
    conn.execute("UPDATE qldb.block SET revision_hashes = %s, entries_hash_list = %s, entries_hash = %s, "
                 "block_hash = %s WHERE sequence_no = %s", (revisions, entries, entries_hash, block_hash, seq))
    for later, later_entries_hash in conn.execute(
        "SELECT sequence_no, entries_hash FROM qldb.block WHERE sequence_no > %s ORDER BY sequence_no", (seq,)
    ).fetchall():
        new_hash = dot(bytes(later_entries_hash), block_hash)
        conn.execute("UPDATE qldb.block SET previous_block_hash = %s, block_hash = %s WHERE sequence_no = %s",
                     (block_hash, new_hash, later))
        block_hash = new_hash
    conn.execute("DELETE FROM qldb.digest")  # the stored digests are in reach of the same attacker
    return doc, seq


def test_rewriting_every_hash_is_caught_only_with_an_outside_digest(migrated: tuple[str, Path]) -> None:
    dsn, digest = migrated
    with psycopg.connect(dsn) as conn:
        _rewrite_everything_above(conn)
    inside_only = run_cli("check", "--dsn", dsn)
    assert inside_only.returncode == 0, inside_only.stdout + inside_only.stderr
    assert "INTERNALLY CONSISTENT, NOT ANCHORED" in inside_only.stdout
    assert run_cli("check", "--dsn", dsn, "--strict").returncode == 1
    anchored = run_cli("check", "--dsn", dsn, "--digest", digest)
    assert anchored.returncode == 1
    assert "does not match the root recomputed from qldb.block" in anchored.stderr


def _digest_of(path: Path) -> tuple[str, int, bytes]:
    text = path.read_text()
    strand = re.search(r'strandId:\\"([^\\]+)\\"', text).group(1)
    tip = int(re.search(r"sequenceNo:(\d+)", text).group(1))
    return strand, tip, base64.b64decode(re.search(r'digest: "([^"]+)"', text).group(1))


@pytest.mark.parametrize("tamper", ["none", "block hash", "delete block", "swap entries", "rewrite all"])
def test_sql_functions_agree_with_the_python_check(tamper: str, migrated: tuple[str, Path]) -> None:
    dsn, digest = migrated
    strand, tip, digest_bytes = _digest_of(digest)
    with psycopg.connect(dsn) as conn:
        if tamper == "block hash":
            conn.execute("UPDATE qldb.block SET block_hash = sha256(block_hash) WHERE sequence_no = 7")
        elif tamper == "delete block":
            conn.execute("DELETE FROM qldb.block WHERE sequence_no = 9")
        elif tamper == "swap entries":
            conn.execute("UPDATE qldb.block SET entries_hash_list = ARRAY[entries_hash_list[3], entries_hash_list[2], "
                         "entries_hash_list[1]] || entries_hash_list[4:] "
                         "WHERE sequence_no = (SELECT min(sequence_no) FROM qldb.block "
                         "WHERE cardinality(entries_hash_list) >= 3)")
        elif tamper == "rewrite all":
            _rewrite_everything_above(conn)
        conn.commit()
        problems = conn.execute("SELECT * FROM qldb.verify_chain()").fetchall()
        matches = conn.execute("SELECT qldb.digest_matches(%s, %s, %s)", (strand, tip, digest_bytes)).fetchone()[0]
    report = digest.parent / f"check-{tamper.replace(' ', '-')}.json"
    proc = run_cli("check", "--dsn", dsn, "--digest", digest, "--report", report)
    block_codes = {"entries-hash-mismatch", "block-hash-mismatch", "chain-link-mismatch", "gap",
                   "revisions-root-not-in-entries"}
    data = json.loads(report.read_text())
    python_block_problem = any(f["code"] in block_codes for f in data["findings"])
    assert bool(problems) == python_block_problem, (problems, proc.stderr)
    python_digest = data["outsideDigests"][0]["matched"]
    assert bool(matches) == bool(python_digest), (matches, python_digest, proc.stderr)
    if tamper == "none":
        assert problems == [] and matches is True


def test_loaded_jsonb_is_the_python_rendering_of_data_ion(migrated: tuple[str, Path]) -> None:
    """migrate renders jsonb from the bytes in C (and check compares in C first): every row of a sample shaped like
    a real ledger must hold exactly what the pure-Python renderer gives for its data_ion, the independent reading."""
    dsn, _digest = migrated
    checked = 0
    with psycopg.connect(dsn) as conn:
        tables = conn.execute("SELECT pg_schema, history_name FROM qldb.ledger_table").fetchall()
        for schema, history in tables:
            for data, data_ion in conn.execute(
                    f'SELECT data::text, data_ion FROM "{schema}"."{history}" WHERE data_ion IS NOT NULL'):
                assert data == canonical_json(loads(bytes(data_ion), exact=True)), (schema, history)
                checked += 1
    assert checked > 200
