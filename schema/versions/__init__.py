"""The schema's Alembic revisions, one file each."""

from __future__ import annotations

import importlib.util
import types
from pathlib import Path


def earlier(name: str) -> types.ModuleType:
    """An earlier revision's module, for the SQL it defines and a later one installs again (its names start with
    digits: they are loaded as files, not imported by name)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def edited(text: str, edits: list[tuple[str, str]]) -> str:
    """An earlier revision's SQL with these edits, each of a text it holds exactly once (else this fails at import,
    not in a database)."""
    for old, new in edits:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text
