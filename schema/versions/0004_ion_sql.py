"""SQL helpers for Ion values in the ``data`` JSONB columns.

The JSONB is the canonical conversion of ``qldb_migrate/pg/jsoncanon.py``;
what a query needs to read each Ion type back:

* timestamp -> its exact Ion text, e.g. ``"2015-05-12T10:11:12.123456789+05:45"``.
  ``qldb.ion_timestamp(data->>'t')`` gives the instant as ``timestamptz``:
  every precision (``2015T``, ``2015-05T``, ``2015-05-12`` / ``2015-05-12T``,
  minutes, seconds, any number of fraction digits); a timestamp with no time
  of day, and the unknown offset ``-00:00``, are read as UTC, so
  ``qldb.ion_timestamp('2015-05-12T') = '2015-05-12 00:00:00+00'``; fraction
  digits beyond microseconds are truncated, as amazon-ion's Python reader
  does.  Anything else raises an error naming the value (SQLSTATE 22007, or
  22008 for a day its month does not have).  IMMUTABLE, so it can back an
  expression index: ``CREATE INDEX ON ledger.t (qldb.ion_timestamp(data->>'t'))``.
  ``qldb.ion_date(data->>'t')`` is the UTC date of the same instant.  Both
  are STRICT (JSON null or a missing field gives NULL) and PARALLEL SAFE.
  The precision and the local offset are not in the ``timestamptz``; they
  stay in the text (and exactly in ``data_ion``).  PL/pgSQL, about 10 µs a
  call (PostgreSQL 15, one core): index the expression to filter often.
* decimal, int -> JSON number: ``(data->>'x')::numeric`` (or ``::bigint``) is
  exact.  A decimal beyond numeric's range is its Ion text as a string and
  does not cast.
* float -> JSON number, or ``"nan"``, ``"+inf"``, ``"-inf"``:
  ``(data->>'x')::float8`` reads all of them.
* blob, clob -> standard base64 with padding: ``decode(data->>'b', 'base64')``.
* symbol, string -> JSON string (the two are not told apart); bool -> bool;
  every null -> null; list, sexp -> array; struct -> object.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        r"""
        CREATE FUNCTION qldb.ion_timestamp(value text) RETURNS timestamptz
        LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
        DECLARE
            n int := length(value);
            y int; mo int := 1; d int := 1; h int := 0; mi int := 0; s int := 0; micros int := 0;
            zone text; offset_minutes int := 0; month_days int;
        BEGIN
            -- Ion text timestamps (Ion specification, "Timestamps"): YYYYT, YYYY-MMT, YYYY-MM-DD or
            -- YYYY-MM-DDT, or a date, T, hh:mm, optional seconds with optional fraction digits, and an
            -- offset Z, +hh:mm or -hh:mm; upper-case T and Z only.  The shape is checked by one regular
            -- expression without capturing groups (PostgreSQL matches those many times faster), and the
            -- fields are then at fixed places.  [0-9], not \d, which may match other scripts' digits under
            -- some locales; [T] and [Z] after (?: because Alembic runs this through SQLAlchemy's text(),
            -- which would take a colon and a letter for a bind parameter.
            IF value !~ ('^[0-9]{4}(?:[T]|-[0-9]{2}(?:[T]|-[0-9]{2}(?:[T](?:[0-9]{2}:[0-9]{2}'
                         '(?::[0-9]{2}(?:\.[0-9]+)?)?(?:[Z]|[+-][0-9]{2}:[0-9]{2}))?)?))$') THEN
                RAISE EXCEPTION 'not an Ion timestamp: %', quote_literal(left(value, 200))
                    USING ERRCODE = 'invalid_datetime_format';
            END IF;
            y := substr(value, 1, 4)::int;
            IF n > 5 THEN mo := substr(value, 6, 2)::int; END IF;     -- YYYY-MMT and longer
            IF n > 8 THEN d := substr(value, 9, 2)::int; END IF;      -- YYYY-MM-DD and longer
            IF n > 11 THEN                                            -- YYYY-MM-DDThh:mm...
                h := substr(value, 12, 2)::int;
                mi := substr(value, 15, 2)::int;
                zone := CASE WHEN right(value, 1) = 'Z' THEN 'Z' ELSE right(value, 6) END;
                IF substr(value, 17, 1) = ':' THEN
                    s := substr(value, 18, 2)::int;
                    IF n - length(zone) > 20 THEN
                        -- Fraction digits beyond microseconds are truncated (timestamptz holds microseconds).
                        micros := rpad(substr(value, 21, least(6, n - length(zone) - 20)), 6, '0')::int;
                    END IF;
                END IF;
                IF zone <> 'Z' THEN
                    IF substr(zone, 2, 2)::int > 23 OR substr(zone, 5, 2)::int > 59 THEN
                        RAISE EXCEPTION 'not an Ion timestamp (offset out of range): %',
                            quote_literal(left(value, 200)) USING ERRCODE = 'invalid_datetime_format';
                    END IF;
                    -- -00:00 is Ion's unknown offset: read as UTC, like Z and +00:00
                    offset_minutes := (substr(zone, 2, 2)::int * 60 + substr(zone, 5, 2)::int)
                                      * CASE WHEN left(zone, 1) = '-' THEN -1 ELSE 1 END;
                END IF;
            END IF;
            IF y < 1 OR mo NOT BETWEEN 1 AND 12 OR d < 1 OR h > 23 OR mi > 59 OR s > 59 THEN
                RAISE EXCEPTION 'not an Ion timestamp (field out of range): %', quote_literal(left(value, 200))
                    USING ERRCODE = 'invalid_datetime_format';
            END IF;
            -- Checked here rather than caught from make_timestamp: an EXCEPTION block would start a
            -- subtransaction, which costs and is not allowed in parallel workers.
            month_days := CASE WHEN mo = 2 THEN
                              CASE WHEN (y % 4 = 0 AND y % 100 <> 0) OR y % 400 = 0 THEN 29 ELSE 28 END
                          WHEN mo IN (4, 6, 9, 11) THEN 30 ELSE 31 END;
            IF d > month_days THEN
                RAISE EXCEPTION 'not an Ion timestamp (no such day): %', quote_literal(left(value, 200))
                    USING ERRCODE = 'datetime_field_overflow';
            END IF;
            -- Whole microseconds as an integer count: no binary floating point on the way.  A timestamp
            -- AT TIME ZONE an interval reads it as local time at that UTC offset (east positive).
            RETURN (make_timestamp(y, mo, d, h, mi, 0) + (s * 1000000 + micros) * interval '1 microsecond')
                   AT TIME ZONE make_interval(mins => offset_minutes);
        END $$;

        COMMENT ON FUNCTION qldb.ion_timestamp(text) IS
            'The instant of an Ion text timestamp (as the data JSONB holds timestamps); no time of day and '
            'the unknown offset -00:00 read as UTC; fraction digits beyond microseconds truncated.';

        CREATE FUNCTION qldb.ion_date(value text) RETURNS date
        LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
        AS $$ SELECT (qldb.ion_timestamp(value) AT TIME ZONE 'UTC')::date $$;

        COMMENT ON FUNCTION qldb.ion_date(text) IS 'The UTC date of an Ion text timestamp (qldb.ion_timestamp).';
        """
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION qldb.ion_date(text), qldb.ion_timestamp(text)")
