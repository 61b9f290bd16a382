"""Where an export lives: a local directory (an ``aws s3 sync`` copy) or S3.

A source lists keys relative to its root (the S3 prefix or the directory)
and opens them as byte streams.  Keys that manifests name are resolved by
``resolve``, which refuses anything that would leave the root: an export's
own manifests are data, not instructions.

Sources are described by a picklable ``SourceSpec`` so worker processes can
open their own connections (boto3 clients are not shared across processes).
"""

from __future__ import annotations

import gzip
import os
import posixpath
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any


class SourceError(Exception):
    """Base of source failures; ``exit_code`` follows DESIGN §5."""

    exit_code = 1


class SourceUnreachable(SourceError):
    """The source as a whole could not be reached or authorised (exit 3)."""

    exit_code = 3


class SourceUsageError(SourceError):
    """Sources given in a way that cannot work (exit 2)."""

    exit_code = 2


class ObjectMissing(SourceError):
    """An object the export names is not there (exit 1: the export is incomplete)."""


class ObjectUnreadable(SourceError):
    """An object exists but cannot be read: archived, undecryptable, denied (exit 1)."""


class KeyOutsideRoot(SourceError):
    """A manifest names a key outside the export's root (exit 1, never read)."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str | None


@dataclass(frozen=True)
class SourceSpec:
    """How to open a source again, in any process."""

    url: str
    endpoint_url: str | None = None
    region: str | None = None

    @property
    def is_s3(self) -> bool:
        return self.url.startswith("s3://")

    def open(self) -> Source:
        if self.is_s3:
            return S3Source(self)
        return LocalSource(Path(self.url))


def _normalise_relative(key: str) -> str | None:
    """A clean relative posix key, or None if the key escapes or is absolute."""
    if not key or key.startswith("/") or "\\" in key or "\x00" in key:
        return None
    norm = posixpath.normpath(key)
    if norm.startswith("../") or norm == ".." or norm.startswith("/"):
        return None
    return norm


class Source:
    spec: SourceSpec
    description: str

    def list_keys(self) -> Iterator[str]:
        raise NotImplementedError

    def info(self, key: str) -> ObjectInfo:
        raise NotImplementedError

    def open_raw(self, key: str) -> IO[bytes]:
        raise NotImplementedError

    def bucket_key(self, relative: str) -> str:
        """The full key as a manifest would name it (for messages)."""
        return relative

    def open(self, key: str) -> IO[bytes]:
        """The object's bytes, gunzipped when the key says ``.gz``."""
        raw = self.open_raw(key)
        if key.endswith(".gz"):
            return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
        return raw

    def read(self, key: str) -> bytes:
        with self.open(key) as fh:
            return fh.read()

    def resolve(self, manifest_key: str, prefix: str) -> str:
        """A manifest's full object key as a key relative to this source's root."""
        key = manifest_key
        if prefix and key.startswith(prefix):
            key = key[len(prefix) :]
        elif prefix:
            raise KeyOutsideRoot(f"manifest names {manifest_key!r}, which is not under the export prefix {prefix!r}")
        relative = _normalise_relative(key)
        if relative is None:
            raise KeyOutsideRoot(f"manifest names {manifest_key!r}, which leaves the export's root")
        return relative


class LocalSource(Source):
    def __init__(self, root: Path) -> None:
        self.spec = SourceSpec(str(root))
        self.root = root.resolve()
        self.description = str(root)
        if not self.root.is_dir():
            raise SourceUnreachable(f"{root}: no such directory")
        if not os.access(self.root, os.R_OK | os.X_OK):
            raise SourceUnreachable(f"{root}: permission denied")

    def _path(self, key: str) -> Path:
        relative = _normalise_relative(key)
        if relative is None:
            raise KeyOutsideRoot(f"{key!r} leaves the export's root")
        path = (self.root / relative).resolve()
        if path != self.root and self.root not in path.parents:
            raise KeyOutsideRoot(f"{key!r} resolves outside the export's root (through a link)")
        return path

    def list_keys(self) -> Iterator[str]:
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                full = Path(dirpath) / name
                yield full.relative_to(self.root).as_posix()

    def info(self, key: str) -> ObjectInfo:
        path = self._path(key)
        try:
            st = path.stat()
        except FileNotFoundError as exc:
            raise ObjectMissing(f"{key}: missing from {self.description}") from exc
        return ObjectInfo(key, st.st_size, None)

    def open_raw(self, key: str) -> IO[bytes]:
        path = self._path(key)
        try:
            return open(path, "rb")
        except FileNotFoundError as exc:
            raise ObjectMissing(f"{key}: missing from {self.description}") from exc
        except PermissionError as exc:
            raise ObjectUnreadable(f"{key}: permission denied") from exc


def _s3_error_code(exc: Exception) -> str:
    response: Any = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


class S3Source(Source):
    """``s3://bucket/prefix/`` through boto3's standard credential chain."""

    def __init__(self, spec: SourceSpec) -> None:
        import boto3
        from botocore.config import Config

        self.spec = spec
        rest = spec.url[len("s3://") :]
        self.bucket, _, prefix = rest.partition("/")
        if not self.bucket:
            raise SourceUnreachable(f"{spec.url}: no bucket in the URL")
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        self.description = spec.url
        config = Config(retries={"max_attempts": 8, "mode": "adaptive"}, connect_timeout=10, read_timeout=60)
        self.client = boto3.client("s3", endpoint_url=spec.endpoint_url, region_name=spec.region, config=config)

    def bucket_key(self, relative: str) -> str:
        return self.prefix + relative

    def _translate(self, exc: Exception, key: str | None) -> SourceError:
        from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

        where = f"s3://{self.bucket}/{self.prefix}{key}" if key is not None else self.description
        if isinstance(exc, NoCredentialsError):
            return SourceUnreachable(f"{where}: no AWS credentials found")
        if isinstance(exc, EndpointConnectionError):
            return SourceUnreachable(f"{where}: cannot connect to the S3 endpoint ({exc})")
        if isinstance(exc, ClientError):
            code = _s3_error_code(exc)
            if code in ("NoSuchBucket",):
                return SourceUnreachable(f"{where}: bucket {self.bucket} does not exist")
            if code in ("NoSuchKey", "404", "NotFound"):
                return ObjectMissing(f"{where}: missing")
            if code == "InvalidObjectState":
                return ObjectUnreadable(
                    f"{where}: the object is archived (Glacier / Deep Archive); restore it before verifying"
                )
            if code in ("AccessDenied", "403") and key is not None:
                return ObjectUnreadable(
                    f"{where}: access denied — if the export used SSE-KMS, the caller needs kms:Decrypt on its key"
                )
            if code in ("KMS.DisabledException", "KMSAccessDenied", "KMS.AccessDeniedException"):
                return ObjectUnreadable(f"{where}: cannot decrypt the SSE-KMS object ({code})")
            if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"):
                return SourceUnreachable(f"{where}: not authorised ({code})")
            return SourceUnreachable(f"{where}: S3 error {code}")
        return SourceUnreachable(f"{where}: {exc}")

    def list_keys(self) -> Iterator[str]:
        from botocore.exceptions import BotoCoreError, ClientError

        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
                for obj in page.get("Contents", []):
                    yield obj["Key"][len(self.prefix) :]
        except (ClientError, BotoCoreError) as exc:
            raise self._translate(exc, None) from exc

    def info(self, key: str) -> ObjectInfo:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.prefix + key)
        except (ClientError, BotoCoreError) as exc:
            raise self._translate(exc, key) from exc
        if head.get("StorageClass") in ("GLACIER", "DEEP_ARCHIVE") and "ongoing-request=\"false\"" not in str(
            head.get("Restore", "")
        ):
            raise ObjectUnreadable(
                f"s3://{self.bucket}/{self.prefix}{key}: the object is archived ({head['StorageClass']}); "
                "restore it before verifying"
            )
        return ObjectInfo(key, int(head.get("ContentLength", 0)), str(head.get("ETag", "")).strip('"') or None)

    def open_raw(self, key: str) -> IO[bytes]:
        return _ResumingBody(self, key)


class _ResumingBody:
    """A streamed S3 body that resumes with a ranged GET when a connection drops mid-object."""

    def __init__(self, source: S3Source, key: str, attempts: int = 6) -> None:
        self.source = source
        self.key = key
        self.offset = 0
        self.attempts = attempts
        self.etag: str | None = None
        self._body: Any = None
        self._open()

    def _open(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        kwargs: dict[str, Any] = {"Bucket": self.source.bucket, "Key": self.source.prefix + self.key}
        if self.offset:
            kwargs["Range"] = f"bytes={self.offset}-"
            if self.etag:
                kwargs["IfMatch"] = self.etag
        try:
            response = self.source.client.get_object(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise self.source._translate(exc, self.key) from exc
        self.etag = self.etag or response.get("ETag")
        self._body = response["Body"]

    def read(self, size: int = -1) -> bytes:
        from botocore.exceptions import BotoCoreError
        from urllib3.exceptions import HTTPError

        for attempt in range(self.attempts):
            try:
                data = self._body.read() if size is None or size < 0 else self._body.read(size)
                self.offset += len(data)
                return data
            except (BotoCoreError, HTTPError, ConnectionError, OSError):
                if attempt == self.attempts - 1:
                    raise
                time.sleep(min(0.2 * 2**attempt, 3.0))
                self._open()
        return b""

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        if self._body is not None:
            self._body.close()

    def __enter__(self) -> _ResumingBody:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
