"""Engine and session setup.  SQLite (WAL) is the embedded default; PostgreSQL is supported."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

ENV_VAR = "CHILDSHIELD_DATABASE_URL"


def data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "childshield"


def default_database_url() -> str:
    """``$CHILDSHIELD_DATABASE_URL``, else SQLite at ``$XDG_DATA_HOME/childshield/childshield.db``."""
    env = os.environ.get(ENV_VAR)
    if env:
        return env
    return f"sqlite:///{data_dir() / 'childshield.db'}"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; WAL keeps it consistent
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        url = str(parsed.set(drivername="postgresql+psycopg"))  # psycopg 3 unless another driver is named
    return create_engine(url, pool_pre_ping=True)


@dataclass
class Database:
    """An open database: engine, session factory, schema at the latest migration."""

    url: str
    engine: Engine
    sessions: sessionmaker[Session]

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on error."""
        with self.sessions.begin() as session:
            yield session

    def close(self) -> None:
        self.engine.dispose()


def open_database(url: str | None = None, *, migrate: bool = True) -> Database:
    from childshield.store.migrate import upgrade

    url = url or default_database_url()
    engine = make_engine(url)
    if migrate:
        upgrade(engine)
    return Database(url, engine, sessionmaker(engine, expire_on_commit=False))


def upsert_insert(session: Session) -> Any:
    """The dialect's ``insert`` construct (PostgreSQL's or SQLite's), which has ``on_conflict_do_*``."""
    from sqlalchemy.dialects.postgresql import insert as pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


def is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def lock_for_writing(session: Session, table: str) -> None:
    """On SQLite, take the database's write lock now (a no-op write), before the transaction reads: a
    read-then-write transaction could otherwise meet another writer's commit in between.  PostgreSQL
    locks rows instead (``FOR UPDATE``), so nothing is done there."""
    from sqlalchemy import text

    if not is_postgres(session):
        session.execute(text(f"UPDATE {table} SET rowid = rowid WHERE 0"))


def one_at_a_time(session: Session, name: str, table: str) -> None:
    """Serialise the transactions that call this with the same ``name`` until they end (for work with
    no row to lock yet, e.g. deciding what to add): a transaction-scoped advisory lock on PostgreSQL,
    the database's write lock (on ``table``) on SQLite."""
    from sqlalchemy import text

    if is_postgres(session):
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": name})
    else:
        lock_for_writing(session, table)
