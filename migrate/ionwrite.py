"""Writing Ion exactly.

amazon-ion's C extension *writer* rounds decimals to 34 significant digits
(``2693917044679541713441.0204192840830`` comes back without its last zero),
which changes the value's Ion hash.  Its pure-Python writer is exact, so every
byte this tool writes — sample exports, ``data_ion`` columns — goes through it.
"""

from __future__ import annotations

import io
from typing import Any

from amazon.ion import simpleion


def dumps_binary(value: Any) -> bytes:
    out = io.BytesIO()
    simpleion.dump_python(value, out, binary=True)
    return out.getvalue()


def dumps_binary_stream(values: list[Any]) -> bytes:
    out = io.BytesIO()
    simpleion.dump_python(values, out, binary=True, sequence_as_stream=True)
    return out.getvalue()


def dumps_text(value: Any) -> str:
    out = io.BytesIO()
    simpleion.dump_python(value, out, binary=False, omit_version_marker=True)
    return out.getvalue().decode("utf-8")
