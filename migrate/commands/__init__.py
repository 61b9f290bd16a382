"""The command line, one module per group of commands; ``qldb_migrate.cli`` assembles them."""
