"""``verify`` throughput against bare parsing of the same objects, and its memory.

    python bench/verify_vs_parse.py [--revisions 200000] [--seed 1] [--rss 20000,200000]

Builds (once, cached in ``bench/out``) the pinned sample export
``sample-export --revisions N --seed S`` and, in one run:

* parse-only: every data object parsed with amazon-ion (C extension, default
  IonPy value model, what a user of the library gets), one process;
* the same with the ``MAY_BE_BARE`` value model that ``verify`` itself uses;
* ``verify_source`` with a worker per core (full verification).

Prints revisions/s, revisions per block, ``verify_vs_parse`` (verify
throughput / default parse-only throughput), ``verify_vs_parse_bare`` and,
with ``--rss``, the peak RSS of complete ``qldb-migrate verify`` runs at each
size (main process and largest worker), each in a fresh process.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"


def sample(revisions: int, seed: int) -> Path:
    # v3: the generator with DDL blocks and parameterized statements, no delete beside a system revision
    path = OUT / f"sample-v3-{revisions}-{seed}"
    if not (path / "digests").exists():
        from qldb_migrate.sample.export import write_sample_export

        if path.exists():
            import shutil

            shutil.rmtree(path)
        write_sample_export(path, revisions, "ion_text", 1, seed)
    return path


def parse_only(objects: list[Path], bare: bool) -> tuple[float, int]:
    from amazon.ion import simpleion

    model = simpleion.IonPyValueModel.MAY_BE_BARE if bare else simpleion.IonPyValueModel.ION_PY
    start = time.perf_counter()
    blocks = 0
    for path in objects:
        with open(path, "rb") as fh:
            for _ in simpleion.load(fh, single_value=False, parse_eagerly=False, text_buffer_size_limit=1 << 20,
                                    value_model=model):
                blocks += 1
    return time.perf_counter() - start, blocks


RSS_SCRIPT = r"""
import json, resource, sys
def vm_hwm_kib():
    # Peak RSS of this address space. getrusage's ru_maxrss is not: on Linux it keeps the peak of
    # the process this one was forked from across exec (the bench process that built a big sample).
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))

from qldb_migrate.sources import SourceSpec
from qldb_migrate.verifier import verify_source
r = verify_source(SourceSpec(sys.argv[1]), [], None)
print(json.dumps({"revisions": r.revisions, "errors": len(r.errors),
                  "main_kib": vm_hwm_kib(),
                  "worker_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--revisions", type=int, default=200000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rss", default="", help="comma-separated sizes for the peak-RSS comparison")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    from qldb_migrate.sources import SourceSpec
    from qldb_migrate.verifier import verify_source

    export = sample(args.revisions, args.seed)
    objects = sorted(export.rglob("*.ion"), key=lambda p: int(p.name.split(".")[1].split("-")[0]))
    parse_s, blocks = parse_only(objects, bare=False)
    parse_bare_s, _ = parse_only(objects, bare=True)
    start = time.perf_counter()
    result = verify_source(SourceSpec(str(export)), [], None)
    verify_s = time.perf_counter() - start
    assert not result.errors, result.errors[:3]
    revisions = result.revisions
    print(f"revisions={revisions}")
    print(f"blocks={blocks}")
    print(f"revisions_per_block={revisions / blocks:.2f}")
    print(f"workers={os.cpu_count()}")
    print(f"parse_only_revisions_per_s={revisions / parse_s:.0f}")
    print(f"parse_only_bare_revisions_per_s={revisions / parse_bare_s:.0f}")
    print(f"verify_revisions_per_s={revisions / verify_s:.0f}")
    print(f"verify_vs_parse={parse_s / verify_s:.2f}")
    print(f"verify_vs_parse_bare={parse_bare_s / verify_s:.2f}")
    print(f"peak_rss_bench_process_mib={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")
    sizes = [int(s) for s in args.rss.split(",") if s]
    peaks = {}
    for size in sizes:
        path = sample(size, args.seed)
        run = json.loads(subprocess.run([sys.executable, "-c", RSS_SCRIPT, str(path)], check=True,
                                        capture_output=True, text=True).stdout)
        peaks[size] = run["main_kib"] + run["worker_kib"]
        print(f"peak_rss_main_mib_{size}={run['main_kib'] / 1024:.0f}")
        print(f"peak_rss_worker_mib_{size}={run['worker_kib'] / 1024:.0f}")
    if len(peaks) >= 2:
        lo, hi = min(peaks), max(peaks)
        print(f"peak_rss_ratio_{hi}_vs_{lo}={peaks[hi] / peaks[lo]:.2f}")


if __name__ == "__main__":
    main()
