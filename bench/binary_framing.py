"""What the binary Ion framing check costs, measured side by side on an ION_BINARY export.

    python bench/binary_framing.py [--revisions 50000] [--seed 1] [--rounds 3]

Builds (once, cached in ``bench/out``) a pinned ION_BINARY sample export and,
alternating in one process for ``--rounds`` rounds (best round kept):

* bare: every data object parsed by amazon-ion's C reader directly;
* framed: the same through ``ionparse.iter_values`` (``FramedReader`` in front
  of the C reader), as ``verify`` reads them;
* verify: ``verify_source`` with one worker on the same export.

Prints ``framed_vs_bare_parse`` (throughput ratio) and
``framing_share_of_verify`` (the extra seconds of framed parsing over one
worker's verify seconds): what ION_BINARY exports pay for never handing the C
reader a malformed length.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"


def sample(revisions: int, seed: int) -> Path:
    path = OUT / f"sample-binary-{revisions}-{seed}"
    if not (path / "digests").exists():
        import shutil

        from qldb_migrate.sample.export import write_sample_export

        shutil.rmtree(path, ignore_errors=True)
        write_sample_export(path, revisions, "ion_binary", 1, seed)
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--revisions", type=int, default=50000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from amazon.ion import simpleion
    from qldb_migrate.sources import SourceSpec
    from qldb_migrate.verifier import verify_source
    from qldb_migrate.verify.ionparse import VALUE_MODEL, iter_values

    export = sample(args.revisions, args.seed)
    objects = sorted(p for p in export.rglob("*.ion") if "digests" not in p.parts and p.name[0].isalpha())

    def bare() -> int:
        n = 0
        for path in objects:
            with open(path, "rb") as fh:
                for _ in simpleion.load(fh, single_value=False, parse_eagerly=False, value_model=VALUE_MODEL,
                                        text_buffer_size_limit=1 << 20):
                    n += 1
        return n

    def framed() -> int:
        n = 0
        for path in objects:
            for _ in iter_values(lambda p=path: open(p, "rb")):  # noqa: SIM115 (iter_values closes it)
                n += 1
        return n

    def verify() -> int:
        result = verify_source(SourceSpec(str(export)), [], workers=1)
        assert not result.errors, [f.describe() for f in result.errors[:3]]
        return 0

    best: dict[str, float] = {}
    counts: dict[str, int] = {}
    for _ in range(args.rounds):
        for name, run in (("bare", bare), ("framed", framed), ("verify", verify)):
            start = time.process_time()
            counts[name] = run()
            best[name] = min(best.get(name, float("inf")), time.process_time() - start)
            print(f"# {name} {time.process_time() - start:.2f}", flush=True)
    assert counts["bare"] == counts["framed"], counts
    print(f"binary_blocks={counts['bare']}")
    print(f"binary_bare_parse_cpu_s={best['bare']:.2f}")
    print(f"binary_framed_parse_cpu_s={best['framed']:.2f}")
    print(f"binary_verify_cpu_s={best['verify']:.2f}")
    print(f"framed_vs_bare_parse={best['bare'] / best['framed']:.2f}")
    print(f"framing_share_of_verify={(best['framed'] - best['bare']) / best['verify']:.2f}")


if __name__ == "__main__":
    main()
