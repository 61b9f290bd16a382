"""Ion Hash throughput: ours against the reference ``ionhash`` 1.2.1, side by side.

    python bench/ionhash_vs_reference.py [--revisions 3000] [--seed 7]

Builds a pinned corpus of realistic revisions (data 0.2–5 KB: nested structs,
decimals, timestamps, lists, blobs, symbols; plus QLDB metadata), writes it as
binary Ion, then in one run:

* ours: parsed with the current amazon-ion (C extension), H(metadata) and
  H(data) of every revision, timed;
* reference: ``ionhash`` 1.2.1 on amazon-ion 0.9.3 in a throwaway virtualenv
  (``bench/out/ref-venv``, created on first use), the same hashes, timed.

Only hashing is timed, on values already parsed.  The rounds alternate, ours
then the reference's (which waits, parsed, in its own process), and each side
keeps its best round: on a shared machine both sides then meet the same load,
instead of one side being timed in a quiet minute and the other in a busy one.
Both sides also print a digest over all their hashes, so the run proves they
computed the same thing.  Output: ``name=value`` lines, ending with
``ionhash_speedup``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import random
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"
REF_VENV = OUT / "ref-venv"

# Parses, says "ready", then times one round per line it reads; at end of input, its digest.
REFERENCE_SCRIPT = r"""
import hashlib, json, sys, time
import ionhash  # noqa: F401  (patches ion_hash onto the IonPy classes)
from amazon.ion import simpleion
with open(sys.argv[1], "rb") as fh:
    revisions = simpleion.load(fh, single_value=False)
print("ready", flush=True)
hashes = []
while sys.stdin.readline():
    start = time.perf_counter()
    hashes = []
    for rev in revisions:
        hashes.append(rev["metadata"].ion_hash("SHA-256"))
        hashes.append(rev["data"].ion_hash("SHA-256"))
    elapsed = time.perf_counter() - start
    print(json.dumps({"seconds": elapsed}), flush=True)
print(json.dumps({"count": len(revisions), "all": hashlib.sha256(b"".join(hashes)).hexdigest()}), flush=True)
"""


def build_corpus(path: Path, count: int, seed: int) -> int:
    from qldb_migrate.ionwrite import dumps_binary, dumps_binary_stream
    from qldb_migrate.sample.blocks import metadata, struct
    from qldb_migrate.sample.documents import TABLES, document

    rng = random.Random(seed)
    base = dt.datetime(2021, 3, 4, 5, 6, 7, tzinfo=dt.UTC)
    revisions = []
    while len(revisions) < count:
        table = rng.choice(TABLES)
        data = document(table, rng, base)
        size = len(dumps_binary(data))
        if not 200 <= size <= 5120:
            continue
        meta = metadata(f"doc{len(revisions):08d}", rng.randrange(0, 5), base, f"tx{len(revisions):08d}")
        revisions.append(struct({"metadata": meta, "data": data}))
    path.write_bytes(dumps_binary_stream(revisions))
    return len(revisions)


def ensure_reference_venv() -> Path:
    python = REF_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(REF_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "amazon-ion==0.9.3", "ionhash==1.2.1"], check=True)
    return python


def time_both(path: Path, python: Path, rounds: int) -> tuple[float, int, str, dict]:
    """Best round of ours and of the reference, their rounds alternating."""
    from amazon.ion import simpleion
    from qldb_migrate.verify.ionhash import ion_hash

    with open(path, "rb") as fh:
        revisions = list(simpleion.load(fh, single_value=False))
    ref = subprocess.Popen([str(python), "-c", REFERENCE_SCRIPT, str(path)],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert ref.stdin is not None and ref.stdout is not None
    if ref.stdout.readline().strip() != "ready":  # parsed: from here on only one side runs at a time
        raise RuntimeError(f"reference failed to start (exit {ref.wait()})")
    best = ref_best = None
    hashes: list[bytes] = []
    for _ in range(rounds):
        start = time.perf_counter()
        hashes = []
        for rev in revisions:
            hashes.append(ion_hash(rev["metadata"]))
            hashes.append(ion_hash(rev["data"]))
        elapsed = time.perf_counter() - start
        best = elapsed if best is None else min(best, elapsed)
        ref.stdin.write("round\n")
        ref.stdin.flush()
        ref_elapsed = json.loads(ref.stdout.readline())["seconds"]
        ref_best = ref_elapsed if ref_best is None else min(ref_best, ref_elapsed)
    ref.stdin.close()
    ref_result = json.loads(ref.stdout.readline())
    if ref.wait() != 0:
        raise RuntimeError("reference failed")
    assert best is not None and ref_best is not None
    ref_result["seconds"] = ref_best
    return best, len(revisions), hashlib.sha256(b"".join(hashes)).hexdigest(), ref_result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--revisions", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    corpus = OUT / f"ionhash-corpus-{args.revisions}-{args.seed}.10n"
    if not corpus.exists():
        build_corpus(corpus, args.revisions, args.seed)
    python = ensure_reference_venv()

    ours_s, count, ours_all, ref = time_both(corpus, python, args.rounds)
    ours_rate = count / ours_s
    ref_rate = ref["count"] / ref["seconds"]
    print(f"corpus_revisions={count}")
    print(f"corpus_bytes={corpus.stat().st_size}")
    print(f"digests_agree={'true' if ours_all == ref['all'] else 'false'}")
    print(f"ours_revisions_per_s={ours_rate:.0f}")
    print(f"reference_revisions_per_s={ref_rate:.0f}")
    print(f"ionhash_speedup={ours_rate / ref_rate:.2f}")


if __name__ == "__main__":
    main()
