"""The live ledger's cost to writers, the sealer's rate and lag, and a proof's latency, side by side in one run.

    python bench/ledger_writes.py [--seconds 10] [--writers 8] [--rounds 4] [--proof-revisions 200000] [--dsn …]

On the PostgreSQL given by ``--dsn`` / ``QLDB_MIGRATE_DSN`` (default: the
local server on 127.0.0.1:5432), in a fresh database:

* a small sample ledger migrated and cut over, and beside it plain tables with
  the same columns and indexes (``LIKE … INCLUDING INDEXES``: the application's
  own index on ``accountId`` too, which makes an update of ``data`` a non-HOT
  update either way) and no triggers;
* the same write mix (50% inserts, 40% updates of a shared set of documents,
  10% deletes of a row the transaction inserted earlier; one statement per
  transaction) from ``--writers`` connections for ``--seconds``, against the
  plain tables and the live ledger in alternating rounds, with ``seal
  --every 0.2`` running during the ledger rounds;
* ``ledger_write_ratio`` = ledger transactions/s ÷ plain transactions/s
  (goal ≥ 0.6; the medians of the rounds, and each round's own ratio beside
  them, with the share of the machine's time the hypervisor stole in each
  mix: on a shared VM a burst of it moves a round's rates), the sealer's lag sampled twice a second (oldest write still
  queued), the whole machine's CPU per transaction in each mix (client,
  server and sealer: on this Linux machine, from /proc/stat), then
  ``seal_revisions_per_s`` sealing a backlog with no writers against
  ``verify_revisions_per_s`` on an export of the same size, measured here (``seal_vs_verify``);
* ``get_revision_ms``: the median time to build a GetRevision proof from the
  database on a ledger of ``--proof-revisions`` migrated revisions (cut over).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

sys.path.insert(0, str(Path(__file__).resolve().parent))
from verify_vs_parse import sample

# the ledger's current table without the ledger: its columns and its indexes, none of its triggers
PLAIN = "CREATE TABLE plain.accounts (LIKE ledger.accounts INCLUDING INDEXES)"


def fresh_database(admin: str) -> str:
    name = f"qm_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return make_conninfo(admin, dbname=name)


def drop_database(admin: str, dsn: str) -> None:
    from psycopg.conninfo import conninfo_to_dict

    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{conninfo_to_dict(dsn)["dbname"]}" WITH (FORCE)')


def cli(*args: object) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "qldb_migrate", *map(str, args)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"qldb-migrate {args[0]} failed:\n{proc.stdout}{proc.stderr}")
    return proc


def process_cpu(pid: int) -> float:
    """utime + stime of a process on this machine, in seconds (0 where /proc cannot tell)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_times() -> list[int]:
    """The machine's CPU counters (/proc/stat's first line), in clock ticks."""
    return [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]


def busy_seconds(ticks: list[int]) -> float:
    """CPU seconds the whole machine has spent busy by ``cpu_times()``: this client, the server and the sealer
    together, when they share it (as here); what a transaction costs in all, less moved by noise than a rate.  Less
    idle, iowait and steal: steal is time the hypervisor gave to other guests, not work done here."""
    return (sum(ticks[:8]) - ticks[3] - ticks[4] - ticks[7]) / os.sysconf("SC_CLK_TCK")


def steal_share(before: list[int], after: list[int]) -> float:
    """The share of the machine's time stolen by the hypervisor between two ``cpu_times()``: a round with much of
    it ran on fewer cores than it thinks, and its rate says more about the neighbours than about the code."""
    spent = [b - a for a, b in zip(before[:8], after[:8], strict=True)]
    return spent[7] / max(sum(spent), 1)


def write_mix(dsn: str, table: str, writers: int, seconds: float, seed_docs: list[str]) -> int:
    """Transactions committed by ``writers`` connections in ``seconds``."""
    stop = time.monotonic() + seconds
    counts: list[int] = []

    def writer(n: int) -> None:
        rng = random.Random(n)
        done = 0
        mine: list[str] = []
        with psycopg.connect(dsn, autocommit=True) as conn:
            while time.monotonic() < stop:
                roll = rng.random()
                if roll < 0.5 or not mine:
                    data = json.dumps({"accountId": uuid.uuid4().hex[:12], "balance": rng.randrange(10**6) / 100})
                    if table.startswith("ledger."):  # the ledger assigns the id, as QLDB did; the application reads it
                        doc = conn.execute(f"INSERT INTO {table} (data) VALUES (%s) RETURNING document_id",
                                           (data,)).fetchone()[0]
                    else:
                        doc = uuid.uuid4().hex[:22]
                        conn.execute(f"INSERT INTO {table} (document_id, version, data) VALUES (%s, 0, %s)",
                                     (doc, data))
                    mine.append(doc)
                elif roll < 0.9:
                    conn.execute(f"UPDATE {table} SET data = jsonb_set(data, '{{balance}}', %s), version = version + 1 "
                                 "WHERE document_id = %s", (json.dumps(rng.randrange(10**6) / 100),
                                                            rng.choice(seed_docs)))
                else:
                    conn.execute(f"DELETE FROM {table} WHERE document_id = %s", (mine.pop(),))
                done += 1
        counts.append(done)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--proof-revisions", type=int, default=200000)
    parser.add_argument("--proofs", type=int, default=30)
    parser.add_argument("--dsn", default=os.environ.get("QLDB_MIGRATE_DSN",
                                                        "postgresql://postgres@127.0.0.1:5432/postgres"))
    args = parser.parse_args()
    state = Path(__file__).resolve().parent / "out" / f"seal-state-{uuid.uuid4().hex[:6]}"

    dsn = fresh_database(args.dsn)
    try:
        small = sample(2000, 3)
        cli("migrate", small, "--dsn", dsn, "--no-check")
        cli("cutover", "--dsn", dsn)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE SCHEMA plain")
            conn.execute(PLAIN)
            seed_docs = [r[0] for r in conn.execute("SELECT document_id FROM ledger.accounts LIMIT 64")]
            for doc in seed_docs:
                conn.execute("INSERT INTO plain.accounts SELECT * FROM ledger.accounts WHERE document_id = %s", (doc,))
        plain_tps, ledger_tps, lags, sealer_cpu, plain_cpu, ledger_cpu = [], [], [], [], [], []
        steals: list[float] = []
        for round_no in range(args.rounds):
            ticks = cpu_times()
            n = write_mix(dsn, "plain.accounts", args.writers, args.seconds, seed_docs)
            after = cpu_times()
            plain_cpu.append((busy_seconds(after) - busy_seconds(ticks)) / max(n, 1))
            plain_tps.append(n / args.seconds)
            plain_steal = steal_share(ticks, after)
            sealer = subprocess.Popen([sys.executable, "-m", "qldb_migrate", "seal", "--dsn", dsn, "--every", "0.2",
                                       "--state-dir", str(state)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            sampling = threading.Event()

            def sample_lag(sampling: threading.Event = sampling) -> None:
                with psycopg.connect(dsn, autocommit=True) as conn:
                    while not sampling.is_set():
                        lag = conn.execute("SELECT extract(epoch FROM clock_timestamp() - oldest) FROM "
                                           "qldb.seal_backlog((SELECT strand_id FROM qldb.ledger))").fetchone()[0]
                        lags.append(0.0 if lag is None else float(lag))
                        time.sleep(0.5)

            watcher = threading.Thread(target=sample_lag)
            watcher.start()
            time.sleep(1.5)  # the sealer started (imports, connection, first round): its CPU from here is sealing
            cpu_before = process_cpu(sealer.pid)
            ticks = cpu_times()
            n = write_mix(dsn, "ledger.accounts", args.writers, args.seconds, seed_docs)
            after = cpu_times()
            ledger_cpu.append((busy_seconds(after) - busy_seconds(ticks)) / max(n, 1))
            ledger_tps.append(n / args.seconds)
            steals += [plain_steal, steal_share(ticks, after)]
            time.sleep(2)
            sampling.set()
            watcher.join()
            sealer_cpu.append((process_cpu(sealer.pid) - cpu_before) / max(n, 1))
            sealer.terminate()
            sealer.wait()
            print(f"round {round_no}: plain {plain_tps[-1]:,.0f} tx/s, ledger {ledger_tps[-1]:,.0f} tx/s, ratio "
                  f"{ledger_tps[-1] / plain_tps[-1]:.2f}; stolen by the hypervisor {steals[-2]:.0%} / {steals[-1]:.0%}",
                  file=sys.stderr)
        ratio = statistics.median(ledger_tps) / statistics.median(plain_tps)
        print(f"plain_tx_per_s={statistics.median(plain_tps):.0f}")
        print(f"ledger_tx_per_s={statistics.median(ledger_tps):.0f}")
        print(f"ledger_write_ratio={ratio:.2f}")
        # each round's ratio (a plain round and the ledger round after it) and their median: a slow spell of the
        # machine moves both rates of a round, which the ratio of the medians does not pair up
        by_round = [lt / pt for lt, pt in zip(ledger_tps, plain_tps, strict=True)]
        print(f"ledger_write_ratio_by_round={','.join(f'{r:.2f}' for r in by_round)} "
              f"(median {statistics.median(by_round):.2f})")
        # above a few percent, the rates are the neighbours' as much as this code's: compare CPU per transaction
        print(f"steal_share_max={max(steals):.2f}")
        print(f"seal_lag_max_s={max(lags):.2f}")
        # the sealer process's CPU per ledger transaction while the writers ran and it caught up (what it takes from
        # the writers on a small machine; its PostgreSQL backend's share is not in it)
        print(f"sealer_cpu_us_per_tx={statistics.median(sealer_cpu) * 1e6:.0f}")
        print(f"seal_lag_last_s={lags[-1]:.2f}")
        # the whole machine's CPU per transaction while each mix ran (this client, PostgreSQL and, in the ledger
        # rounds, the sealer; less steal): where the ratio comes from when the cores are saturated
        print(f"plain_machine_cpu_us_per_tx={statistics.median(plain_cpu) * 1e6:.0f}")
        print(f"ledger_machine_cpu_us_per_tx={statistics.median(ledger_cpu) * 1e6:.0f}")
        # a backlog sealed with nobody writing, against verify on an export of the same size
        write_mix(dsn, "ledger.accounts", args.writers, args.seconds, seed_docs)
        with psycopg.connect(dsn) as conn:
            backlog = conn.execute("SELECT revisions FROM qldb.seal_backlog((SELECT strand_id FROM qldb.ledger))"
                                   ).fetchone()[0]
        started = time.perf_counter()
        cli("seal", "--dsn", dsn, "--state-dir", state)
        seal_rate = backlog / (time.perf_counter() - started)
        export = sample(max(backlog, 20000), 4)
        from qldb_migrate.sources import SourceSpec
        from qldb_migrate.verifier import verify_source

        verified = verify_source(SourceSpec(str(export)), [])
        verify_rate = verified.revisions / verified.seconds
        print(f"seal_revisions_per_s={seal_rate:.0f} (backlog {backlog})")
        print(f"verify_revisions_per_s={verify_rate:.0f}")
        print(f"seal_vs_verify={seal_rate / verify_rate:.2f}")
    finally:
        drop_database(args.dsn, dsn)

    big = fresh_database(args.dsn)
    try:
        export = sample(args.proof_revisions, 1)
        cli("migrate", export, "--dsn", big, "--no-check")
        cli("cutover", "--dsn", big)
        digest = Path(state.parent / f"digest-{uuid.uuid4().hex[:6]}.json")
        cli("digest", "--dsn", big, "--out", digest)
        from qldb_migrate.digests import load_digest_file
        from qldb_migrate.live.serve import get_revision

        saved = load_digest_file(digest)
        times = []
        with psycopg.connect(big) as conn:
            picks = conn.execute("SELECT document_id, version FROM ledger.transactions_history "
                                 "WHERE data_ion IS NOT NULL ORDER BY random() LIMIT %s", (args.proofs,)).fetchall()
            for doc, version in picks:
                started = time.perf_counter()
                get_revision(conn, saved, "Transactions", doc, version)
                times.append((time.perf_counter() - started) * 1000)
        print(f"get_revision_ms={statistics.median(times):.1f} (median of {len(times)}, max {max(times):.1f}, "
              f"{args.proof_revisions} revisions)")
    finally:
        drop_database(args.dsn, big)


if __name__ == "__main__":
    main()
