"""Shared fixtures: generated sample exports and a real S3 server (moto) on loopback."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from qldb_migrate.sample.export import write_sample_export


def run_cli(*args: object, env: dict[str, str] | None = None, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """The command as a user runs it: a separate process, real exit code."""
    return subprocess.run(
        [sys.executable, "-m", "qldb_migrate", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="session", autouse=True)
def _stage_signing_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every migrate the suite runs signs its staged progress with a key of the session, not the user's."""
    before = os.environ.get("QLDB_MIGRATE_STAGE_KEY")
    os.environ["QLDB_MIGRATE_STAGE_KEY"] = str(tmp_path_factory.mktemp("stage-key") / "key")
    yield
    if before is None:
        os.environ.pop("QLDB_MIGRATE_STAGE_KEY", None)
    else:
        os.environ["QLDB_MIGRATE_STAGE_KEY"] = before


@pytest.fixture(scope="session")
def sample_factory(tmp_path_factory: pytest.TempPathFactory):
    """Pristine sample exports, built once per (revisions, format, exports, seed); tests get copies."""
    cache: dict[tuple[int, str, int, int], Path] = {}

    def make(tmp: Path, revisions: int = 300, fmt: str = "ion_text", exports: int = 2, seed: int = 5) -> Path:
        key = (revisions, fmt, exports, seed)
        if key not in cache:
            path = tmp_path_factory.mktemp(f"sample-{fmt}-{exports}-{seed}") / "export"
            write_sample_export(path, revisions, fmt, exports, seed)
            cache[key] = path
        copy = tmp / f"export-{fmt}-{exports}-{seed}"
        shutil.copytree(cache[key], copy)
        return copy

    return make


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """moto's threaded server on 127.0.0.1, used through boto3 exactly as real S3."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@pytest.fixture()
def s3_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for k, v in S3_ENV.items():
        monkeypatch.setenv(k, v)
    return dict(S3_ENV)


def upload(endpoint: str, local: Path, bucket: str, prefix: str) -> None:
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    existing = [b["Name"] for b in client.list_buckets().get("Buckets", [])]
    if bucket not in existing:
        client.create_bucket(Bucket=bucket)
    for path in local.rglob("*"):
        if path.is_file() and "digests" not in path.relative_to(local).parts:
            client.upload_file(str(path), bucket, prefix + path.relative_to(local).as_posix())


# --- PostgreSQL ---------------------------------------------------------------------------------

import itertools  # noqa: E402
import uuid  # noqa: E402

MIGRATOR = "qldb_migrator"  # an ordinary role: no superuser, no CREATEDB, no CREATEROLE
_counter = itertools.count()


def _docker_engine() -> bool:
    """True only where a Docker engine answers (the client alone is not enough)."""
    if not shutil.which("docker"):
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _admin_servers() -> list[str]:
    servers = ["embedded"]
    if os.environ.get("QLDB_MIGRATE_TEST_DSN"):
        servers.append("dsn")
    if _docker_engine():
        servers.append("container")
    return servers


@pytest.fixture(scope="session")
def container_admin() -> Iterator[str]:
    """testcontainers' PostgreSQL, where Docker runs (not on machines without an engine)."""
    try:
        from testcontainers.community.postgres import PostgresContainer
    except ImportError:  # testcontainers before the community split
        from testcontainers.postgres import PostgresContainer

    with PostgresContainer("postgres:17", driver=None) as pg:
        yield pg.get_connection_url()


@pytest.fixture(scope="session")
def embedded_admin(tmp_path_factory: pytest.TempPathFactory) -> str:
    from qldb_migrate.pg.target import embedded

    return embedded(tmp_path_factory.mktemp("pg") / "data").conninfo


@pytest.fixture(params=_admin_servers())
def pg_admin(request: pytest.FixtureRequest) -> str:
    """A superuser DSN used only to set the stage (database, role, grants) — never by the tool."""
    if request.param == "embedded":
        return request.getfixturevalue("embedded_admin")
    if request.param == "container":
        return request.getfixturevalue("container_admin")
    return os.environ["QLDB_MIGRATE_TEST_DSN"]


@contextlib.contextmanager
def fresh_database(pg_admin: str) -> Iterator[str]:
    """A new database the ordinary migration role may CONNECT to and CREATE schemas in; dropped after."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    name = f"qm_test_{os.getpid()}_{next(_counter)}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(pg_admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (MIGRATOR,)).fetchone():
            conn.execute(f"CREATE ROLE {MIGRATOR} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE")
        conn.execute(f'CREATE DATABASE "{name}"')
        conn.execute(f'GRANT CONNECT, CREATE ON DATABASE "{name}" TO {MIGRATOR}')
    params = conninfo_to_dict(pg_admin)
    params.update(dbname=name, user=MIGRATOR)
    params.pop("password", None)
    try:
        yield make_conninfo("", **params)
    finally:
        with psycopg.connect(pg_admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture()
def pg_dsn(pg_admin: str) -> Iterator[str]:
    """A fresh database for one test (``fresh_database``)."""
    with fresh_database(pg_admin) as dsn:
        yield dsn
