"""Human output for a verification run: one summary table, pgloader style, and the findings."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from .optouts import OptOuts
from .report import base_report
from .verifier import NOT_PROVEN, VerifyResult


def anchor_phrase(anchored_through: int | None, first: int | None, last: int | None,
                  by: str = "a digest or saved proof") -> str:
    """What the digests cover, said exactly: the one phrase every verdict uses."""
    if last is None:
        return "no blocks"
    if anchored_through is None:
        return f"blocks {first}..{last} are linked but no digest or saved proof anchors them"
    if anchored_through >= last:
        return f"anchored through block {last} (the last one) by {by}"
    return (f"anchored through block {anchored_through} of {last} by {by}; blocks {anchored_through + 1}..{last} "
            "are linked to it but not anchored by any digest")


def verdict_line(result: VerifyResult, strict: bool, opt_outs: OptOuts | None = None) -> tuple[str, str]:
    """(verdict word, one-line explanation); with ``strict``, a state ``opt_outs`` does not accept fails."""
    states = result.states()
    refused = (opt_outs or OptOuts()).refused(states)
    if result.error_count:
        first = result.errors[0].describe() if result.errors else ""
        return "FAILED", f"{result.error_count} problem(s); first: {first}"
    if refused and strict:
        return "FAILED", f"--strict and the export is {', '.join(refused)} (accept with {OptOuts.hints(refused)})"
    what = (f"{result.rehashed:,} user revisions re-hashed, {result.system_revisions:,} system revisions counted "
            f"by their hashes, {result.blocks:,} blocks and their links checked")
    anchor = anchor_phrase(result.anchored_through, result.first_sequence, result.last_sequence, result.anchored_by)
    if states:
        return "VERIFIED WITH RESERVATIONS", f"every check that could run passed ({what}); {anchor}; " \
                                             f"the export is {', '.join(states)}"
    return "VERIFIED", f"{what}; {anchor}"


def rate(count: int, seconds: float, unit: str = "revisions") -> str:
    return f"{count / seconds:,.0f} {unit}/s" if seconds > 0 else f"- {unit}/s"


def print_summary(console: Console, result: VerifyResult, strict: bool, opt_outs: OptOuts | None = None) -> None:
    table = Table(title=f"qldb-migrate verify — {result.source}", title_justify="left")
    table.add_column("item")
    table.add_column("value", justify="right")
    if result.ledger_name or result.strand_id:
        table.add_row("ledger", f"{result.ledger_name or '?'} (strand {result.strand_id})")
    exports = [e for e in result.plan.exports if e.fmt != "STREAM"]
    table.add_row("exports", str(len(exports)))
    table.add_row("objects", str(sum(1 for o in result.objects if o.obj.fmt != "STREAM")))
    for archive in result.streams:
        table.add_row("stream archive", f"{len(archive.objects):,} objects, {archive.records:,} records "
                                        f"({archive.duplicates:,} copies collapsed), "
                                        f"blocks {archive.first}..{archive.last}")
    span = "-" if result.first_sequence is None else f"{result.first_sequence}..{result.last_sequence}"
    table.add_row("blocks", f"{result.blocks:,} (chain {span})")
    table.add_row("overlapping duplicates", f"{result.duplicate_blocks:,}")
    table.add_row("user revisions", f"{result.revisions:,}")
    for status, count in sorted(result.statuses.items()):
        if status != "hash-only":
            table.add_row(f"  {status}", f"{count:,}")
    # system revisions are not user revisions: listed beside them, never inside the count above
    table.add_row("system revisions (hash only, counted by their hashes)", f"{result.statuses.get('hash-only', 0):,}")
    table.add_row("statementDigests recomputed", f"{result.statements['recomputed']:,}")
    table.add_row("  not recomputable (parameters not in the journal)", f"{result.statements['notRecomputable']:,}")
    table.add_row("Ion Hash", result.hash_path)
    table.add_row("time", f"{result.seconds:.1f}s ({rate(result.revisions, result.seconds)})")
    console.print(table)

    tables = Table(title="user revisions per QLDB table", title_justify="left")
    tables.add_column("table")
    tables.add_column("revisions", justify="right")
    for name, count in sorted(result.revisions_by_table.items()):
        tables.add_row(name, f"{count:,}")
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
    for line in result.findings.lines():
        console.print(line)
    word, why = verdict_line(result, strict, opt_outs)
    console.print(f"{word}: {why}")


def verify_report(
    result: VerifyResult, strict: bool, exit_code: int, opt_outs: OptOuts | None = None
) -> dict[str, Any]:
    report = base_report("verify")
    word, why = verdict_line(result, strict, opt_outs)
    report.update(
        {
            "source": result.source,
            "ledgerName": result.ledger_name,
            "strandId": result.strand_id,
            "strict": strict,
            "verdict": word.lower(),
            "verdictDetail": why,
            "exitCode": exit_code,
            "states": result.states(),
            "optOuts": (opt_outs or OptOuts()).names(),
            "exports": [
                {"exportId": e.export_id, "format": e.fmt, "strandId": e.strand_id, "objects": len(e.objects),
                 "sidecar": e.sidecar_key}
                for e in result.plan.exports if e.fmt != "STREAM"
            ],
            "objects": [
                {"key": o.obj.key, "exportId": o.obj.export_id, "first": o.obj.first, "last": o.obj.last,
                 "etag": o.etag, "sha256": o.sha256, "size": o.size}
                for o in result.objects if o.obj.fmt != "STREAM"
            ],
            "streamArchives": [
                {"ledger": a.ledger, "strandId": a.strand_id, "first": a.first, "last": a.last, "blocks": a.blocks,
                 "records": a.records, "duplicates": a.duplicates, "streamArns": sorted(a.stream_arns),
                 "objects": [{"key": o.key, "size": o.size, "sha256": o.sha256, "etag": o.etag, "records": o.records}
                             for o in a.objects]}
                for a in result.streams
            ],
            "chain": {"blocks": result.blocks, "first": result.first_sequence, "last": result.last_sequence,
                      "anchoredThrough": result.anchored_through, "duplicateBlocks": result.duplicate_blocks,
                      "anchoredBy": result.anchored_by,
                      "anchor": anchor_phrase(result.anchored_through, result.first_sequence, result.last_sequence,
                                              result.anchored_by)},
            "revisions": {"total": result.revisions, "rehashed": result.rehashed,
                          "systemHashOnly": result.system_revisions, "byStatus": dict(result.statuses),
                          "byTable": dict(result.revisions_by_table), "notRehashed": result.not_rehashed},
            "statementDigests": dict(result.statements),
            "ionHash": result.hash_path,
            "unexplainedRedactions": [
                {"tableId": t, "documentId": d, "version": v} for t, d, v in result.unexplained_redactions[:1000]],
            "digests": [o.to_json() for o in result.digests],
            "notProvenByHashes": NOT_PROVEN,
            **result.findings.to_json(),
            "seconds": round(result.seconds, 3),
            "revisionsPerSecond": round(result.revisions / result.seconds, 1) if result.seconds > 0 else None,
        }
    )
    return report
