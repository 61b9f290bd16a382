"""Small accessors over parsed Ion values that tolerate every value model."""

from __future__ import annotations

from typing import Any

from amazon.ion.simple_types import IonPyDict, IonPyNull


def is_null(value: Any) -> bool:
    return value is None or isinstance(value, IonPyNull)


_MULTIMAP = hasattr(IonPyDict(), "_IonPyDict__store")  # a future amazon-ion may rename it: then the general way


def field_or_none(struct: Any, name: str) -> Any:
    """A struct field, or None when it is absent (an Ion null is returned as is).

    For amazon-ion's struct, straight from its multimap: the newest value of the name, exactly what its
    ``[]`` returns (verify reads ~25 fields per revision; the Python-level ``__getitem__`` was a tenth of it).
    """
    if type(struct) is IonPyDict and _MULTIMAP:
        values = struct._IonPyDict__store.get(name)
        return values[-1] if values else None
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
