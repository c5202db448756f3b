"""The migrations build exactly the tables the models describe (on SQLite and PostgreSQL)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from childshield.store.db import Database
from childshield.store.models import Base


def test_migrations_match_the_models(db: Database) -> None:
    with db.engine.connect() as connection:
        diffs = compare_metadata(
            MigrationContext.configure(connection, opts={"compare_type": False}), Base.metadata
        )
    if db.engine.dialect.name == "sqlite":  # SQLite does not report the name of a foreign key it was given
        diffs = [d for d in diffs if not (d[0] in ("remove_fk", "add_fk") and d[1].parent.name == "entries")]
    assert diffs == []
