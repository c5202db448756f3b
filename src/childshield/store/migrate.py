"""Alembic migrations, run programmatically: every open brings the schema to the latest revision.

A database already at the head is told from one query and the migration files' ``revision`` lines,
without importing Alembic (a fifth of a second of every command's start, docs/benchmarks.md).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
_QUOTED = re.compile(r"([\"'])[\w-]+\1")
_REVISION = re.compile(r"^(down_revision|revision)\s*(?::[^=]*)?=\s*(.+?)\s*$", re.MULTILINE)


def alembic_config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def quick_head() -> str | None:
    """The head revision read from the migration files' ``revision = "..."`` and ``down_revision = ...``
    lines, or None when they do not make one plain chain (then Alembic itself decides)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        found = dict(_REVISION.findall(path.read_text(encoding="utf-8")))
        if "revision" not in found:
            continue
        revision, parent = found["revision"], found.get("down_revision", "None")
        if not _QUOTED.fullmatch(revision) or not (parent == "None" or _QUOTED.fullmatch(parent)):
            return None  # a merge (a tuple of parents) or anything unusual
        revisions.add(revision[1:-1])
        if parent != "None":
            parents.add(parent[1:-1])
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _quick_current(engine: Engine) -> str | None:
    """The database's revision from ``alembic_version`` (None if it has none, or no such table)."""
    try:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    except DBAPIError:
        return None
    return str(rows[0]) if len(rows) == 1 else None


def upgrade(engine: Engine) -> None:
    head = quick_head()
    if head is not None and _quick_current(engine) == head:
        return  # at the head: no Alembic needed
    if current_revision(engine) == head_revision():
        return
    from alembic import command

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
