"""Alembic environment and versions for the PostgreSQL side (package data)."""
