"""Exit codes (DESIGN §5).  When both CONTENT and UNREACHABLE apply, CONTENT wins."""

from __future__ import annotations

OK = 0
CONTENT = 1  # any mismatch, gap, conflict, missing, truncated or corrupt object
USAGE = 2
UNREACHABLE = 3  # a source or target could not be reached or authorised at all


def combine(*codes: int) -> int:
    """The process exit code for several outcomes: content errors outrank unreachable ones."""
    if CONTENT in codes:
        return CONTENT
    if UNREACHABLE in codes:
        return UNREACHABLE
    if USAGE in codes:
        return USAGE
    return OK
