"""The ``qldb-migrate`` command line: a thin layer over the library.

Every command prints a short human verdict, can write a JSON report, and exits
with the codes of DESIGN §5 (0 ok, 1 content wrong, 2 usage, 3 unreachable,
130 interrupted).  The commands live in ``qldb_migrate.commands``, a module per
group; this module assembles them and is the console-script entry point.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from . import __version__, exitcodes
from .commands import admin, check, live, load, verify  # noqa: F401  (each registers its commands)
from .commands.common import INTERRUPTED, app, err, out


def _version(value: bool) -> None:
    if value:
        out.print(f"qldb-migrate {__version__}")
        raise typer.Exit(exitcodes.OK)


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", metavar="", callback=_version, is_eager=True,
                           help="Print the version and exit.")
    ] = False,
) -> None:
    """Verify QLDB exports, migrate them into PostgreSQL, and re-prove them there."""


def _interrupted(signum: int, _frame: object) -> None:
    # Said here: Typer turns KeyboardInterrupt into a silent exit 130 before main() could.
    err.print(INTERRUPTED[0])
    raise KeyboardInterrupt


def main() -> None:
    """Console-script entry point: usage errors exit 2, never a traceback for bad input.

    SIGINT and SIGTERM stop a run the same way: a migration in progress rolls
    back (its one transaction is never committed), and the tool says so (exit 130).
    """
    import signal

    signal.signal(signal.SIGTERM, _interrupted)
    signal.signal(signal.SIGINT, _interrupted)
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
