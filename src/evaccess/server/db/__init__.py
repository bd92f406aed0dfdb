"""Storage: SQLAlchemy 2 async models and Alembic migrations (SQLite and PostgreSQL)."""
