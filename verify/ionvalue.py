"""Small accessors over parsed Ion values that tolerate every value model."""

from __future__ import annotations

from typing import Any

from amazon.ion.simple_types import IonPyNull


def is_null(value: Any) -> bool:
    return value is None or isinstance(value, IonPyNull)


def field_or_none(struct: Any, name: str) -> Any:
    """A struct field, or None when it is absent (an Ion null is returned as is)."""
    try:
        return struct[name]
    except (KeyError, TypeError, IndexError):
        return None


def as_bytes(value: Any) -> bytes | None:
    """A blob as ``bytes``; None for a missing or null value."""
    if is_null(value):
        return None
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    raise TypeError(f"expected a blob, found {type(value).__name__}")


def struct_keys(value: Any) -> list[str]:
    """Field names of a struct (each once per occurrence), or [] for anything else."""
    if is_null(value) or not hasattr(value, "keys"):
        return []
    return [str(k) for k in value if k is not None]
