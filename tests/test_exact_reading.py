"""A value amazon-ion's C reader misreads must not make a real ledger look corrupt: it is read again exactly."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

from amazon.ion.core import Timestamp, TimestampPrecision

from tests.conftest import run_cli
from tests.ledgers import doc, revision, write_export

# twelve fraction digits: the C reader reads this text as .000000000, and cuts binary to nine digits
LONG_FRACTION = Timestamp(2015, 5, 12, 23, 59, 59, 123456, dt.UTC, precision=TimestampPrecision.SECOND,
                          fractional_precision=6, fractional_seconds=Decimal("0.123456789012"))


def test_a_timestamp_with_twelve_fraction_digits_verifies_migrates_and_checks(tmp_path: Path, pg_dsn: str) -> None:
    data = doc(measuredAt=LONG_FRACTION, reading=Decimal("1.50"))
    blocks = [([("INSERT INTO Sensors ?", [data])], [revision("docS", 0, data, "Sensors", "SensorsTableId0000001", 1)]),
              ([("INSERT INTO Sensors ?", [doc(x=1)])], [revision("docT", 0, doc(x=1), "Sensors",
                                                                  "SensorsTableId0000001", 2)])]
    digest = write_export(tmp_path / "export", "ExactStrand00000000001", blocks)
    verify = run_cli("verify", tmp_path / "export", "--digest", digest)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "VERIFIED:" in verify.stdout
    migrate = run_cli("migrate", tmp_path / "export", "--dsn", pg_dsn, "--digest", digest)
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    assert "post-load check: VERIFIED" in migrate.stdout
    check = run_cli("check", "--dsn", pg_dsn, "--digest", digest, "--strict")
    assert check.returncode == 0, check.stdout + check.stderr
    import psycopg

    with psycopg.connect(pg_dsn) as conn:
        text = conn.execute("SELECT data->>'measuredAt' FROM ledger.sensors_history WHERE document_id = 'docS'"
                            ).fetchone()[0]
    assert text == "2015-05-12T23:59:59.123456789012Z"  # the JSONB shows the exact value too
