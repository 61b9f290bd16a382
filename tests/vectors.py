"""Paths to the shared, read-only test vectors (``../shared/vectors``)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _shared() -> Path:
    env = os.environ.get("QLDB_MIGRATE_SHARED")
    if env:
        return Path(env)
    return REPO.parent / "shared"


SHARED = _shared()
VECTORS = SHARED / "vectors"
ION_HASH_TESTS = VECTORS / "ion_hash_tests.ion"
AWSCLI = VECTORS / "awscli-vehicle-registration"
