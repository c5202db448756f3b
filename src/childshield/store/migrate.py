"""Alembic migrations, run programmatically: every open brings the schema to the latest revision."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def upgrade(engine: Engine) -> None:
    if current_revision(engine) == head_revision():
        return
    config = alembic_config()
    with engine.begin() as connection:
        if engine.dialect.name == "sqlite":
            # Python's sqlite3 opens no transaction before DDL, so each statement would commit on its
            # own and a crash mid-migration would leave a half-rebuilt table.  One explicit transaction
            # makes the whole upgrade atomic (SQLite's DDL is transactional), and IMMEDIATE takes the
            # write lock first, so two processes opening a new database migrate one after the other.
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
