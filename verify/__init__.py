"""Pure cryptographic verification of QLDB journal data: no I/O, no database.

Everything here takes parsed Ion values and returns results that say what was
recomputed, what matched, and what is only a consistency check.
"""

import sys as _sys

#: Ion ints have no size limit, and a QLDB document (128 KB of Ion binary) can hold one of about 315,000 digits.
#: Python converts at most 4,300 digits between text and int by default (a guard against quadratic time on
#: hostile input): the bound is raised to what a QLDB document can hold, and no further.
MAX_INT_DIGITS = 320_000
if 0 < _sys.get_int_max_str_digits() < MAX_INT_DIGITS:
    _sys.set_int_max_str_digits(MAX_INT_DIGITS)
