"""pgloader-style run summary for ``migrate``: a table per run."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from ..report import base_report, findings_json
from ..summary import verify_report
from .loader import MigrateResult


def print_migrate_summary(console: Console, result: MigrateResult, target: str) -> None:
    v = result.verify
    table = Table(title=f"qldb-migrate migrate — {v.source} → {target}", title_justify="left")
    for col in ("QLDB table", "revisions read", "loaded", "current rows", "deleted", "redacted"):
        table.add_column(col, justify="left" if col == "QLDB table" else "right")
    for name, s in sorted(result.tables.items()):
        table.add_row(name, str(s.read), str(s.loaded), str(s.current_rows), str(s.deleted), str(s.redacted))
    table.add_row("blocks", str(v.blocks), str(result.new_blocks), "", "", "")
    table.add_row("time", f"{result.seconds:.1f}s", "", "", "", "")
    console.print(table)
    for finding in v.findings:
        if finding.severity.value != "note":
            console.print(f"{finding.severity.value}: {finding.describe()}")
    if result.committed:
        if result.new_blocks or result.redactions_applied:
            console.print(f"LOADED: run {result.run_id} published {result.new_blocks} new blocks "
                          f"({result.redactions_applied} redactions applied) in one transaction")
        else:
            console.print(f"UNCHANGED: all {result.known_blocks} blocks were already loaded and match; "
                          "nothing to publish")
    elif result.refused_states and not v.errors:
        hints = ", ".join(f"--allow-{s}" for s in result.refused_states)
        console.print(f"REFUSED: the export is {', '.join(result.refused_states)}; nothing was published "
                      f"(accept with {hints}, which is recorded)")
    else:
        console.print(f"FAILED: {len(v.errors)} problem(s); nothing was published")


def migrate_report(result: MigrateResult, target: str, exit_code: int, opt_outs: list[str]) -> dict[str, Any]:
    report = base_report("migrate")
    report["verification"] = verify_report(result.verify, False, exit_code, opt_outs)
    report.update(
        {
            "target": target,
            "runId": result.run_id,
            "published": result.committed,
            "refusedStates": result.refused_states,
            "optOuts": opt_outs,
            "newBlocks": result.new_blocks,
            "knownBlocks": result.known_blocks,
            "redactionsApplied": result.redactions_applied,
            "tables": {name: vars(s) for name, s in result.tables.items()},
            "exitCode": exit_code,
            "findings": findings_json(result.findings),
            "seconds": round(result.seconds, 3),
        }
    )
    return report
