"""Engine and session setup.  SQLite (WAL) is the embedded default; PostgreSQL is supported."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from childshield.errors import NotFound

ENV_VAR = "CHILDSHIELD_DATABASE_URL"
BUSY_ENV_VAR = "CHILDSHIELD_SQLITE_BUSY_MS"
"""How long (milliseconds) a SQLite statement waits for another connection's write lock (default 10 s)."""
T = TypeVar("T")


def data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "childshield"


def default_database_url() -> str:
    """``$CHILDSHIELD_DATABASE_URL``, else SQLite at ``$XDG_DATA_HOME/childshield/childshield.db``."""
    env = os.environ.get(ENV_VAR)
    if env:
        return env
    return f"sqlite:///{data_dir() / 'childshield.db'}"


def _sqlite_pragmas(busy_ms: int) -> Callable[[Any, Any], None]:
    def connected(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; WAL keeps it consistent
        cursor.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
        cursor.close()

    return connected


def _create_private(path: Path) -> None:
    """Create the database file owner-only (0600) before SQLite opens it: SQLite gives its -wal and -shm
    files the main file's mode, so they are private too.  An existing file is left as it is (its owner
    chose its mode)."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    os.close(fd)
    os.chmod(path, 0o600)  # whatever the umask


class DatabaseMissing(NotFound, LookupError):
    """The database named does not exist (and was not to be created): the message names it.

    A ``LookupError`` too, as callers catch it."""


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None for other databases, in-memory and ``file:`` URIs)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    if not parsed.database or parsed.database == ":memory:" or parsed.database.startswith("file:"):
        return None
    return Path(parsed.database).expanduser()


def _normalized(url: str) -> str:
    """``postgres://`` (as Heroku, libpq and many hosts write it) is PostgreSQL."""
    if url.startswith("postgres://"):
        return "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgres+"):
        return "postgresql+" + url[len("postgres+") :]
    return url


def make_engine(url: str, *, busy_ms: int | None = None) -> Engine:
    url = _normalized(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = sqlite_path(url)
        if path is not None:
            _create_private(path)
        engine = create_engine(url)
        if busy_ms is None:
            busy_ms = int(os.environ.get(BUSY_ENV_VAR) or 10_000)
        event.listen(engine, "connect", _sqlite_pragmas(busy_ms))
        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)  # psycopg 3
    try:
        return create_engine(url, pool_pre_ping=True)
    except ImportError as exc:
        if parsed.get_backend_name() == "postgresql":
            raise ImportError(
                f"PostgreSQL needs its driver ({exc.name or exc}): pip install 'childshield[postgres]'"
            ) from None
        raise


def is_busy(exc: BaseException) -> bool:
    """A transaction refused for another's lock, and worth trying again whole: SQLite's "database is
    locked" / "busy" (its busy timeout ran out), PostgreSQL's deadlock, serialization failure or lock
    timeout."""
    if not isinstance(exc, DBAPIError):
        return False
    code = getattr(exc.orig, "sqlstate", None)
    if code in ("40001", "40P01", "55P03"):
        return True
    message = str(exc.orig).lower()
    return (
        "database is locked" in message
        or "database is busy" in message
        or "database table is locked" in message
    )


def retry_busy(work: Callable[[], T], *, patience: float, first_wait: float = 0.05) -> T:
    """Run ``work`` (one whole transaction), trying it again with backoff while the database is busy,
    until ``patience`` seconds have passed; then the last error is raised."""
    deadline = time.monotonic() + patience
    wait = first_wait
    while True:
        try:
            return work()
        except DBAPIError as exc:
            left = deadline - time.monotonic()
            if not is_busy(exc) or left <= 0:
                raise
        time.sleep(min(left, wait * (0.5 + random.random())))  # jitter: waiting writers do not collide
        wait = min(wait * 2, 2.0)


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


def open_database(
    url: str | None = None, *, migrate: bool = True, busy_ms: int | None = None, create: bool = True
) -> Database:
    """Open (and migrate) the database; ``busy_ms``: SQLite's busy timeout (``$CHILDSHIELD_SQLITE_BUSY_MS``,
    default 10 s).  ``create=False``: a SQLite file that does not exist is :class:`DatabaseMissing`, not a
    new empty database (a mistyped path must never scan clean)."""
    from childshield.store.migrate import upgrade

    url = _normalized(url or default_database_url())
    path = sqlite_path(url)
    if not create and path is not None and not path.exists():
        raise DatabaseMissing(f"there is no database at {path}")
    engine = make_engine(url, busy_ms=busy_ms)
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
