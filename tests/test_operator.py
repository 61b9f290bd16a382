"""What a first operator hits: errors that say what is wrong in one line, help that reads, a server that stops."""

from __future__ import annotations

import json
import re
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.conftest import run_cli
from tests.vectors import VECTORS


def _one_clean_line(proc, code: int) -> str:
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def test_a_password_with_a_space_is_a_usage_error_that_echoes_no_secret() -> None:
    """Before: a Python traceback that printed "second-secret-word"."""
    for command in ("check", "migrate"):
        args = [command, "--dsn", "host=127.0.0.1 password=first second-secret-word"]
        proc = run_cli(*args, *(["."] if command == "migrate" else []))
        line = _one_clean_line(proc, 2)
        assert "second-secret-word" not in proc.stdout + proc.stderr and "first" not in line


def test_unreachable_server_missing_database_and_role_say_so(pg_admin: str) -> None:
    params = conninfo_to_dict(pg_admin)
    cases = {
        "nosuchdb": (make_conninfo(pg_admin, dbname="qm_no_such_database"), 'database "qm_no_such_database" does '
                                                                            "not exist"),
        "nosuchrole": (make_conninfo(pg_admin, user="qm_no_such_role"), 'role "qm_no_such_role" does not exist'),
        "refused": ("host=127.0.0.1 port=9 dbname=x user=y connect_timeout=5", "Connection refused"),
    }
    if "host" not in params or params["host"].startswith("/"):
        cases.pop("nosuchdb")  # over a socket the messages are the same; one server suffices
    for _name, (dsn, said) in cases.items():
        line = _one_clean_line(run_cli("check", "--dsn", dsn), 3)
        assert "could not connect to" in line and said in line, line
        assert "lost the connection" not in line


def test_a_file_given_as_digest_that_is_not_one_is_a_usage_error(tmp_path: Path) -> None:
    not_a_digest = tmp_path / "notes.json"
    not_a_digest.write_text(json.dumps({"hello": "world"}))
    line = _one_clean_line(run_cli("verify", tmp_path, "--digest", not_a_digest), 2)
    assert "notes.json" in line and "Digest" in line


@pytest.mark.parametrize("schema", ["pg_catalog", "information_schema", "qldb"])
def test_a_system_schema_is_refused(schema: str, tmp_path: Path) -> None:
    line = _one_clean_line(run_cli("migrate", tmp_path, "--dsn", "host=127.0.0.1", "--schema", schema), 2)
    assert schema in line


def test_an_unrelated_table_in_the_schema_is_refused_plainly(sample_factory, tmp_path: Path, pg_dsn: str) -> None:
    """Before: a traceback (CREATE TABLE ledger.person failed)."""
    export = sample_factory(tmp_path, revisions=100, exports=1, seed=81)
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("CREATE SCHEMA ledger")
        conn.execute("CREATE TABLE ledger.person (id int)")
    line = _one_clean_line(run_cli("migrate", export, "--dsn", pg_dsn), 2)
    assert "ledger already holds person" in line and "--schema" in line
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM qldb.ledger").fetchone()[0] == 0


def test_run_start_and_end_are_real_and_counts_agree(sample_factory, tmp_path: Path, pg_dsn: str) -> None:
    export = sample_factory(tmp_path, revisions=1200, exports=2, seed=82)
    first = run_cli("migrate", export, "--dsn", pg_dsn, "--report", tmp_path / "m.json")
    assert first.returncode == 0, first.stdout + first.stderr
    report = json.loads((tmp_path / "m.json").read_text())
    with psycopg.connect(pg_dsn) as conn:
        started, finished, counts = conn.execute(
            "SELECT started_at, finished_at, counts FROM qldb.migration_run").fetchone()
    assert finished > started  # before: both were now(), the one transaction's start
    assert counts["revisions"] == report["revisions"] == report["verification"]["revisions"]["total"] == 1200
    assert counts["blocks"] == report["blocks"] == report["check"]["blocks"]
    assert report["check"]["historyRows"] == sum(t["loaded"] for t in report["tables"]) == 1200
    again = run_cli("migrate", export, "--dsn", pg_dsn, "--report", tmp_path / "again.json")
    blocks = int(re.search(r"UNCHANGED: all ([\d,]+) blocks", again.stdout).group(1).replace(",", ""))
    assert blocks == report["blocks"] == json.loads((tmp_path / "again.json").read_text())["check"]["blocks"]
    keys = set()

    def collect(value):
        if isinstance(value, dict):
            for k, v in value.items():
                keys.add(k)
                collect(v)
        elif isinstance(value, list):
            for v in value:
                collect(v)

    collect(report)
    snake = sorted(k for k in keys if "_" in k and not k.startswith("_"))
    assert snake == [], snake  # report keys in one style


def test_help_reads_like_help() -> None:
    commands = ["verify", "migrate", "check", "verify-proof", "sample-export", "demo", "psql", "ledgers",
                "drop-ledger", "server"]
    top = run_cli("--help")
    for command in commands:
        assert command in top.stdout
    for command in commands:
        text = run_cli(command, "--help").stdout
        assert "<bool>" not in text and "list[" not in text and "<str>" not in text, (command, text)
        options = re.findall(r"^\s+(--[a-z-]+)(.*)$", text, re.MULTILINE)
        for name, rest in options:
            assert rest.strip() or name == "--help", f"{command} {name} has no help line"
    assert "--region" in run_cli("check", "--help").stdout
    assert "passed through to psql" in " ".join(run_cli("psql", "--help").stdout.split())


def test_every_command_can_write_a_json_report() -> None:
    from qldb_migrate.cli import app

    names = [c.name for c in app.registered_commands]
    assert {"verify", "migrate", "check", "seal", "digest", "get-revision", "get-block", "ledgers"} <= set(names)
    # psql hands every argument to psql itself; the server group's commands only say or stop
    without = [n for n in names if n != "psql" and "--report" not in run_cli(n, "--help").stdout]
    assert without == []


def test_embedded_server_status_and_stop(tmp_path: Path) -> None:
    data = tmp_path / "pg"
    assert "no embedded PostgreSQL" in run_cli("server", "status", "--data-dir", data).stdout
    proc = run_cli("psql", "--data-dir", data, "-c", "SELECT 41 + 1")
    assert proc.returncode == 0 and "42" in proc.stdout, proc.stdout + proc.stderr
    # psql's own options choose the role and database: -U is not overridden by the server's connection string
    proc = run_cli("psql", "--data-dir", data, "-c", "CREATE ROLE nc_app LOGIN")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = run_cli("psql", "--data-dir", data, "-U", "nc_app", "-Atc", "SELECT current_user")
    assert proc.returncode == 0 and proc.stdout.strip() == "nc_app", proc.stdout + proc.stderr
    status = run_cli("server", "status", "--data-dir", data).stdout
    # psql ran as a child, so its command's exit released the server: the wheel stopped it
    assert "stopped" in status or "running" in status
    if "running" in status:
        assert "stopped the embedded PostgreSQL" in run_cli("server", "stop", "--data-dir", data).stdout
    assert "stopped" in run_cli("server", "status", "--data-dir", data).stdout
    assert "no embedded PostgreSQL is running" in run_cli("server", "stop", "--data-dir", data).stdout


def test_the_suite_reads_nothing_outside_the_repository() -> None:
    repo = Path(__file__).resolve().parent.parent
    assert VECTORS.is_relative_to(repo) and (VECTORS / "ion_hash_tests.LICENSE").exists()
    for path in list(repo.glob("tests/*.py")) + list(repo.glob("migrate/**/*.py")) + list(repo.glob("verify/*.py")):
        text = path.read_text()
        sibling = "shared"  # the developers' folder beside the checkout, which a user's clone does not have
        assert f"../{sibling}" not in text and f'parent / "{sibling}"' not in text, path


def test_names_from_the_ledger_print_as_written(capsys) -> None:
    """A table or object name holding ``[...]`` is not a rich tag: it prints verbatim and never raises."""
    from qldb_migrate.commands.common import _console

    _console(False).print("table [/x] [bold]Accounts[/bold] in block [chain 0..5]")
    assert "table [/x] [bold]Accounts[/bold] in block [chain 0..5]" in capsys.readouterr().out
