"""pgloader-style run summary for ``migrate``: a table per run, then one verdict line."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from ..optouts import OptOuts
from ..report import base_report
from ..summary import rate, verdict_line, verify_report
from .loader import MigrateResult


def print_migrate_summary(console: Console, result: MigrateResult, target: str) -> None:
    v = result.verify
    table = Table(title=f"qldb-migrate migrate — {v.source} → {target}", title_justify="left")
    for col in ("QLDB table", "table id", "history rows loaded", "current rows", "deleted", "redacted"):
        table.add_column(col, justify="left" if col in ("QLDB table", "table id") else "right")
    for s in sorted(result.tables.values(), key=lambda s: (s.qldb_name, s.table_id)):
        table.add_row(s.qldb_name, s.table_id, f"{s.loaded:,}", f"{s.current_rows:,}", f"{s.deleted:,}",
                      f"{s.redacted:,}")
    table.add_row("blocks", "", f"{result.new_blocks:,} new", f"{result.known_blocks:,} already stored", "", "")
    table.add_row("user revisions", "", f"{v.revisions:,} in the source", "", "", "")
    table.add_row("time", "", f"{result.seconds:.1f}s", rate(v.revisions, result.seconds), "", "")
    console.print(table)
    if result.resumed is not None and result.resumed.reused:
        r = result.resumed
        console.print(f"resumed: {r.reused:,} of {r.objects:,} objects replayed from the staged progress of an "
                      f"interrupted run, {r.redone:,} verified again ({r.changed:,} of them changed since staged"
                      + (f", {r.rejected:,} whose staged result failed its signature" if r.rejected else "") + ")")
    for line in v.findings.lines():
        console.print(line)
    _word, why = verdict_line(v, False)
    if result.committed:
        if result.new_blocks or result.redactions_applied:
            console.print(f"LOADED: run {result.run_id} published {result.new_blocks:,} new blocks "
                          f"({result.redactions_applied} redactions applied) in one transaction; {why}")
        else:
            console.print(f"UNCHANGED: all {v.blocks:,} blocks of the source were already loaded and match; "
                          "nothing to publish")
    elif result.refused_states and not v.error_count:
        console.print(f"REFUSED: the export is {', '.join(result.refused_states)}; nothing was published "
                      f"(accept with {OptOuts.hints(result.refused_states)}, which is recorded)")
    else:
        console.print(f"FAILED: {v.error_count} problem(s); nothing was published")


def migrate_report(result: MigrateResult, target: str, exit_code: int, opt_outs: OptOuts) -> dict[str, Any]:
    report = base_report("migrate")
    report["verification"] = verify_report(result.verify, False, exit_code, opt_outs)
    report.update(
        {
            "target": target,
            "runId": result.run_id,
            "published": result.committed,
            "refusedStates": result.refused_states,
            "optOuts": opt_outs.names(),
            "blocks": result.verify.blocks,
            "newBlocks": result.new_blocks,
            "knownBlocks": result.known_blocks,
            "revisions": result.verify.revisions,
            "redactionsApplied": result.redactions_applied,
            "resumed": None if result.resumed is None else result.resumed.to_json(),
            "tables": [s.to_json() for s in result.tables.values()],
            "exitCode": exit_code,
            "seconds": round(result.seconds, 3),
            "revisionsPerSecond": round(result.verify.revisions / result.seconds, 1) if result.seconds > 0 else None,
        }
    )
    return report
