"""Pure cryptographic verification of QLDB journal data: no I/O, no database.

Everything here takes parsed Ion values and returns results that say what was
recomputed, what matched, and what is only a consistency check.
"""
