"""Storage: SQLAlchemy models, Alembic migrations, engine and session setup (SQLite default, PostgreSQL)."""

from childshield.store.db import Database, default_database_url, open_database

__all__ = ["Database", "default_database_url", "open_database"]
