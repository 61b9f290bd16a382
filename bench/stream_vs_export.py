"""Verifying a ledger from its stream archive against verifying it from its export, and the archive's memory.

    python bench/stream_vs_export.py [--revisions 20000] [--seed 7] [--rss 20000,200000]

Builds (once, cached in ``bench/out``) the pinned sample export
``sample-export --revisions N --seed S --format ion_binary`` and the same
ledger as a Firehose stream archive (2% redelivered, reordered within 200
records).  Figures are CPU seconds of one process (user + system), which a
shared machine's load disturbs far less than wall time:

* ``export_verify``: ``verify_source`` with one worker, every block checked;
* ``stream_pass1``: ``scan_stream_archive`` with one worker (read, parse, spill, judge);
* ``stream_pass2``: ``iter_stream_blocks`` over the whole range (rebuild only);
* ``stream_pass2_check``: the same with ``check_block`` on every block;
* ``stream_pass2_hashed_check``: pass 2 as ``verify`` runs it: revision data hashed from the records' bytes
  (``iter_stream_blocks(hashed_data=True)``, ``streamhashed``) and ``check_block`` with the C hash path;
* ``stream_vs_export``: ``verify_source`` of the export against ``verify_source`` of the archive (each with one
  worker, the same checks and Ion Hash path): export CPU seconds / archive CPU seconds.

With ``--rss``, the peak RSS of scan + iterate at each size, each in a fresh
process (main process, and the largest of its two reading workers).  It should
not grow with the archive: the spill's SQLite cache is a fixed 16 MiB
(``streamspill.CACHE_KIB``), no query sorts every row, and Python holds a batch
of rows and one block at a time (measured: main 52 MiB at 20,000 revisions, 53
at 200,000).
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _sample(revisions: int, seed: int) -> Path:
    from qldb_migrate.sample.export import iter_ledger_blocks, write_sample_export
    from qldb_migrate.sample.stream import write_stream_archive

    root = OUT / f"stream-v2-{revisions}-{seed}"
    if not (root / "done").exists():
        shutil.rmtree(root, ignore_errors=True)
        write_sample_export(root / "export", revisions, "ion_binary", 1, seed)
        write_stream_archive(root / "stream", iter_ledger_blocks(revisions, seed, as_committed=True), seed=seed,
                             duplicate_fraction=0.02, reorder_window=200)
        (root / "done").write_text("")
    return root


def rates(revisions: int, seed: int) -> None:
    from qldb_migrate.native import prove
    from qldb_migrate.sources import LocalSource, SourceSpec
    from qldb_migrate.streamhashed import hashed_prover
    from qldb_migrate.streams import iter_stream_blocks, scan_stream_archive
    from qldb_migrate.verifier import verify_source
    from qldb_migrate.verify.block import check_block

    root = _sample(revisions, seed)
    start = _cpu()
    result = verify_source(SourceSpec(str(root / "export")), [], workers=1)
    export_cpu = _cpu() - start
    # the same verifier, end to end, on the archive (read, spill, rebuild, check every block as the export's)
    start = _cpu()
    streamed = verify_source(SourceSpec(str(root / "stream")), [], workers=1)
    stream_cpu = _cpu() - start
    assert streamed.revisions == result.revisions and not streamed.error_count and not result.error_count
    work = Path(tempfile.mkdtemp(dir=OUT))
    try:
        start = _cpu()
        archive = scan_stream_archive(LocalSource(root / "stream"), work, workers=1)
        pass1 = _cpu() - start
        start = _cpu()
        # user revisions (with metadata); a block's system revisions are hashes only, as in the export
        rebuilt = sum(sum(1 for r in b.get("revisions", []) if "metadata" in r)
                      for b, _ in iter_stream_blocks(archive.spill_path, archive.first, archive.last))
        pass2 = _cpu() - start
        start = _cpu()
        for block, _ in iter_stream_blocks(archive.spill_path, archive.first, archive.last):
            check_block(block)
        pass2_check = _cpu() - start
        start = _cpu()
        prover = hashed_prover(prove)
        for block, absent in iter_stream_blocks(archive.spill_path, archive.first, archive.last, hashed_data=True):
            check_block(block, None, True, prover, absent)
        pass2_hashed = _cpu() - start
    finally:
        shutil.rmtree(work)
    assert rebuilt == result.revisions and not archive.errors
    print(f"revisions={result.revisions}")
    print(f"stream_records={archive.records}")
    print(f"export_verify_revisions_per_cpu_s={result.revisions / export_cpu:.0f}")
    print(f"stream_pass1_records_per_cpu_s={archive.records / pass1:.0f}")
    print(f"stream_pass2_records_per_cpu_s={archive.records / pass2:.0f}")
    print(f"stream_pass2_check_records_per_cpu_s={archive.records / pass2_check:.0f}")
    print(f"stream_pass2_hashed_check_records_per_cpu_s={archive.records / pass2_hashed:.0f}")
    print(f"stream_verify_revisions_per_cpu_s={result.revisions / stream_cpu:.0f}")
    print(f"stream_vs_export={export_cpu / stream_cpu:.2f}")


def rss(revisions: int, seed: int) -> None:
    """Run in a fresh process: scan with two workers, then rebuild every block."""
    from qldb_migrate.sources import LocalSource
    from qldb_migrate.streams import iter_stream_blocks, scan_stream_archive

    root = _sample(revisions, seed)
    work = Path(tempfile.mkdtemp(dir=OUT))
    try:
        archive = scan_stream_archive(LocalSource(root / "stream"), work, workers=2)
        for _block in iter_stream_blocks(archive.spill_path, archive.first, archive.last):
            pass
        spill = archive.spill_path.stat().st_size
    finally:
        shutil.rmtree(work)
    main = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    worker = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
    print(f"rss_{revisions}_main_mib={main}")
    print(f"rss_{revisions}_worker_mib={worker}")
    print(f"spill_{revisions}_mib={spill >> 20}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--revisions", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rss", default="")
    parser.add_argument("--rss-only", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    if args.rss_only:
        rss(args.rss_only, args.seed)
        return
    rates(args.revisions, args.seed)
    for size in filter(None, args.rss.split(",")):
        _sample(int(size), args.seed)  # built here: building it in the measured process would count its memory
        subprocess.run([sys.executable, __file__, "--seed", str(args.seed), "--rss-only", size], check=True)


if __name__ == "__main__":
    main()
