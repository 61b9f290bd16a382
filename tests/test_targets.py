"""Targets: IAM tokens signed offline, secrets kept out of output, the demo, archived objects."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from psycopg.conninfo import conninfo_to_dict
from qldb_migrate.pg.target import resolve, safe_description

from tests.conftest import run_cli, upload

FIXED_AWS = {
    "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "AWS_DEFAULT_REGION": "eu-west-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def test_iam_token_is_signed_locally_and_requires_tls(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in FIXED_AWS.items():
        monkeypatch.setenv(k, v)
    dsn = "host=ledger.cluster-abc.eu-west-1.rds.amazonaws.com port=5432 user=migrator dbname=ledger"
    target = resolve(dsn, None, iam_auth=True, region="eu-west-1")
    params = conninfo_to_dict(target.conninfo)
    assert params["sslmode"] == "require"
    token = params["password"]
    url = urlparse("https://" + token)
    query = parse_qs(url.query)
    assert url.hostname == "ledger.cluster-abc.eu-west-1.rds.amazonaws.com" and url.port == 5432
    assert query["Action"] == ["connect"] and query["DBUser"] == ["migrator"]
    assert query["X-Amz-Credential"][0].startswith("AKIAIOSFODNN7EXAMPLE/") and "X-Amz-Signature" in query
    assert token not in target.description and "password" not in target.description


def test_passwords_never_reach_output_or_reports(tmp_path: Path, sample_factory) -> None:
    export = sample_factory(tmp_path, revisions=50, exports=1, seed=41)
    secret = "s3cr3t-Pa55w0rd"
    report = tmp_path / "r.json"
    # a closed port on loopback: the connection fails, the message must not carry the password
    dsn = f"postgresql://migrator:{secret}@127.0.0.1:9/ledger?connect_timeout=2"
    proc = run_cli("migrate", export, "--dsn", dsn, "--report", report, env={"PGPASSWORD": secret})
    assert proc.returncode == 3
    assert secret not in proc.stdout + proc.stderr
    assert "127.0.0.1" in proc.stderr
    assert not report.exists() or secret not in report.read_text()
    proc = run_cli("check", "--dsn", dsn)
    assert proc.returncode == 3 and secret not in proc.stdout + proc.stderr
    assert secret not in safe_description(dsn)


def test_aws_keys_never_reach_output(tmp_path: Path, s3_server: str) -> None:
    env = {**FIXED_AWS, "AWS_DEFAULT_REGION": "us-east-1"}
    proc = run_cli("verify", "s3://missing-bucket/x/", "--endpoint-url", s3_server, "--report", tmp_path / "r.json",
                   env=env)
    assert proc.returncode == 3
    for value in (FIXED_AWS["AWS_SECRET_ACCESS_KEY"], FIXED_AWS["AWS_ACCESS_KEY_ID"]):
        assert value not in proc.stdout + proc.stderr


def test_archived_object_is_named_and_fails(tmp_path: Path, sample_factory, s3_server: str, s3_env) -> None:
    import boto3

    export = sample_factory(tmp_path, revisions=100, exports=1, seed=42)
    prefix = "qldb-exports/vehicle-registration/"
    upload(s3_server, export, "archived-ledger", prefix)
    client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    key = next(k["Key"] for k in client.list_objects_v2(Bucket="archived-ledger", Prefix=prefix)["Contents"]
               if k["Key"].endswith(".ion"))
    client.copy_object(Bucket="archived-ledger", Key=key, CopySource={"Bucket": "archived-ledger", "Key": key},
                       StorageClass="GLACIER")
    proc = run_cli("verify", f"s3://archived-ledger/{prefix}", "--endpoint-url", s3_server, env=s3_env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "archived" in proc.stderr and key.rsplit("/", 1)[1] in proc.stderr


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    proc = run_cli("demo", "--data-dir", tmp_path / "pg", "--workdir", tmp_path / "work", "--revisions", "300",
                   "--report", tmp_path / "demo.json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "LOADED" in proc.stdout and "post-load check: VERIFIED" in proc.stdout
    demo = json.loads((tmp_path / "demo.json").read_text())  # the report of the migrate it ran
    assert demo["command"] == "migrate" and demo["exitCode"] == 0 and demo["revisions"] >= 300
    sample = run_cli("sample-export", tmp_path / "s", "--revisions", "50", "--report", tmp_path / "s.json")
    assert sample.returncode == 0, sample.stdout + sample.stderr
    written = json.loads((tmp_path / "s.json").read_text())
    assert written["revisions"] >= 50 and written["blocks"] > 0 and all(Path(d).exists() for d in written["digests"])
    assert "qldb-migrate psql" in proc.stdout
    proc = run_cli("check", "--data-dir", tmp_path / "pg", "--report", tmp_path / "c.json")
    assert proc.returncode == 0
    assert json.loads((tmp_path / "c.json").read_text())["historyRows"] > 0
