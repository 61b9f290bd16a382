"""Faithful sample QLDB journal exports (the `sample-export` command)."""
