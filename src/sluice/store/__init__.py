"""Keys, the request log and the spend ledger: SQLite (default) and PostgreSQL backends."""
