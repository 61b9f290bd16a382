"""Every benchmark runs, end to end, at a toy size: a bench broken by a change fails here, not months later.

The figures are not looked at (the machines differ ~3x and a toy size measures nothing); only that each bench
completes and prints the ratios it promises. `bench/run` gives the real figures.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

BENCHES = {
    "ionhash": (["bench/ionhash_vs_reference.py", "--revisions", "200", "--rounds", "1"], "ionhash_speedup="),
    "verify": (["bench/verify_vs_parse.py", "--revisions", "400", "--rss", "300,400"], "verify_vs_parse="),
    "migrate": (["bench/migrate_vs_verify.py", "--revisions", "400", "--sample-rows", "300", "--loader-rounds", "1",
                 "--rss", "400"],
                "check_vs_verify="),
    "framing": (["bench/binary_framing.py", "--revisions", "300", "--rounds", "1"], "="),
    "stream": (["bench/stream_vs_export.py", "--revisions", "400", "--rss", "300,400"], "stream_vs_export="),
    # the kill must land before the run ends: a few thousand revisions, several objects
    "resume": (["bench/resume_vs_verify.py", "--revisions", "3000", "--rounds", "1"], "resume_redo_fraction="),
    "ledger writes": (["bench/ledger_writes.py", "--seconds", "1", "--rounds", "1", "--writers", "2",
                       "--proof-revisions", "300", "--proofs", "3"], "ledger_write_ratio="),
}


@pytest.mark.parametrize("name", list(BENCHES))
def test_each_benchmark_runs(name: str, embedded_admin: str, tmp_path: Path) -> None:
    args, expect = BENCHES[name]
    env = {**os.environ, "QLDB_MIGRATE_DSN": embedded_admin}
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert expect in proc.stdout and "Traceback" not in proc.stderr, proc.stdout[-3000:] + proc.stderr[-3000:]
