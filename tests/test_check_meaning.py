"""``check --digest`` after plain-SQL edits that change what the rows *mean* while every hash still matches.

Each edit below left ``check --digest`` saying VERIFIED before it re-derived the
columns from what the hashes bind (issue: integrity holes §2); each is now an
error naming the row or block.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from tests.conftest import run_cli


@pytest.fixture()
def migrated(sample_factory, tmp_path: Path, pg_dsn: str) -> tuple[str, Path]:
    export = sample_factory(tmp_path, revisions=300, exports=1, seed=31)
    proc = run_cli("migrate", export, "--dsn", pg_dsn, "--no-check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return pg_dsn, export / "digests" / "vehicle-registration-digest.ion.txt"


def _one(conn: psycopg.Connection, query: str, *args):
    return conn.execute(query, args).fetchone()


def _current_update(conn: psycopg.Connection) -> tuple[str, int]:
    """A document whose current revision is an update."""
    return _one(conn, "SELECT c.document_id, c.version FROM ledger.person c WHERE c.version > 0 "
                      "ORDER BY c.document_id LIMIT 1")


def _rebuild_current(conn: psycopg.Connection, schema: str, current: str, history: str) -> None:
    """What an editor would do to keep the current table consistent with an edited history."""
    conn.execute(f'DELETE FROM "{schema}"."{current}"')
    conn.execute(f'INSERT INTO "{schema}"."{current}" (document_id, version, data, data_ion, revision_hash, tx_time, '
                 f'block_sequence) SELECT document_id, version, data, data_ion, revision_hash, tx_time, '
                 f'block_sequence FROM (SELECT DISTINCT ON (document_id) * FROM "{schema}"."{history}" '
                 f'ORDER BY document_id, version DESC) l WHERE operation <> \'delete\'')


def relabel_update_as_delete(conn: psycopg.Connection) -> str:
    doc, version = _current_update(conn)
    conn.execute("UPDATE ledger.person_history SET operation = 'delete' WHERE document_id = %s AND version = %s",
                  (doc, version))
    conn.execute("DELETE FROM ledger.person WHERE document_id = %s", (doc,))
    return doc


def relabel_insert_as_update(conn: psycopg.Connection) -> str:
    doc = _one(conn, "SELECT document_id FROM ledger.person_history WHERE version = 0 ORDER BY 1 LIMIT 1")[0]
    conn.execute("UPDATE ledger.person_history SET operation = 'update' WHERE document_id = %s AND version = 0",
                 (doc,))
    return doc


def relabel_update_as_insert(conn: psycopg.Connection) -> str:
    doc, version = _current_update(conn)
    conn.execute("UPDATE ledger.person_history SET operation = 'insert' WHERE document_id = %s AND version = %s",
                  (doc, version))
    return doc


def _erase(redacted: bool) -> Callable[[psycopg.Connection], str]:
    def erase(conn: psycopg.Connection) -> str:
        doc, version = _one(conn, "SELECT document_id, version FROM ledger.person_history WHERE data_ion IS NOT NULL "
                                  "AND (document_id, version) NOT IN (SELECT document_id, version FROM ledger.person) "
                                  "ORDER BY 1 LIMIT 1")
        conn.execute("UPDATE ledger.person_history SET data = NULL, data_ion = NULL, redacted = %s "
                     "WHERE document_id = %s AND version = %s", (redacted, doc, version))
        return doc

    return erase


def history_tx_time(conn: psycopg.Connection) -> str:
    doc, version = _one(conn, "SELECT document_id, version FROM ledger.person_history ORDER BY 1, 2 LIMIT 1")
    conn.execute("UPDATE ledger.person_history SET tx_time = tx_time - interval '3 days' "
                 "WHERE document_id = %s AND version = %s", (doc, version))
    return doc


def current_tx_time(conn: psycopg.Connection) -> str:
    doc = _one(conn, "SELECT document_id FROM ledger.person ORDER BY 1 LIMIT 1")[0]
    conn.execute("UPDATE ledger.person SET tx_time = tx_time + interval '1 hour' WHERE document_id = %s", (doc,))
    return doc


def _move(copy: bool) -> Callable[[psycopg.Connection], str]:
    def move(conn: psycopg.Connection) -> str:
        doc = _one(conn, "SELECT document_id FROM ledger.person ORDER BY 1 LIMIT 1")[0]
        conn.execute("INSERT INTO ledger.vehicle_history SELECT * FROM ledger.person_history WHERE document_id = %s",
                     (doc,))
        conn.execute("INSERT INTO ledger.vehicle SELECT * FROM ledger.person WHERE document_id = %s", (doc,))
        if not copy:
            conn.execute("DELETE FROM ledger.person_history WHERE document_id = %s", (doc,))
            conn.execute("DELETE FROM ledger.person WHERE document_id = %s", (doc,))
        return doc

    return move


def unlist_and_delete_row(conn: psycopg.Connection) -> str:
    doc, version, seq, idx = _one(conn, "SELECT document_id, version, block_sequence, index_in_block "
                                        "FROM ledger.person_history ORDER BY block_sequence DESC LIMIT 1")
    conn.execute("UPDATE qldb.block SET revision_documents[%s] = NULL WHERE sequence_no = %s", (idx + 1, seq))
    conn.execute("DELETE FROM ledger.person_history WHERE document_id = %s AND version = %s", (doc, version))
    _rebuild_current(conn, "ledger", "person", "person_history")
    return doc


def rename_listed_document(conn: psycopg.Connection) -> str:
    """revision_documents (in no hash) names another document: the block's transactionInfo does not list it."""
    seq, idx = _one(conn, "SELECT block_sequence, index_in_block FROM ledger.person_history ORDER BY 1 LIMIT 1")
    conn.execute("UPDATE qldb.block SET revision_documents[%s] = 'Unlisted0000000000000A' WHERE sequence_no = %s",
                 (idx + 1, seq))
    return "Unlisted0000000000000A"


def unlist_in_transaction_info_json(conn: psycopg.Connection) -> str:
    """The jsonb transaction_info (a reader's copy) loses a document; its Ion, which the hash covers, keeps it."""
    seq, doc = _one(conn, "SELECT block_sequence, document_id FROM ledger.person_history ORDER BY 1 LIMIT 1")
    conn.execute("UPDATE qldb.block SET transaction_info = transaction_info #- ARRAY['documents', %s] "
                 "WHERE sequence_no = %s", (doc, seq))
    return f"sequenceNo:{seq}"


def drop_transaction_info(conn: psycopg.Connection) -> str:
    seq = _one(conn, "SELECT block_sequence FROM ledger.person_history ORDER BY 1 LIMIT 1")[0]
    conn.execute("UPDATE qldb.block SET transaction_info = NULL, transaction_info_ion = NULL WHERE sequence_no = %s",
                 (seq,))
    return f"sequenceNo:{seq}"


MEANING_EDITS: dict[str, tuple[Callable[[psycopg.Connection], str], str]] = {
    "update relabelled delete, current row removed": (relabel_update_as_delete, "operation-mismatch"),
    "insert relabelled update": (relabel_insert_as_update, "operation-mismatch"),
    "update relabelled insert": (relabel_update_as_insert, "operation-mismatch"),
    "data and data_ion cleared": (_erase(False), "data-erased-without-redaction"),
    "data and data_ion cleared, redacted = true": (_erase(True), "data-erased-without-redaction"),
    "history tx_time changed": (history_tx_time, "tx-time-mismatch"),
    "current tx_time changed": (current_tx_time, "current-row-mismatch"),
    "rows moved to another table": (_move(False), "row-in-wrong-table"),
    "rows copied to another table": (_move(True), "row-in-wrong-table"),
    "revision_documents[i] nulled and its row deleted": (unlist_and_delete_row, "document-revision-missing"),
    "transaction_info and its Ion nulled": (drop_transaction_info, "transaction-info-missing"),
    "revision_documents[i] renamed": (rename_listed_document, "revision-not-in-documents"),
    "a document removed from the transaction_info jsonb": (unlist_in_transaction_info_json,
                                                           "transaction-info-json-mismatch"),
}


@pytest.mark.parametrize("name", list(MEANING_EDITS))
def test_meaning_changed_behind_valid_hashes_is_caught(name: str, migrated: tuple[str, Path], tmp_path: Path
                                                        ) -> None:
    dsn, digest = migrated
    assert run_cli("check", "--dsn", dsn, "--digest", digest).returncode == 0  # untouched
    edit, code = MEANING_EDITS[name]
    with psycopg.connect(dsn) as conn:
        named = edit(conn)
    report = tmp_path / "check.json"
    proc = run_cli("check", "--dsn", dsn, "--digest", digest, "--report", report)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, f"{name}\n{output}"
    assert "Traceback" not in output
    codes = {f["code"] for f in json.loads(report.read_text())["findings"]}
    assert code in codes, (name, codes)
    assert named in output, output


def test_lost_newest_blocks_are_not_hidden_by_a_digest_that_was_given(migrated: tuple[str, Path],
                                                                     tmp_path: Path) -> None:
    """The newest block and its rows deleted, the run counts adjusted: the digest given is a claim to prove."""
    dsn, digest = migrated
    with psycopg.connect(dsn) as conn:
        last = conn.execute("SELECT max(sequence_no) FROM qldb.block").fetchone()[0]
        conn.execute("DELETE FROM qldb.block WHERE sequence_no = %s", (last,))
        conn.execute("DELETE FROM qldb.digest")
        for schema, current, history in conn.execute(
                "SELECT pg_schema, current_name, history_name FROM qldb.ledger_table").fetchall():
            conn.execute(f'DELETE FROM "{schema}"."{history}" WHERE block_sequence = %s', (last,))
            _rebuild_current(conn, schema, current, history)
        conn.execute("UPDATE qldb.migration_run SET counts = '{}'")
    proc = run_cli("check", "--dsn", dsn, "--digest", digest, "--report", tmp_path / "c.json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "digest-beyond-stored-chain" in (tmp_path / "c.json").read_text()
    assert f"lost blocks {last}..{last}" in proc.stderr and "newer than what was migrated" in proc.stderr
