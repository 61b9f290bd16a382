"""The ledger after cut-over, on real PostgreSQL: plain SQL writes continue QLDB's chain, append-only for every role,
digests and proofs from the database that ``verify-proof`` and ``check`` accept across the boundary."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from qldb_migrate.live import sealer as live_sealer

from tests.conftest import run_cli

APP = "qm_ledger_app"


def _digest(export: Path) -> Path:
    return export / "digests" / "vehicle-registration-digest.ion.txt"


@pytest.fixture()
def live(sample_factory, tmp_path: Path, pg_dsn: str, pg_admin: str) -> dict:
    """A migrated sample ledger, cut over, with an application role."""
    with psycopg.connect(pg_admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (APP,)).fetchone():
            conn.execute(f"CREATE ROLE {APP} LOGIN")
        conn.execute(f'GRANT CONNECT ON DATABASE "{conninfo_to_dict(pg_dsn)["dbname"]}" TO {APP}')
    export = sample_factory(tmp_path, revisions=300, exports=1, seed=91)
    assert run_cli("migrate", export, "--dsn", pg_dsn, "--no-check").returncode == 0
    proc = run_cli("cutover", "--dsn", pg_dsn, "--app-role", APP)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "LIVE:" in proc.stdout
    return {"dsn": pg_dsn, "app": make_conninfo(pg_dsn, user=APP), "admin": pg_admin, "export": export,
            "qldb_digest": _digest(export), "state": tmp_path / "seal-state"}


def _seal(live: dict, *extra: object) -> subprocess.CompletedProcess[str]:
    return run_cli("seal", "--dsn", live["dsn"], "--state-dir", live["state"], *extra)


def _digest_now(live: dict, path: Path) -> Path:
    proc = run_cli("digest", "--dsn", live["dsn"], "--out", path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return path


def test_plain_sql_writes_continue_the_chain_and_prove_across_the_cut_over(live: dict, tmp_path: Path) -> None:
    with psycopg.connect(live["app"]) as app:
        doc = app.execute("INSERT INTO ledger.accounts (data) VALUES ('{\"accountId\": \"ACC-003\", \"balance\": "
                          "100.00}') RETURNING document_id, version").fetchone()
        assert doc[1] == 0 and len(doc[0]) == 22
        app.commit()
        app.execute("UPDATE ledger.accounts SET data = jsonb_set(data, '{balance}', '9500.00') WHERE document_id = %s",
                    (doc[0],))
        app.commit()
        # two writes of one document in one transaction: one revision, as in QLDB
        other = app.execute("INSERT INTO ledger.accounts (data) VALUES ('{\"accountId\": \"ACC-004\"}') "
                            "RETURNING document_id").fetchone()[0]
        app.execute("UPDATE ledger.accounts SET data = '{\"accountId\": \"ACC-004\", \"balance\": 1e2}' "
                    "WHERE document_id = %s", (other,))
        app.commit()
        app.execute("DELETE FROM ledger.accounts WHERE document_id = %s", (doc[0],))
        app.commit()
        rolled = app.execute("INSERT INTO ledger.accounts (data) VALUES ('{\"accountId\": \"ACC-999\"}') "
                             "RETURNING document_id").fetchone()[0]
        app.rollback()
    with psycopg.connect(live["dsn"]) as conn:
        rows = conn.execute("SELECT document_id, version, operation, data->>'balance' FROM ledger.accounts_history "
                            "WHERE write_seq IS NOT NULL ORDER BY write_seq").fetchall()
    assert rows == [(doc[0], 0, "insert", "100.00"), (doc[0], 1, "update", "9500.00"), (other, 0, "insert", "100"),
                    (doc[0], 2, "delete", None)]
    assert rolled not in {r[0] for r in rows}
    sealed = _seal(live)
    assert sealed.returncode == 0 and "SEALED: 4 blocks, 4 revisions" in sealed.stdout, sealed.stdout + sealed.stderr
    new_digest = _digest_now(live, tmp_path / "digest.json")
    check = run_cli("check", "--dsn", live["dsn"], "--digest", live["qldb_digest"], "--digest", new_digest, "--strict")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "check: VERIFIED:" in check.stdout
    # proofs for both eras, from the database, accepted by verify-proof unchanged
    with psycopg.connect(live["dsn"]) as conn:
        old = conn.execute("SELECT document_id, version FROM ledger.person_history WHERE data_ion IS NOT NULL "
                           "ORDER BY block_sequence LIMIT 1").fetchone()
        tip = conn.execute("SELECT max(sequence_no) FROM qldb.block").fetchone()[0]
    for table, (d, v) in (("Accounts", (doc[0], 1)), ("Accounts", (doc[0], 2)), ("Person", old)):
        out = tmp_path / f"rev-{d}-{v}.json"
        got = run_cli("get-revision", "--dsn", live["dsn"], "--table", table, "--document-id", d, "--version", v,
                      "--digest", new_digest, "--out", out)
        assert got.returncode == 0, got.stdout + got.stderr
        proof = run_cli("verify-proof", "--digest", new_digest, "--revision", out)
        assert proof.returncode == 0 and proof.stdout.startswith("VERIFIED"), proof.stdout + proof.stderr
    for seq in (0, 5, tip):
        out = tmp_path / f"block-{seq}.json"
        assert run_cli("get-block", "--dsn", live["dsn"], "--sequence-no", seq, "--digest", new_digest, "--out",
                       out).returncode == 0
        proof = run_cli("verify-proof", "--digest", new_digest, "--block", out)
        assert proof.returncode == 0, proof.stdout + proof.stderr
    # the first PostgreSQL-era block names the last migrated QLDB block as its predecessor
    with psycopg.connect(live["dsn"]) as conn:
        first_live = conn.execute("SELECT min(sequence_no) FROM qldb.block WHERE source_object LIKE 'sealed%'"
                                  ).fetchone()[0]
        prev, last_qldb = conn.execute(
            "SELECT a.previous_block_hash, b.block_hash FROM qldb.block a, qldb.block b "
            "WHERE a.sequence_no = %s AND b.sequence_no = %s", (first_live, first_live - 1)).fetchone()
    assert prev == last_qldb


def test_digest_and_proof_commands_report_and_a_question_asked_too_early_is_usage(live: dict,
                                                                                   tmp_path: Path) -> None:
    with psycopg.connect(live["app"]) as app:
        doc = app.execute("INSERT INTO ledger.accounts (data) VALUES ('{\"balance\": 1}') RETURNING document_id"
                          ).fetchone()[0]
        app.commit()
    assert _seal(live).returncode == 0
    made = run_cli("digest", "--dsn", live["dsn"], "--out", tmp_path / "d.json", "--report", tmp_path / "dr.json")
    assert made.returncode == 0, made.stdout + made.stderr
    summary = json.loads((tmp_path / "dr.json").read_text())
    saved = json.loads((tmp_path / "d.json").read_text())
    assert summary["command"] == "digest" and summary["exitCode"] == 0 and summary["digest"] == saved["Digest"]
    assert f"sequenceNo:{summary['tip']}" in saved["DigestTipAddress"]["IonText"]
    got = run_cli("get-revision", "--dsn", live["dsn"], "--table", "Accounts", "--document-id", doc, "--version", 0,
                  "--digest", tmp_path / "d.json", "--out", tmp_path / "r.json", "--report", tmp_path / "rr.json")
    assert got.returncode == 0, got.stdout + got.stderr
    summary = json.loads((tmp_path / "rr.json").read_text())
    assert (summary["command"], summary["documentId"], summary["version"], summary["exitCode"]) == (
        "get-revision", doc, 0, 0)
    assert summary["digestTip"] == json.loads((tmp_path / "dr.json").read_text())["tip"] and summary["proofHashes"] > 0
    block = run_cli("get-block", "--dsn", live["dsn"], "--sequence-no", 3, "--digest", tmp_path / "d.json",
                    "--report", tmp_path / "br.json")
    assert block.returncode == 0 and json.loads((tmp_path / "br.json").read_text())["sequenceNo"] == 3
    # a revision not sealed yet, or sealed after the digest: the data is sound, the question early (exit 2)
    with psycopg.connect(live["app"]) as app:
        app.execute("UPDATE ledger.accounts SET data = '{\"balance\": 2}' WHERE document_id = %s", (doc,))
        app.commit()
    ask = ("get-revision", "--dsn", live["dsn"], "--table", "Accounts", "--document-id", doc, "--version", 1,
           "--digest", tmp_path / "d.json")
    early = run_cli(*ask)
    assert early.returncode == 2 and "not sealed yet" in early.stderr, early.stdout + early.stderr
    assert _seal(live).returncode == 0
    beyond = run_cli(*ask)
    assert beyond.returncode == 2 and "beyond the digest's tip" in beyond.stderr, beyond.stdout + beyond.stderr


def test_history_and_blocks_are_append_only_for_every_role(live: dict) -> None:
    with psycopg.connect(live["app"]) as app:
        app.execute("INSERT INTO ledger.person (data) VALUES ('{\"GovId\": \"1\"}')")
        app.commit()
    assert _seal(live).returncode == 0
    refusals = {
        "UPDATE ledger.person_history SET data = '{}'": ("permission denied", "append-only"),
        "DELETE FROM ledger.person_history": ("permission denied", "append-only"),
        "TRUNCATE ledger.person_history": ("permission denied", "TRUNCATE is refused"),
        "DELETE FROM qldb.block": ("permission denied", "append-only"),
        "UPDATE qldb.block SET block_hash = sha256(block_hash)": ("permission denied", "append-only"),
        "DELETE FROM qldb.sealed_revision": ("permission denied", "append-only"),
        "UPDATE qldb.merkle_node SET hash = sha256(hash)": ("permission denied", "append-only"),
        "UPDATE qldb.ledger SET state = 'migrated'": ("permission denied", "cannot be changed"),
        "TRUNCATE ledger.person": ("permission denied", "TRUNCATE is refused"),
        "SELECT qldb.redact_revision('Person', 'x', 0)": ("permission denied", None),
        "SELECT qldb.create_ledger_table('vehicle-registration', 'X')": ("permission denied", None),
    }
    for statement, (as_app, as_owner) in refusals.items():
        for dsn, expected in ((live["app"], as_app), (live["dsn"], as_owner)):
            if expected is None:
                continue
            with psycopg.connect(dsn) as conn, pytest.raises(psycopg.Error) as caught:
                conn.execute(statement)
            assert expected in str(caught.value), (statement, dsn, caught.value)
    with psycopg.connect(live["app"]) as app:  # reading everything is allowed
        assert app.execute("SELECT count(*) FROM qldb.block").fetchone()[0] > 0
        assert app.execute("SELECT count(*) FROM ledger.person_history").fetchone()[0] > 0


def test_the_application_chooses_no_ids_and_cannot_stall_the_sealer(live: dict, tmp_path: Path) -> None:
    """Ids are the ledger's (QLDB's); every document the application may write, the sealer can seal."""
    big = "9" * 6000  # jsonb keeps any integer; Python's default int/str limit is 4,300 digits
    with psycopg.connect(live["app"]) as app:
        app.execute("SET LOCAL qldb.tx_id = 'ChosenByTheApplication'")
        first = [app.execute("INSERT INTO ledger.person (data) VALUES ('{\"GovId\": \"T-%s\"}') "
                             "RETURNING document_id" % n).fetchone()[0] for n in (1, 2)]
        app.commit()
        app.execute("INSERT INTO ledger.person (data) VALUES ('{\"GovId\": %s}')" % big)
        app.commit()
        for statement, expected in (
                ("INSERT INTO ledger.person (document_id, data) VALUES ('AAAAAAAAAAAAAAAAAAAAAA', '{}')",
                 "the ledger's to assign"),
                ("INSERT INTO ledger.person (data) VALUES ('%s1%s')" % ("[" * 150, "]" * 150), "a JSON object"),
                ("INSERT INTO ledger.person (data) VALUES ('{\"a\": %s1%s}')" % ("[" * 150, "]" * 150),
                 "99 levels"),
                ("UPDATE ledger.person SET data = '{\"a\": %s1%s}' WHERE document_id = '%s'"
                 % ("{\"b\": " * 120, "}" * 120, first[0]), "99 levels")):
            with pytest.raises(psycopg.Error) as caught:
                app.execute(statement)
            assert expected in str(caught.value), (statement[:60], caught.value)
            app.rollback()
    with psycopg.connect(live["dsn"]) as conn:
        tx_ids = conn.execute("SELECT tx_id FROM ledger.person_history WHERE write_seq IS NOT NULL "
                              "ORDER BY write_seq").fetchall()
    assert len(tx_ids) == 3 and tx_ids[0] == tx_ids[1] != tx_ids[2]
    assert all(len(t) == 22 and t != "ChosenByTheApplication" for (t,) in tx_ids)
    sealed = _seal(live)
    assert sealed.returncode == 0, sealed.stdout + sealed.stderr
    digest = _digest_now(live, tmp_path / "d.json")
    check = run_cli("check", "--dsn", live["dsn"], "--digest", digest)
    assert check.returncode == 0, check.stdout + check.stderr


def test_a_tamper_past_a_disabled_guard_is_caught_by_a_saved_digest(live: dict, tmp_path: Path) -> None:
    with psycopg.connect(live["app"]) as app:
        doc = app.execute("INSERT INTO ledger.accounts (data) VALUES ('{\"accountId\": \"ACC-7\", \"balance\": 5}') "
                          "RETURNING document_id").fetchone()[0]
        app.commit()
    assert _seal(live).returncode == 0
    saved = _digest_now(live, tmp_path / "before.json")
    assert run_cli("check", "--dsn", live["dsn"], "--digest", saved).returncode == 0
    # a superuser lifts the guard and rewrites the revision, its sealed Ion and hash, and every block above it
    from qldb_migrate.live.merkle import Appender
    from qldb_migrate.live.reading import ion_reading
    from qldb_migrate.native import prove
    from qldb_migrate.verify.hashes import dot, merkle_root
    from qldb_migrate.verify.ionparse import loads

    admin = make_conninfo(live["admin"], dbname=conninfo_to_dict(live["dsn"])["dbname"])
    with psycopg.connect(admin) as conn:
        for table in ("ledger.accounts_history", "qldb.sealed_revision", "qldb.block", "qldb.merkle_node",
                      "qldb.digest"):
            conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER qldb_append_only")
        conn.execute("UPDATE ledger.accounts_history SET data = '{\"accountId\": \"ACC-7\", \"balance\": 5000000}' "
                     "WHERE document_id = %s", (doc,))
        conn.execute("UPDATE ledger.accounts SET data = '{\"accountId\": \"ACC-7\", \"balance\": 5000000}' "
                     "WHERE document_id = %s", (doc,))
        meta_ion, seq, idx = conn.execute("SELECT metadata_ion, block_sequence, index_in_block FROM "
                                          "qldb.sealed_revision WHERE document_id = %s", (doc,)).fetchone()
        data_ion, data_hash = prove(ion_reading('{"balance": 5000000, "accountId": "ACC-7"}'))
        _ion, meta_hash = prove(loads(bytes(meta_ion)))
        rev_hash = dot(meta_hash, data_hash)
        conn.execute("UPDATE qldb.sealed_revision SET data_ion = %s, data_hash = %s, revision_hash = %s "
                     "WHERE document_id = %s", (data_ion, data_hash, rev_hash, doc))
        revs, entries, previous = conn.execute("SELECT revision_hashes, entries_hash_list, previous_block_hash FROM "
                                               "qldb.block WHERE sequence_no = %s", (seq,)).fetchone()
        revs = [bytes(r) for r in revs]
        old_root = merkle_root(revs)
        revs[idx] = rev_hash
        entries = [merkle_root(revs) if bytes(e) == old_root else bytes(e) for e in entries]
        block_hash = dot(merkle_root(entries), bytes(previous))
        conn.execute("UPDATE qldb.block SET revision_hashes = %s, entries_hash_list = %s, entries_hash = %s, "
                     "block_hash = %s WHERE sequence_no = %s", (revs, entries, merkle_root(entries), block_hash, seq))
        hashes = [bytes(h) for (h,) in conn.execute("SELECT block_hash FROM qldb.block ORDER BY sequence_no")]
        conn.execute("DELETE FROM qldb.merkle_node")
        appender = Appender(0, [])
        for h in hashes:
            for level, i, node in appender.append(h):
                conn.execute("INSERT INTO qldb.merkle_node VALUES ((SELECT strand_id FROM qldb.ledger), %s, %s, %s)",
                             (level, i, node))
        conn.execute("DELETE FROM qldb.digest")
    inside = run_cli("check", "--dsn", live["dsn"])
    assert inside.returncode == 0 and "NOT ANCHORED" in inside.stdout, inside.stdout + inside.stderr
    caught = run_cli("check", "--dsn", live["dsn"], "--digest", saved)
    assert caught.returncode == 1, caught.stdout + caught.stderr
    assert "does not match the root recomputed from qldb.block" in caught.stderr


def test_redaction_keeps_the_hashes_and_is_recorded_in_the_chain(live: dict, tmp_path: Path) -> None:
    with psycopg.connect(live["app"]) as app:
        doc = app.execute("INSERT INTO ledger.accounts (data) VALUES ('{\"accountId\": \"ACC-8\", \"pin\": \"1234\"}') "
                          "RETURNING document_id").fetchone()[0]
        app.commit()
        app.execute("UPDATE ledger.accounts SET data = '{\"accountId\": \"ACC-8\"}' WHERE document_id = %s", (doc,))
        app.commit()
    with psycopg.connect(live["dsn"]) as conn, pytest.raises(psycopg.Error, match="not sealed yet"):
        conn.execute("SELECT qldb.redact_revision('Accounts', %s, 0)", (doc,))
    assert _seal(live).returncode == 0
    with psycopg.connect(live["dsn"]) as conn:
        conn.execute("SELECT qldb.redact_revision('Accounts', %s, 0)", (doc,))
        conn.commit()
        with pytest.raises(psycopg.Error, match="live revision"):
            conn.execute("SELECT qldb.redact_revision('Accounts', %s, 1)", (doc,))
    sealed = _seal(live)
    assert sealed.returncode == 0 and "SEALED: 1 blocks, 0 revisions" in sealed.stdout
    with psycopg.connect(live["dsn"]) as conn:
        data, redacted, ion = conn.execute(
            "SELECT h.data, h.redacted, s.data_ion FROM ledger.accounts_history h JOIN qldb.sealed_revision s "
            "USING (document_id, version) WHERE h.document_id = %s AND h.version = 0", (doc,)).fetchone()
        assert (data, redacted, ion) == (None, True, None)
        assert conn.execute("SELECT count(*) FROM qldb.block WHERE redaction_info_ion IS NOT NULL AND source_object "
                            "LIKE 'sealed%'").fetchone()[0] == 1
    digest = _digest_now(live, tmp_path / "d.json")
    assert run_cli("check", "--dsn", live["dsn"], "--digest", digest, "--strict").returncode == 0
    out = tmp_path / "redacted.json"
    assert run_cli("get-revision", "--dsn", live["dsn"], "--table", "Accounts", "--document-id", doc, "--version", 0,
                   "--digest", digest, "--out", out).returncode == 0
    assert "dataHash" in json.loads(out.read_text())["Revision"]["IonText"]
    assert run_cli("verify-proof", "--digest", digest, "--revision", out).returncode == 0


def _alembic(dsn: str, action: str, revision: str) -> None:
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    config = Config()
    config.set_main_option("script_location", "qldb_migrate.schema:.")
    engine = create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(dsn), poolclass=NullPool)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        getattr(command, action)(config, revision)
    engine.dispose()


def _start_upgrade(dsn: str) -> tuple[threading.Thread, list[BaseException]]:
    """``upgrade head`` in a thread, given 1.5 s: by then it must be waiting for a transaction that wrote the ledger."""
    failures: list[BaseException] = []

    def upgrade() -> None:
        try:
            _alembic(dsn, "upgrade", "head")
        except BaseException as exc:  # reported by the test thread
            failures.append(exc)

    upgrading = threading.Thread(target=upgrade)
    upgrading.start()
    time.sleep(1.5)
    assert upgrading.is_alive(), "the upgrade did not wait for a transaction that wrote to the ledger"
    return upgrading, failures


def _write_functions(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return [src for (src,) in conn.execute(
            "SELECT p.prosrc FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = 'qldb' AND p.proname LIKE 'write\\_%'")]


def test_upgrading_a_live_ledger_rewrites_its_triggers_between_transactions(live: dict, tmp_path: Path) -> None:
    """Schema 0008 rewrites the write triggers of a ledger already live (0007 -> 0008 and back); a transaction that
    wrote before the upgrade keeps one txId to its end (the upgrade waits for it); the chain re-proves across."""
    _alembic(live["dsn"], "downgrade", "0007")
    old = _write_functions(live["dsn"])
    assert old and all("v_time_ion" not in src for src in old)

    def insert(app: psycopg.Connection, n: int) -> str:
        return app.execute("INSERT INTO ledger.person (data) VALUES (%s) RETURNING document_id",
                           (json.dumps({"GovId": f"U-{n}"}),)).fetchone()[0]

    with psycopg.connect(live["app"]) as app:
        before = insert(app, 1)  # the 0005 trigger
        upgrading, failures = _start_upgrade(live["dsn"])
        during = insert(app, 2)
        app.commit()
    upgrading.join(120)
    assert not upgrading.is_alive() and not failures, failures
    new = _write_functions(live["dsn"])
    assert len(new) == len(old) and all("v_time_ion" in src for src in new)
    with psycopg.connect(live["app"]) as app:
        after = insert(app, 3)
        app.execute("UPDATE ledger.person SET data = data || '{\"x\": 1}' WHERE document_id = %s", (after,))
        app.commit()
        app.execute("DELETE FROM ledger.person WHERE document_id = %s", (before,))
        app.commit()
    with psycopg.connect(live["dsn"]) as conn:
        rows = conn.execute("SELECT document_id, version, operation, tx_id FROM ledger.person_history "
                            "WHERE document_id = ANY(%s) ORDER BY write_seq", ([before, during, after],)).fetchall()
    tx = {(doc, version): tx_id for doc, version, _op, tx_id in rows}
    assert [(r[0], r[1], r[2]) for r in rows] == [(before, 0, "insert"), (during, 0, "insert"), (after, 0, "insert"),
                                                  (before, 1, "delete")]  # the update: one revision, as in QLDB
    assert tx[(before, 0)] == tx[(during, 0)] != tx[(after, 0)] != tx[(before, 1)]
    assert all(re.fullmatch(r"[0-9A-Za-z]{22}", t) for t in (*tx.values(), after))
    sealed = _seal(live)
    assert sealed.returncode == 0, sealed.stdout + sealed.stderr
    check = run_cli("check", "--dsn", live["dsn"], "--digest", _digest_now(live, tmp_path / "d.json"))
    assert check.returncode == 0, check.stdout + check.stderr


def test_no_ledger_table_is_made_while_an_upgrade_waits_for_writers(live: dict) -> None:
    """An upgrade that rewrites the write triggers (0011 -> 0012 here) waits for every transaction writing a live
    ledger.  A table made while it waited would be written by transactions it never waited for, under both versions
    of the trigger (a red-team finding: one transaction given two txIds, sealed as two blocks).  So making a table
    waits for the upgrade, and every table, old or new, has the new trigger after it."""
    _alembic(live["dsn"], "downgrade", "0011")
    with psycopg.connect(live["app"]) as app:
        _insert_person(app, 1)
        upgrading, failures = _start_upgrade(live["dsn"])
        with psycopg.connect(live["dsn"]) as owner:
            owner.execute("SET lock_timeout = '1s'")
            with pytest.raises(psycopg.errors.LockNotAvailable):
                owner.execute("SELECT qldb.create_ledger_table('vehicle-registration', 'LateCards')")
        app.commit()
    upgrading.join(120)
    assert not upgrading.is_alive() and not failures, failures
    with psycopg.connect(live["dsn"]) as owner:
        owner.execute("SELECT qldb.create_ledger_table('vehicle-registration', 'LateCards')")
        owner.commit()
    functions = _write_functions(live["dsn"])
    assert len(functions) >= 5 and all("IF OLD.tx_time = v_time THEN" in src for src in functions)


def test_new_tables_after_cut_over(live: dict, tmp_path: Path) -> None:
    with psycopg.connect(live["dsn"]) as conn:
        table_id = conn.execute("SELECT qldb.create_ledger_table('vehicle-registration', 'LoyaltyCards')").fetchone()[0]
        conn.commit()
    with psycopg.connect(live["app"]) as app:
        app.execute("INSERT INTO ledger.loyalty_cards (data) VALUES ('{\"card\": \"L-1\"}')")
        app.commit()
    assert _seal(live).returncode == 0
    digest = _digest_now(live, tmp_path / "d.json")
    check = run_cli("check", "--dsn", live["dsn"], "--digest", digest, "--report", tmp_path / "c.json")
    assert check.returncode == 0, check.stdout + check.stderr
    with psycopg.connect(live["dsn"]) as conn:
        statement = conn.execute("SELECT transaction_info->'statements'->0->>'statement' FROM qldb.block "
                                 "WHERE source_object LIKE 'sealed%' AND "
                                 "transaction_info->'statements'->0->>'statement' LIKE 'CREATE TABLE%'"
                                 ).fetchone()
    assert statement == ("CREATE TABLE LoyaltyCards",) and len(table_id) == 22


def test_eight_writers_and_a_sealer(live: dict, tmp_path: Path) -> None:
    """8 connections write over shared documents for a few seconds, about a fifth of the transactions rolled back,
    while `seal --every` runs; then every committed revision is in exactly one block, in version order."""
    with psycopg.connect(live["app"]) as app:
        docs = [app.execute("INSERT INTO ledger.accounts (data) VALUES (%s) RETURNING document_id",
                            (json.dumps({"accountId": f"ACC-C{i}", "balance": 0}),)).fetchone()[0] for i in range(12)]
        app.commit()
    sealer = subprocess.Popen([sys.executable, "-m", "qldb_migrate", "seal", "--dsn", live["dsn"], "--every", "0.2",
                               "--state-dir", str(live["state"])], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    stop = time.monotonic() + 6
    committed: list[int] = []
    rolled_back: list[str] = []
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        rng = random.Random(n)
        done = 0
        try:
            with psycopg.connect(live["app"]) as conn:
                while time.monotonic() < stop:
                    try:
                        roll = rng.random()
                        if roll < 0.4:
                            d = rng.choice(docs)
                            conn.execute("UPDATE ledger.accounts SET data = jsonb_set(data, '{balance}', %s) "
                                         "WHERE document_id = %s", (json.dumps(rng.randrange(1000)), d))
                        elif roll < 0.5:
                            new = conn.execute("INSERT INTO ledger.accounts (data) VALUES ('{\"x\": 1}') RETURNING "
                                               "document_id").fetchone()[0]
                            conn.execute("DELETE FROM ledger.accounts WHERE document_id = %s", (new,))  # same tx
                        else:
                            new = conn.execute("INSERT INTO ledger.accounts (data) VALUES (%s) RETURNING document_id",
                                               (json.dumps({"n": n, "i": done}),)).fetchone()[0]
                            if rng.random() < 0.3:
                                conn.execute("UPDATE ledger.accounts SET data = data || '{\"later\": true}' "
                                             "WHERE document_id = %s", (new,))
                        if rng.random() < 0.2:
                            if roll >= 0.5:
                                rolled_back.append(new)
                            conn.rollback()
                        else:
                            conn.commit()
                            done += 1
                    except psycopg.errors.SerializationFailure:
                        conn.rollback()
            committed.append(done)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    time.sleep(1.5)
    sealer.send_signal(signal.SIGINT)
    out, err = sealer.communicate(timeout=60)
    assert sealer.returncode in (0, 130), out + err
    assert "stopping: every round committed so far is sealed" in err and "nothing from this run" not in err, err
    assert _seal(live).returncode == 0  # whatever the loop had not reached
    with psycopg.connect(live["dsn"]) as conn:
        assert conn.execute("SELECT revisions FROM qldb.seal_backlog((SELECT strand_id FROM qldb.ledger "
                            "WHERE state = 'live'))").fetchone()[0] == 0
        unsealed = conn.execute("SELECT count(*) FROM ledger.accounts_history h WHERE h.write_seq IS NOT NULL AND "
                                "NOT EXISTS (SELECT 1 FROM qldb.sealed_revision s WHERE s.document_id = h.document_id "
                                "AND s.version = h.version)").fetchone()[0]
        assert unsealed == 0
        gaps = conn.execute(
            """SELECT document_id FROM ledger.accounts_history GROUP BY document_id
               HAVING max(version) + 1 <> count(*) OR min(version) <> 0""").fetchall()
        assert gaps == []
        out_of_order = conn.execute(
            """SELECT a.document_id, a.version FROM ledger.accounts_history a
               JOIN ledger.accounts_history b ON b.document_id = a.document_id AND b.version = a.version + 1
               LEFT JOIN qldb.sealed_revision sa ON sa.document_id = a.document_id AND sa.version = a.version
               LEFT JOIN qldb.sealed_revision sb ON sb.document_id = b.document_id AND sb.version = b.version
               WHERE coalesce(sb.block_sequence, b.block_sequence) <= coalesce(sa.block_sequence, a.block_sequence)"""
        ).fetchall()
        assert out_of_order == []
        ghosts = conn.execute("SELECT count(*) FROM ledger.accounts_history WHERE document_id = ANY(%s)",
                              (rolled_back,)).fetchone()[0]
        assert ghosts == 0 and len(rolled_back) > 0
        blocks_per_tx = conn.execute("SELECT count(*) FROM qldb.block WHERE source_object LIKE 'sealed%' "
                                     "GROUP BY transaction_id HAVING count(*) > 1").fetchall()
        assert blocks_per_tx == []
        live_revisions = conn.execute("SELECT count(*) FROM qldb.sealed_revision").fetchone()[0]
    assert sum(committed) > 50 and live_revisions > sum(committed) * 0.8
    digest = _digest_now(live, tmp_path / "d.json")
    check = run_cli("check", "--dsn", live["dsn"], "--digest", live["qldb_digest"], "--digest", digest, "--strict")
    assert check.returncode == 0, check.stdout + check.stderr
    with psycopg.connect(live["dsn"]) as conn:
        picks = conn.execute("SELECT document_id, version FROM qldb.sealed_revision ORDER BY random() LIMIT 3"
                             ).fetchall()
        picks += conn.execute("SELECT document_id, version FROM ledger.accounts_history WHERE data_ion IS NOT NULL "
                              "ORDER BY random() LIMIT 2").fetchall()
    for d, v in picks:
        out = tmp_path / f"r-{d}-{v}.json"
        assert run_cli("get-revision", "--dsn", live["dsn"], "--table", "Accounts", "--document-id", d, "--version", v,
                       "--digest", digest, "--out", out).returncode == 0
        assert run_cli("verify-proof", "--digest", digest, "--revision", out).returncode == 0
    print(f"writers committed {sum(committed)} transactions; {live_revisions} revisions sealed")


def test_the_sealer_will_not_fork_a_chain_restored_behind_a_saved_digest(live: dict, tmp_path: Path) -> None:
    admin = make_conninfo(live["admin"], dbname="postgres")
    db = conninfo_to_dict(live["dsn"])["dbname"]
    backup = db + "_backup"
    with psycopg.connect(live["app"]) as app:
        app.execute("INSERT INTO ledger.person (data) VALUES ('{\"GovId\": \"A\"}')")
        app.commit()
    assert _seal(live).returncode == 0
    with psycopg.connect(admin, autocommit=True) as conn:  # the backup: a copy of the database as it is now
        conn.execute(f'CREATE DATABASE "{backup}" TEMPLATE "{db}"')
    try:
        with psycopg.connect(live["app"]) as app:
            app.execute("INSERT INTO ledger.person (data) VALUES ('{\"GovId\": \"B\"}')")
            app.commit()
        assert _seal(live).returncode == 0
        saved = _digest_now(live, tmp_path / "after.json")
        restored = make_conninfo(live["dsn"], dbname=backup)
        refused = run_cli("seal", "--dsn", restored, "--digest", saved, "--state-dir", live["state"])
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "restored from a backup" in refused.stderr and "fork" in refused.stderr
        # the sealer's own memory catches it too, without the digest
        second = run_cli("seal", "--dsn", restored, "--state-dir", live["state"])
        assert second.returncode == 1 and "{seq}" not in second.stderr, second.stderr
        assert "--state-dir of its own" in " ".join(second.stderr.split())  # a rehearsal copy is told apart
        # --accept-restore gives up what the state file saw, never what a digest kept outside saw
        kept = run_cli("seal", "--dsn", restored, "--state-dir", live["state"], "--accept-restore", "--digest", saved)
        assert kept.returncode == 1 and "warning" not in kept.stderr, kept.stdout + kept.stderr
        assert "leave it out of --digest" in " ".join(kept.stderr.split()), kept.stderr
        assert all(json.loads(p.read_text()).get("forks") == [] for p in Path(live["state"]).glob("*.json"))
        lost = json.loads(Path(saved).read_text())["DigestTipAddress"]["IonText"]
        accepted = run_cli("seal", "--dsn", restored, "--state-dir", live["state"], "--accept-restore",
                           "--report", tmp_path / "accepted.json")
        assert accepted.returncode == 0, accepted.stdout + accepted.stderr
        # the fork point stays on record: in the run's report and in the state file, after later seals too
        fork = json.loads((tmp_path / "accepted.json").read_text())["acceptedRestore"]
        assert f"sequenceNo:{fork['previousTip']}" in lost and fork["storedTip"] < fork["previousTip"]
        assert _seal({**live, "dsn": restored}).returncode == 0
        states = list(Path(live["state"]).glob("*.json"))
        assert len(states) == 1 and json.loads(states[0].read_text())["forks"] == [fork]
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{backup}" WITH (FORCE)')


def test_cut_over_is_refused_when_the_stored_chain_does_not_reprove(sample_factory, tmp_path: Path,
                                                                    pg_dsn: str) -> None:
    export = sample_factory(tmp_path, revisions=100, exports=1, seed=92)
    assert run_cli("migrate", export, "--dsn", pg_dsn, "--no-check").returncode == 0
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("UPDATE qldb.block SET block_hash = sha256(block_hash) WHERE sequence_no = 3")
    proc = run_cli("cutover", "--dsn", pg_dsn)
    assert proc.returncode == 1 and "does not re-prove" in proc.stderr, proc.stdout + proc.stderr
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT state FROM qldb.ledger").fetchone()[0] == "migrated"
        assert re.search("trigger", str(conn.execute("SELECT tgname FROM pg_trigger WHERE tgrelid = "
                                                     "'ledger.person'::regclass").fetchall())) is None


def test_a_digest_kept_in_s3_under_object_lock(live: dict, tmp_path: Path, s3_server: str, s3_env) -> None:
    import boto3

    client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    client.create_bucket(Bucket="digest-vault", ObjectLockEnabledForBucket=True)
    proc = run_cli("digest", "--dsn", live["dsn"], "--out", "s3://digest-vault/ledger/d1.json", "--retain-days", 30,
                   "--endpoint-url", s3_server, env=s3_env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    head = client.head_object(Bucket="digest-vault", Key="ledger/d1.json")
    assert head["ObjectLockMode"] == "COMPLIANCE" and head["ObjectLockRetainUntilDate"]
    saved = tmp_path / "d1.json"
    saved.write_bytes(client.get_object(Bucket="digest-vault", Key="ledger/d1.json")["Body"].read())
    assert run_cli("check", "--dsn", live["dsn"], "--digest", saved, "--strict").returncode == 0


# Documents whose jsonb text exercises the sealer's C reader (and where it declines: > 18 digits)
_TRICKY = [
    {"accountId": "\"T1\"", "balance": "1.50", "n": "-0", "e": "1e2", "f": "1.5E-3", "z": "-0.0", "zero": "0.000",
     "big": "123456789012345678901234567890", "dec": "-12345678901234567890.123456789", "max18": "999999999999999999",
     "neg": "-922337203685477580", "tiny": "1e-30", "huge": "7E+25"},
    {"u": '"caf\\u00e9 \\ud83d\\ude00 \\"q\\" \\\\ \\/ \\b\\f\\n\\r\\t \\u001f snow \\u2603"', "\\u00e9": "1",
     "z": "2", "aa": "3", "": '""', "arr": '[[], {}, [1, [2, [3.0]]], true, false, null]'},
]


def _tricky_text(pairs: dict[str, str]) -> str:
    return "{" + ", ".join(f'"{k}": {v}' for k, v in pairs.items()) + "}"


def _sealed_rows(dsn: str) -> dict[str, list[tuple]]:
    with psycopg.connect(dsn) as conn:
        return {
            "block": conn.execute("SELECT * FROM qldb.block WHERE source_object LIKE 'sealed%' ORDER BY sequence_no"
                                  ).fetchall(),
            "sealed_revision": conn.execute("SELECT * FROM qldb.sealed_revision ORDER BY block_sequence, index_in_block"
                                            ).fetchall(),
            "merkle_node": conn.execute("SELECT * FROM qldb.merkle_node ORDER BY strand_id, level, idx").fetchall(),
            "queue": conn.execute("SELECT (SELECT revisions FROM qldb.seal_backlog((SELECT strand_id FROM qldb.ledger "
                                  "WHERE state = 'live'))), (SELECT count(*) FROM qldb.pending_event)").fetchall(),
        }


def test_the_c_path_seals_the_same_bytes_as_the_python_path(live: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same queue sealed with the Python reference and with the C writers: every stored column identical."""
    import datetime as dt

    from qldb_migrate import native
    from qldb_migrate.live import sealer

    with psycopg.connect(live["app"]) as app:
        redacted = app.execute("INSERT INTO ledger.accounts (data) VALUES ('{\"accountId\": \"R\", \"pin\": 1}') "
                               "RETURNING document_id").fetchone()[0]
        app.commit()
        app.execute("UPDATE ledger.accounts SET data = '{\"accountId\": \"R\"}' WHERE document_id = %s", (redacted,))
        app.commit()
    assert _seal(live).returncode == 0
    nested = "1"
    for depth in range(48):  # ~97 levels: the trigger allows 99
        nested = f'{{"l{depth % 3}": [{nested}], "k": {depth}}}'
    with psycopg.connect(live["app"]) as app:
        ids = []
        for pairs in _TRICKY:
            ids.append(app.execute("INSERT INTO ledger.accounts (data) VALUES (%s) RETURNING document_id",
                                   (_tricky_text(pairs),)).fetchone()[0])
        ids.append(app.execute("INSERT INTO ledger.accounts (data) VALUES (%s) RETURNING document_id",
                               (nested,)).fetchone()[0])
        app.commit()
        # several documents in one block, one of them written twice (one revision)
        b = app.execute("INSERT INTO ledger.accounts (data) VALUES ('{\"accountId\": \"B\"}') RETURNING document_id"
                        ).fetchone()[0]
        app.execute("INSERT INTO ledger.accounts (data) VALUES ('{\"accountId\": \"C\", \"balance\": 2.5}')")
        app.execute("UPDATE ledger.accounts SET data = '{\"accountId\": \"B\", \"balance\": 10.00}' "
                    "WHERE document_id = %s", (b,))
        app.execute("UPDATE ledger.accounts SET data = jsonb_set(data, '{balance}', '-1.25') WHERE document_id = %s",
                    (ids[0],))
        app.commit()
        app.execute("DELETE FROM ledger.accounts WHERE document_id = %s", (ids[1],))
        app.commit()
        gone = app.execute("INSERT INTO ledger.accounts (data) VALUES ('{\"accountId\": \"gone\"}') "
                           "RETURNING document_id").fetchone()[0]
        app.execute("DELETE FROM ledger.accounts WHERE document_id = %s", (gone,))
        app.execute("INSERT INTO ledger.accounts (data) VALUES ('{\"accountId\": \"E\"}')")
        app.commit()
        for n in range(30):
            app.execute("INSERT INTO ledger.accounts (data) VALUES (%s)", (json.dumps({"accountId": f"M{n}",
                                                                                      "balance": n / 8}),))
            if n % 7 == 0:
                app.commit()
        app.commit()
    with psycopg.connect(live["dsn"]) as conn:
        conn.execute("SELECT qldb.redact_revision('Accounts', %s, 0)", (redacted,))
        conn.commit()
    source = conninfo_to_dict(live["dsn"])["dbname"]
    clones = {}
    with psycopg.connect(live["admin"], autocommit=True) as admin:
        for path in ("reference", "fast"):
            clones[path] = f"{source}_{path}"[:63]
            admin.execute(f'CREATE DATABASE "{clones[path]}" TEMPLATE "{source}"')
    used = {"json_ion": 0, "revision_metadata": 0, "tx_info": 0}

    def counted(name: str):
        real = getattr(native, name)

        def call(*args):
            result = real(*args)
            used[name] += result is not None
            return result
        return call

    for name in used:
        monkeypatch.setattr(native, name, counted(name))
    moment = dt.datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC)  # after every write: the blocks take it
    monkeypatch.setattr(sealer, "_now", lambda: moment)
    rows, sealed = {}, {}
    try:
        for path, name in clones.items():
            monkeypatch.setattr(sealer, "FAST_PATH", path == "fast")
            dsn = make_conninfo(live["admin"], dbname=name)
            with psycopg.connect(dsn) as conn:
                strand = conn.execute("SELECT strand_id FROM qldb.ledger WHERE state = 'live'").fetchone()[0]
                conn.rollback()
                sealed[path] = sealer.SealStats()
                while True:  # several rounds
                    stats = sealer.seal_once(conn, strand, limit=4)
                    sealed[path].add(stats)
                    if not stats.blocks:
                        break
            rows[path] = _sealed_rows(dsn)
            if path == "reference":
                assert used == {"json_ion": 0, "revision_metadata": 0, "tx_info": 0}
    finally:
        with psycopg.connect(live["admin"], autocommit=True) as admin:
            for name in clones.values():
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    assert rows["reference"]["queue"] == rows["fast"]["queue"] == [(0, 0)]
    assert len(rows["fast"]["block"]) >= 12
    for table in ("block", "sealed_revision", "merkle_node"):
        assert rows["fast"][table] == rows["reference"][table], table
    # the C writers did the work, and declined the numbers beyond 18 digits
    assert sealed["fast"].revisions == sealed["reference"].revisions >= 35
    assert used["revision_metadata"] == sealed["fast"].revisions
    assert 0 < used["json_ion"] < sealed["fast"].revisions - 1  # two deletes: no data
    assert used["tx_info"] == sealed["fast"].blocks - 1  # all but the redaction's block


# --- the sealer's cursor (schema 0010) ----------------------------------------------------------------------------
# The sealer's cursor (schema 0010): committed revisions are found in the history tables, none is passed over.
#
# Writes no longer queue their revisions; a round of the sealer reads, in one
# snapshot, the history rows the cursor (``qldb.seal_cursor``: horizon, waiting)
# says may not be sealed and that no block holds yet.  What could go wrong is a
# revision passed over for good: one committed after a round that had already
# moved the cursor, one left behind by a round's limit, one queued by the
# schema before, one written after the ledger was copied to a cluster whose
# transaction ids started again.  Each is made to happen here, on a real
# PostgreSQL, and every committed revision must end up in exactly one block; a
# cursor moved past an unsealed revision by hand is caught by ``check``.


def _insert_person(app: psycopg.Connection, n: int) -> str:
    return app.execute("INSERT INTO ledger.person (data) VALUES (%s) RETURNING document_id",
                       (json.dumps({"GovId": f"C-{n}"}),)).fetchone()[0]


def _strand(conn: psycopg.Connection) -> str:
    return conn.execute("SELECT strand_id FROM qldb.ledger WHERE state = 'live'").fetchone()[0]


def _sealed_blocks(conn: psycopg.Connection, docs: list[str]) -> dict[str, list[int]]:
    """Each document's blocks, from what the sealer recorded."""
    out: dict[str, list[int]] = {d: [] for d in docs}
    for doc, block in conn.execute("SELECT document_id, block_sequence FROM qldb.sealed_revision "
                                   "WHERE document_id = ANY(%s) ORDER BY block_sequence", (docs,)):
        out[doc].append(block)
    return out


def _check(live: dict, tmp_path: Path) -> None:
    proc = run_cli("check", "--dsn", live["dsn"], "--digest", _digest_now(live, tmp_path / "now.json"))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_transaction_open_across_rounds_is_sealed_when_it_commits(live: dict, tmp_path: Path) -> None:
    """A writer that holds its transaction open while others commit and rounds move the cursor: its revision has
    an xid below theirs, and is still sealed once it commits (the cursor stops at the oldest running xid)."""
    with psycopg.connect(live["app"]) as slow, psycopg.connect(live["app"], autocommit=True) as fast:
        early = _insert_person(slow, 1)  # xid taken now, commit later
        quick = [_insert_person(fast, n) for n in range(2, 6)]
        assert _seal(live).returncode == 0
        with psycopg.connect(live["dsn"]) as conn:
            blocks = _sealed_blocks(conn, [early, *quick])
            assert blocks.pop(early) == [] and all(len(v) == 1 for v in blocks.values()), blocks
        late = _insert_person(fast, 6)
        assert _seal(live).returncode == 0  # a round while the slow transaction still runs
        slow.commit()
    assert _seal(live).returncode == 0
    with psycopg.connect(live["dsn"]) as conn:
        blocks = _sealed_blocks(conn, [early, late, *quick])
        assert all(len(v) == 1 for v in blocks.values()), blocks
        assert blocks[early][0] > blocks[late][0]  # sealed when it committed, after the ones that committed first
        assert conn.execute("SELECT revisions FROM qldb.seal_backlog(%s)", (_strand(conn),)).fetchone()[0] == 0
    _check(live, tmp_path)


def test_a_round_over_its_limit_leaves_the_rest_for_the_next(live: dict, tmp_path: Path) -> None:
    """Rounds of two transactions over a backlog of seven: the cursor never passes what a round left, every
    revision is sealed once, in commit order."""
    with psycopg.connect(live["app"], autocommit=True) as app:
        docs = [_insert_person(app, n) for n in range(7)]
    with psycopg.connect(live["dsn"]) as conn:
        strand = _strand(conn)
        rounds = []
        while True:
            stats = live_sealer.seal_once(conn, strand, limit=2)
            rounds.append((stats.blocks, stats.pending))
            if stats.blocks == 0:
                break
        assert rounds[:4] == [(2, 5), (2, 3), (2, 1), (1, 0)], rounds
        blocks = _sealed_blocks(conn, docs)
        assert list(blocks.values()) == [[b] for b in sorted(b for (b,) in blocks.values())]  # commit order
    _check(live, tmp_path)


def test_a_cursor_moved_past_an_unsealed_revision_is_caught_by_check(live: dict, tmp_path: Path) -> None:
    """The owner moves the cursor past a committed revision (as a tamper would): the sealer never seals it, and
    ``check`` names it."""
    with psycopg.connect(live["app"], autocommit=True) as app:
        skipped = _insert_person(app, 1)
    with psycopg.connect(live["dsn"]) as conn:
        conn.execute("UPDATE qldb.seal_cursor SET horizon = pg_current_xact_id(), waiting = '{}'")
        conn.commit()
    assert _seal(live).returncode == 0
    with psycopg.connect(live["dsn"]) as conn:
        assert _sealed_blocks(conn, [skipped]) == {skipped: []}
    proc = run_cli("check", "--dsn", live["dsn"])
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "the sealer's cursor (qldb.seal_cursor) is past its transaction id" in proc.stderr
    assert skipped in proc.stdout + proc.stderr


def test_downgrade_requeues_what_is_unsealed_and_the_upgrade_takes_it_back(live: dict, tmp_path: Path) -> None:
    """0010 -> 0009 with unsealed revisions: they go back in qldb.pending_revision, writes queue there again; back
    to 0010: the queued ones (both kinds) are sealed, once each."""
    with psycopg.connect(live["app"], autocommit=True) as app:
        before = [_insert_person(app, n) for n in range(3)]
    _alembic(live["dsn"], "downgrade", "0009")
    with psycopg.connect(live["dsn"]) as conn:
        queued = {d for (d,) in conn.execute("SELECT document_id FROM qldb.pending_revision")}
        assert queued == set(before)
    with psycopg.connect(live["app"], autocommit=True) as app:
        during = [_insert_person(app, n) for n in range(3, 5)]  # the 0008 trigger, which queues
    _alembic(live["dsn"], "upgrade", "head")
    with psycopg.connect(live["dsn"]) as conn:
        assert conn.execute("SELECT to_regclass('qldb.pending_revision')").fetchone()[0] is None
        assert conn.execute("SELECT count(*) FROM ledger.person_history WHERE document_id = ANY(%s) "
                            "AND xid IS NOT NULL", (before + during,)).fetchone()[0] == 5
    with psycopg.connect(live["app"], autocommit=True) as app:
        after = _insert_person(app, 5)
    assert _seal(live).returncode == 0
    with psycopg.connect(live["dsn"]) as conn:
        blocks = _sealed_blocks(conn, [*before, *during, after])
        assert all(len(v) == 1 for v in blocks.values()), blocks
    _check(live, tmp_path)


def test_a_copied_rows_xid_reused_by_a_new_transaction_is_not_its_own(live: dict, tmp_path: Path) -> None:
    """In a copy of the database in another cluster, transaction ids start again: a new transaction can have the
    xid a sealed revision's row holds.  Its UPDATE and DELETE must still append revisions (the txId names the
    cluster), never reshape or remove the sealed ones.  Staged here in one cluster: the owner gives two sealed rows
    the xid of a running application transaction."""
    with psycopg.connect(live["app"], autocommit=True) as app:
        docs = [_insert_person(app, n) for n in range(2)]
    assert _seal(live).returncode == 0
    with psycopg.connect(live["app"]) as app:
        xid = app.execute("SELECT pg_current_xact_id()::text").fetchone()[0]
        with psycopg.connect(live["dsn"]) as owner:  # the copy's rows, as a restore would have them
            owner.execute("ALTER TABLE ledger.person_history DISABLE TRIGGER qldb_append_only")
            owner.execute("UPDATE ledger.person_history SET xid = %s::xid8 WHERE document_id = ANY(%s)", (xid, docs))
            owner.execute("ALTER TABLE ledger.person_history ENABLE TRIGGER qldb_append_only")
            owner.execute("UPDATE qldb.seal_cursor SET cluster = 'the original cluster'")  # as in a copy, too
            owner.commit()
        app.execute("UPDATE ledger.person SET data = '{\"GovId\": \"REWRITTEN\"}' WHERE document_id = %s",
                    (docs[0],))
        app.execute("DELETE FROM ledger.person WHERE document_id = %s", (docs[1],))
        app.commit()
    with psycopg.connect(live["dsn"]) as conn:
        rows = conn.execute("SELECT document_id, version, operation, data->>'GovId' FROM ledger.person_history "
                            "WHERE document_id = ANY(%s) ORDER BY document_id = %s DESC, version", (docs, docs[0])
                            ).fetchall()
    assert rows == [(docs[0], 0, "insert", "C-0"), (docs[0], 1, "update", "REWRITTEN"),
                    (docs[1], 0, "insert", "C-1"), (docs[1], 1, "delete", None)]
    assert _seal(live).returncode == 0
    _check(live, tmp_path)


def test_a_cursor_beyond_this_clusters_ids_is_refused(live: dict) -> None:
    """A cursor of this cluster's beyond its transaction ids was written by no round of its own (moved by hand): it
    would pass over every new write, so the sealer refuses it, naming it, and seals nothing."""
    with psycopg.connect(live["dsn"]) as conn:
        conn.execute("UPDATE qldb.seal_cursor SET horizon = (pg_current_xact_id()::text::bigint + 1000000)::text::xid8")
        conn.commit()
    with psycopg.connect(live["app"], autocommit=True) as app:
        doc = _insert_person(app, 1)
    proc = _seal(live)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "beyond this cluster's" in proc.stderr and "qldb.seal_cursor" in proc.stderr
    with psycopg.connect(live["dsn"]) as conn:
        assert _sealed_blocks(conn, [doc]) == {doc: []}


def test_a_cursor_of_another_cluster_makes_one_full_round(live: dict, tmp_path: Path) -> None:
    """After a logical copy (or pg_upgrade) the cursor names another cluster, whose transaction ids mean nothing
    here, even when they are far ahead: the next round reads every live revision once, seals what no block holds
    (also what was written below the old horizon), seals nothing twice, and writes a cursor of this cluster's."""
    with psycopg.connect(live["app"], autocommit=True) as app:
        sealed_before = _insert_person(app, 1)
    assert _seal(live).returncode == 0
    with psycopg.connect(live["app"], autocommit=True) as app:
        written_in_copy = _insert_person(app, 2)
    with psycopg.connect(live["dsn"]) as conn:
        # the copied rows keep the old cluster's xids, far ahead of this one's (as the cursor is)
        conn.execute("ALTER TABLE ledger.person_history DISABLE TRIGGER qldb_append_only")
        conn.execute("UPDATE ledger.person_history SET xid = (xid::text::bigint + 5000000)::text::xid8 "
                     "WHERE document_id = %s", (sealed_before,))
        conn.execute("ALTER TABLE ledger.person_history ENABLE TRIGGER qldb_append_only")
        conn.execute("UPDATE qldb.seal_cursor SET cluster = 'another cluster', "
                     "horizon = (pg_current_xact_id()::text::bigint + 1000000)::text::xid8")
        conn.commit()
    proc = _seal(live)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with psycopg.connect(live["dsn"]) as conn:
        blocks = _sealed_blocks(conn, [sealed_before, written_in_copy])
        assert [len(v) for v in blocks.values()] == [1, 1], blocks
        assert conn.execute("SELECT cluster = (pg_control_system()).system_identifier::text FROM qldb.seal_cursor"
                            ).fetchone()[0]
    # later rounds of this cluster still probe the copied rows, whose xids are above its own: they seal new writes
    # and never a copied revision again
    for n in range(3, 6):
        with psycopg.connect(live["app"], autocommit=True) as app:
            later = _insert_person(app, n)
        proc = _seal(live)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        with psycopg.connect(live["dsn"]) as conn:
            assert [len(v) for v in _sealed_blocks(conn, [sealed_before, later]).values()] == [1, 1]
    _check(live, tmp_path)


def test_a_round_probes_only_below_its_last_snapshot_and_a_moved_probe_cannot_seal_twice(live: dict,
                                                                                         tmp_path: Path) -> None:
    """A round skips the "already sealed?" probe for transactions at or above probe_below (schema 0011), which
    every sealed revision is below. Moved by hand together with the horizon, so that sealed revisions come back
    unprobed, the sealer stops, naming the revision, and writes nothing (the primary key keeps a seal single);
    with the cursor deleted, the next round probes everything and seals only what waits."""
    with psycopg.connect(live["app"], autocommit=True) as app:
        first = [_insert_person(app, n) for n in range(3)]
    assert _seal(live).returncode == 0
    with psycopg.connect(live["dsn"]) as conn:
        horizon, probe_below, xid = conn.execute(
            "SELECT c.horizon::text, c.probe_below::text, (SELECT max(xid)::text FROM ledger.person_history) "
            "FROM qldb.seal_cursor c").fetchone()
        assert probe_below is not None and int(xid) < int(probe_below) <= int(horizon)
        conn.execute("UPDATE qldb.seal_cursor SET horizon = '0', probe_below = '0'")
        tip = conn.execute("SELECT max(sequence_no) FROM qldb.block").fetchone()[0]
        conn.commit()
    with psycopg.connect(live["app"], autocommit=True) as app:
        later = _insert_person(app, 9)
    proc = _seal(live)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "already in a block" in proc.stderr and "qldb.seal_cursor" in proc.stderr, proc.stderr
    with psycopg.connect(live["dsn"]) as conn:
        assert conn.execute("SELECT max(sequence_no) FROM qldb.block").fetchone()[0] == tip
        conn.execute("DELETE FROM qldb.seal_cursor")
        conn.commit()
    proc = _seal(live)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with psycopg.connect(live["dsn"]) as conn:
        blocks = _sealed_blocks(conn, [*first, later])
        assert [len(v) for v in blocks.values()] == [1, 1, 1, 1], blocks
    _check(live, tmp_path)


def test_a_transaction_cannot_change_its_own_rows_bookkeeping(live: dict) -> None:
    """The guard lets a transaction reshape its own uncommitted revision (data and operation, as the trigger does),
    nothing else: not its xid, write_seq or txId, which would take it out of the sealer's sight."""
    with psycopg.connect(live["dsn"]) as owner:
        doc = _insert_person(owner, 1)
        for change in ("xid = NULL", "write_seq = write_seq + 1000", "tx_id = 'AAAAAAAAAAAAAAAAAAAAAA'"):
            with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="append-only"), \
                    owner.transaction():
                owner.execute(f"UPDATE ledger.person_history SET {change} WHERE document_id = %s", (doc,))
        owner.execute("UPDATE ledger.person SET data = '{\"GovId\": \"C-2\"}' WHERE document_id = %s", (doc,))
        owner.commit()
        assert owner.execute("SELECT version, data->>'GovId' FROM ledger.person_history WHERE document_id = %s",
                             (doc,)).fetchall() == [(0, "C-2")]  # reshaped by the trigger, still one revision


def test_a_txid_is_of_its_servers_start_and_xid_and_only_a_transactions_own_row_is_reshaped(live: dict) -> None:
    """Schema 0012: a txId hashes '<its server's start, µs since the epoch>:<its xid>' (no read of the control file
    at every write), the same for each row of the transaction whatever the session changes meanwhile.  A write asks
    whether the document's row is its own only when the row has its transaction's time: one of an earlier
    transaction gets a new version, its own is reshaped."""
    with psycopg.connect(live["dsn"]) as owner:
        start, xid = owner.execute("SELECT pg_postmaster_start_time(), pg_current_xact_id()::text").fetchone()
        start_us = (start - datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)) // datetime.timedelta(microseconds=1)
        doc = _insert_person(owner, 1)
        owner.execute("SET LOCAL extra_float_digits = -15; SET LOCAL TimeZone = 'Pacific/Chatham'; "
                      "SET LOCAL DateStyle = 'SQL, DMY'")
        other = _insert_person(owner, 2)
        owner.execute("UPDATE ledger.person SET data = '{\"GovId\": \"C-3\"}' WHERE document_id = %s", (doc,))
        owner.commit()
        owner.execute("UPDATE ledger.person SET data = '{\"GovId\": \"C-4\"}' WHERE document_id = %s", (doc,))
        owner.execute("DELETE FROM ledger.person WHERE document_id = %s", (doc,))
        owner.commit()
        rows = owner.execute("SELECT document_id, version, operation, data->>'GovId', tx_id, xid::text FROM "
                             "ledger.person_history WHERE document_id IN (%s, %s) ORDER BY document_id = %s, version",
                             (doc, other, other)).fetchall()
    expected = base64.b64encode(hashlib.sha256(f"{start_us}:{xid}".encode()).digest()).decode()[:22]
    expected = expected.replace("+", "A").replace("/", "B")
    assert [r[:4] for r in rows] == [(doc, 0, "insert", "C-3"), (doc, 1, "delete", None), (other, 0, "insert", "C-2")]
    assert rows[0][4:] == rows[2][4:] == (expected, xid)
    assert rows[1][4] != expected and int(rows[1][5]) > int(xid)


def test_the_tree_keeps_subtrees_of_sixteen_blocks_and_reads_smaller_ones_from_the_blocks(live: dict) -> None:
    """qldb.merkle_node holds levels 4 and up (stored_tree); every smaller subtree a digest, a proof or the sealer's
    next round needs is recomputed from qldb.block: the roots and audit paths equal those of the whole tree built
    in memory from the block hashes, for every tip and leaf, across rounds that end inside a 16-block range."""
    from qldb_migrate.live import sealer
    from qldb_migrate.live.merkle import audit_path, root
    from qldb_migrate.live.serve import ServeError
    from qldb_migrate.live.stored_tree import STORED_FROM_LEVEL, NodeReader
    from qldb_migrate.verify.hashes import merkle_root

    with psycopg.connect(live["app"], autocommit=True) as app:
        for n in range(40):
            _insert_person(app, n)
    with psycopg.connect(live["dsn"]) as conn:
        strand = _strand(conn)
        rounds = 0
        while sealer.seal_once(conn, strand, limit=7).blocks:  # rounds of 7: their tips fall inside 16-block ranges
            rounds += 1
        assert rounds >= 6
        hashes = [bytes(h) for (h,) in conn.execute(
            "SELECT block_hash FROM qldb.block WHERE strand_id = %s ORDER BY sequence_no", (strand,))]
        size = len(hashes)
        assert size > 64
        low = conn.execute("SELECT count(*) FROM qldb.merkle_node WHERE strand_id = %s AND level < %s",
                           (strand, STORED_FROM_LEVEL)).fetchone()[0]
        high = conn.execute("SELECT count(*) FROM qldb.merkle_node WHERE strand_id = %s", (strand,)).fetchone()[0]
        assert low == 0 and high == sum(size >> level for level in range(STORED_FROM_LEVEL, size.bit_length()))

        def whole(level: int, idx: int) -> bytes:
            return merkle_root(hashes[idx << level:(idx + 1) << level])

        reader = NodeReader(conn, strand, ServeError)
        for tip in range(1, size + 1):
            assert root(tip, reader) == root(tip, whole) == merkle_root(hashes[:tip]), tip
        for leaf in range(0, size, 3):
            for tip in (leaf + 1, leaf + 17, size):
                if tip <= size:
                    assert audit_path(leaf, tip, reader) == audit_path(leaf, tip, whole), (leaf, tip)
        # a block missing from a range a subtree needs is named, not read as a shorter subtree
        with pytest.raises(ServeError, match="lacks blocks"):
            NodeReader(conn, strand, ServeError)(2, size >> 2)


def test_an_older_schema_gets_the_whole_tree_back_and_seal_upgrades_it_again(live: dict, tmp_path: Path) -> None:
    """Downgrading 0011 stores the tree's levels 0-3 again (an earlier version reads them); `seal` run by this
    version on a database left at 0010 brings the schema up itself, as migrate does, and seals."""
    from qldb_migrate.pg.target import schema_head
    from qldb_migrate.verify.hashes import merkle_root

    with psycopg.connect(live["app"], autocommit=True) as app:
        for n in range(20):
            _insert_person(app, n)
    assert _seal(live).returncode == 0
    _alembic(live["dsn"], "downgrade", "0010")
    with psycopg.connect(live["dsn"]) as conn:
        strand = _strand(conn)
        hashes = [bytes(h) for (h,) in conn.execute(
            "SELECT block_hash FROM qldb.block WHERE strand_id = %s ORDER BY sequence_no", (strand,))]
        for level in range(4):
            stored = {idx: bytes(h) for idx, h in conn.execute(
                "SELECT idx, hash FROM qldb.merkle_node WHERE strand_id = %s AND level = %s", (strand, level))}
            assert stored == {i: merkle_root(hashes[i << level:(i + 1) << level])
                              for i in range(len(hashes) >> level)}, level
    with psycopg.connect(live["app"], autocommit=True) as app:
        later = _insert_person(app, 99)
    proc = _seal(live)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with psycopg.connect(live["dsn"]) as conn:
        assert conn.execute("SELECT version_num FROM qldb.alembic_version").fetchone()[0] == schema_head()
        assert [len(v) for v in _sealed_blocks(conn, [later]).values()] == [1]
    _check(live, tmp_path)
