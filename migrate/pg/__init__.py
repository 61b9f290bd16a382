"""The PostgreSQL side: targets, names, schema, loader."""
