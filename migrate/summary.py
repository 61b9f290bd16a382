"""Human output for a verification run: one summary table, pgloader style, and the findings."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from .report import base_report, findings_json
from .verifier import NOT_PROVEN, VerifyResult
from .verify.findings import Severity


def verdict_line(result: VerifyResult, strict: bool) -> tuple[str, str]:
    """(verdict word, one-line explanation)."""
    errors = result.errors
    states = result.states()
    if errors:
        return "FAILED", f"{len(errors)} problem(s); first: {errors[0].describe()}"
    if states and strict:
        return "FAILED", f"--strict and the export is {', '.join(states)}"
    if states:
        return "VERIFIED WITH RESERVATIONS", f"every check that could run passed; the export is {', '.join(states)}"
    return "VERIFIED", "every revision re-hashed, every block and link checked, anchored by a digest"


def print_summary(console: Console, result: VerifyResult, strict: bool) -> None:
    table = Table(title=f"qldb-migrate verify — {result.source}", title_justify="left")
    table.add_column("item")
    table.add_column("value", justify="right")
    table.add_row("exports", str(len(result.plan.exports)))
    table.add_row("objects", str(len(result.objects)))
    span = "-" if result.first_sequence is None else f"{result.first_sequence}..{result.last_sequence}"
    table.add_row("blocks (chain)", f"{result.blocks}  [{span}]")
    table.add_row("overlapping duplicates", str(result.duplicate_blocks))
    for status, count in sorted(result.statuses.items()):
        table.add_row(f"revisions {status}", str(count))
    table.add_row("time", f"{result.seconds:.1f}s")
    console.print(table)

    tables = Table(title="revisions per QLDB table", title_justify="left")
    tables.add_column("table")
    tables.add_column("revisions", justify="right")
    for name, count in sorted(result.revisions_by_table.items()):
        tables.add_row(name, str(count))
    console.print(tables)

    digests = Table(title="digests", title_justify="left")
    digests.add_column("source")
    digests.add_column("tip", justify="right")
    digests.add_column("reached by")
    digests.add_column("result")
    for outcome in result.digests:
        verdict = {True: "matches", False: "MISMATCH", None: "not reached"}[outcome.matched]
        how = "; ".join(outcome.methods) or (outcome.unreached_reason or "")
        digests.add_row(outcome.digest.source, str(outcome.digest.tip.sequence_no), how, verdict)
    if result.digests:
        console.print(digests)

    shown = 0
    for finding in result.findings:
        if finding.severity is Severity.NOTE:
            continue
        if shown == 50:
            console.print(f"… {len(result.findings) - shown} more in the report")
            break
        console.print(f"{finding.severity.value}: {finding.describe()}")
        shown += 1
    word, why = verdict_line(result, strict)
    console.print(f"{word}: {why}")


def verify_report(
    result: VerifyResult, strict: bool, exit_code: int, opt_outs: list[str] | None = None
) -> dict[str, Any]:
    report = base_report("verify")
    word, why = verdict_line(result, strict)
    report.update(
        {
            "source": result.source,
            "strict": strict,
            "verdict": word.lower(),
            "verdictDetail": why,
            "exitCode": exit_code,
            "states": result.states(),
            "optOuts": opt_outs or [],
            "exports": [
                {"exportId": e.export_id, "format": e.fmt, "strandId": e.strand_id, "objects": len(e.objects),
                 "sidecar": e.sidecar_key}
                for e in result.plan.exports
            ],
            "objects": [
                {"key": o.obj.key, "exportId": o.obj.export_id, "first": o.obj.first, "last": o.obj.last,
                 "etag": o.etag, "sha256": o.sha256, "size": o.size}
                for o in result.objects
            ],
            "chain": {"blocks": result.blocks, "first": result.first_sequence, "last": result.last_sequence,
                      "anchoredThrough": result.anchored_through, "duplicateBlocks": result.duplicate_blocks},
            "revisions": {"total": result.revisions, "byStatus": dict(result.statuses),
                          "byTable": dict(result.revisions_by_table)},
            "digests": [o.to_json() for o in result.digests],
            "notProvenByHashes": NOT_PROVEN,
            "findings": findings_json(result.findings),
            "seconds": round(result.seconds, 3),
        }
    )
    return report
