"""The JSON report every command can write (``--report FILE.json``)."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

from . import __version__, exitcodes
from .verify.findings import Finding


def file_fingerprint(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return {"path": str(path), "size": path.stat().st_size, "sha256": digest.hexdigest()}


def base_report(command: str) -> dict[str, Any]:
    return {
        "tool": "qldb-migrate",
        "version": __version__,
        "command": command,
        "startedAt": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
    }


def write_success_report(path: Path | None, command: str, fields: dict[str, Any]) -> None:
    """A command that ended well, as its report: the common head, what it did, exit code 0 (nothing without a path)."""
    if path is None:
        return
    report = base_report(command)
    report.update(fields)
    report["exitCode"] = exitcodes.OK
    write_report(path, report)


def findings_json(findings: list[Finding]) -> list[dict[str, Any]]:
    return [f.to_json() for f in findings]


def write_report(path: Path, report: dict[str, Any]) -> None:
    """Written to a temporary file and renamed, so a reader never sees half a report."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=2, sort_keys=False, default=str)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
