"""qldb-migrate: QLDB journal exports into PostgreSQL with the proof kept."""

__version__ = "0.1.0"
