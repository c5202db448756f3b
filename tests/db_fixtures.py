"""Databases for tests: SQLite in a temporary folder, and PostgreSQL when a server is reachable.

PostgreSQL tests use a fresh database per test module, created on the server at
``$CHILDSHIELD_TEST_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``) and dropped
afterwards; without a server they are skipped with the reason.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from childshield.store.db import Database, open_database

ADMIN_URL = os.environ.get("CHILDSHIELD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _postgres_admin() -> object | None:
    try:
        import psycopg
    except ImportError:
        return None
    url = make_url(ADMIN_URL)
    try:
        return psycopg.connect(
            host=url.host,
            port=url.port or 5432,
            user=url.username,
            password=url.password,
            dbname=url.database or "postgres",
            autocommit=True,
            connect_timeout=3,
        )
    except Exception:
        return None


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """An empty, migrated database of each supported kind."""
    if request.param == "sqlite":
        database = open_database(f"sqlite:///{tmp_path / 'test.db'}")
        yield database
        database.close()
        return
    admin = _postgres_admin()
    if admin is None:
        pytest.skip(f"PostgreSQL not reachable at {ADMIN_URL} (set CHILDSHIELD_TEST_POSTGRES_URL)")
    name = f"childshield_test_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE DATABASE "{name}"')  # type: ignore[attr-defined]
    url = make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    database = open_database(url)
    try:
        yield database
    finally:
        database.close()
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[attr-defined]
        admin.close()  # type: ignore[attr-defined]
