"""A busy SQLite database (another connection holding the write lock, as a long ``bank import`` does) never
loses a matched upload's decision, and never answers a bare 500 (issue 15, finding 5); the database
and its WAL files are private to their owner (finding 11)."""

from __future__ import annotations

import sqlite3
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, text
from sqlalchemy.engine import Engine, ExceptionContext

from childshield.accounts.service import create_api_key, create_user
from childshield.hashing.service import hash_bytes
from childshield.store.db import Database, open_database
from childshield.store.models import Role
from childshield.testing.corpus import encode, generated_photo
from childshield.web.app import create_app
from childshield.web.settings import ServiceSettings
from waiting import join, wait_event, wait_until

BUSY_MS = 200
"""SQLite's busy timeout in these tests (10 s in service): each hold below outlasts it several times."""


@pytest.fixture
def sqlite_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("CHILDSHIELD_SQLITE_BUSY_MS", str(BUSY_MS))
    db = open_database(f"sqlite:///{tmp_path / 'service.db'}")
    yield db
    db.close()


def _service(db: Database, patience: float) -> tuple[TestClient, str, bytes]:
    create_user(db, "boss", Role.ADMIN, password="correct horse battery")
    create_user(db, "platform", Role.SERVICE)
    admin, service = create_api_key(db, "boss"), create_api_key(db, "platform")
    settings = ServiceSettings(
        database_url=db.url, refresh_seconds=0, keep_media=False, decision_patience_seconds=patience
    )
    client = TestClient(create_app(settings))
    data = encode(generated_photo(611, 320, 240), "PNG", compress_level=1)
    headers = {"Authorization": f"Bearer {admin}"}
    assert client.post("/v1/banks", json={"name": "known", "policy": {"action": "block"}}, headers=headers)
    sha = hash_bytes(data).sha256
    r = client.post(
        "/v1/banks/known/signals", json={"signals": [{"type": "sha256", "value": sha}]}, headers=headers
    )
    assert r.status_code == 200 and r.json()["added"] == 1, r.text
    return client, service, data


def _decisions(db: Database) -> int:
    with db.engine.connect() as connection:
        return int(connection.execute(text("SELECT count(*) FROM decisions")).scalar_one())


class WriteLock:
    """Another connection holding the write lock (``BEGIN IMMEDIATE``), as a long ``bank import`` did,
    from when it is made until :meth:`free`: held as long as the test needs, whatever the load."""

    def __init__(self, path: str) -> None:
        self.taken, self.released = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._hold, args=(path,), daemon=True)
        self.thread.start()
        wait_event(self.taken, "the other connection to take the write lock")

    def _hold(self, path: str) -> None:
        connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("UPDATE store_meta SET revision = revision")  # a real write in progress
        self.taken.set()
        self.released.wait()
        connection.execute("COMMIT")
        connection.close()

    def free(self) -> None:
        self.released.set()
        join(self.thread, "the other connection to commit")


@contextmanager
def busy_errors() -> Iterator[list[str]]:
    """Every "database is locked" any engine meets meanwhile (each a busy timeout waited out)."""
    seen: list[str] = []

    def on_error(context: ExceptionContext) -> None:
        if "locked" in str(context.original_exception):
            seen.append(str(context.original_exception))

    event.listen(Engine, "handle_error", on_error)
    try:
        yield seen
    finally:
        event.remove(Engine, "handle_error", on_error)


def test_a_decision_waits_for_a_held_write_lock_and_is_recorded_once(sqlite_db: Database) -> None:
    client, service, data = _service(sqlite_db, patience=600)
    with client:
        auth = {"Authorization": f"Bearer {service}"}
        first = client.post("/v1/scan", content=data, headers=auth)  # touches the key: no write later
        assert first.status_code == 200 and first.json()["decision"] == "block"
        assert _decisions(sqlite_db) == 1
        lock = WriteLock(str(sqlite_db.engine.url.database))
        answers: list[httpx.Response] = []
        with busy_errors() as busy:
            scan = threading.Thread(
                target=lambda: answers.append(client.post("/v1/scan", content=data, headers=auth))
            )
            scan.start()
            wait_until(lambda: len(busy) >= 3 or answers, "the scan's decision to find the database locked")
            assert not answers, answers[0].text  # it waits for the lock: no answer while it is held
        lock.free()
        join(scan, "the scan to be answered once the lock is free")
        (r,) = answers
        assert r.status_code == 200, r.text
        assert r.json()["decision"] == "block" and r.json()["matched"]
        with sqlite_db.engine.connect() as connection:
            rows = connection.execute(
                text("SELECT content_id FROM decisions WHERE content_id = :c"), {"c": r.json()["content_id"]}
            ).all()
        assert len(rows) == 1 and _decisions(sqlite_db) == 2


def test_a_decision_that_cannot_be_recorded_says_so_and_is_not_half_written(sqlite_db: Database) -> None:
    client, service, data = _service(sqlite_db, patience=0.5)
    with client:
        auth = {"Authorization": f"Bearer {service}"}
        assert client.post("/v1/scan", content=data, headers=auth).status_code == 200
        lock = WriteLock(str(sqlite_db.engine.url.database))  # held until the scan is answered
        r = client.post("/v1/scan", content=data, headers=auth)
        lock.free()
        assert r.status_code == 503, r.text
        detail = r.json()["detail"]
        assert "matched" in detail and "'block'" in detail and "not be recorded" in detail
        assert r.headers["retry-after"]
        assert _decisions(sqlite_db) == 1  # nothing of the refused one was stored
        again = client.post("/v1/scan", content=data, headers=auth)  # as the answer says: scan it again
        assert again.status_code == 200 and _decisions(sqlite_db) == 2


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_database_and_its_wal_are_private(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "childshield.db"
    db = open_database(f"sqlite:///{path}")
    try:
        with db.session() as session:  # a write: the WAL and shared-memory files exist now
            session.execute(text("UPDATE store_meta SET revision = revision + 1"))
        with db.engine.connect() as connection:
            assert connection.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
        wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
        assert wal.exists() and shm.exists()
        assert (_mode(path), _mode(wal), _mode(shm)) == (0o600, 0o600, 0o600)
        assert _mode(path.parent) == 0o700
    finally:
        db.close()


def test_a_large_import_holds_the_write_lock_only_briefly_and_stays_atomic_and_idempotent(
    sqlite_db: Database,
) -> None:
    import secrets

    from childshield.banks.entries import import_rows
    from childshield.banks.errors import BankNotFound
    from childshield.banks.formats import Parsed, SignalRow
    from childshield.banks.service import create_bank
    from childshield.store.models import SignalType

    create_bank(sqlite_db, "known")
    parsed = Parsed()
    parsed.rows = [SignalRow(k + 1, SignalType.PDQ, secrets.token_hex(32), None, ()) for k in range(60_000)]
    # In order: "import" (the import's engine runs an INSERT: a batch of rows, or the copy into the bank)
    # and "write" (the writer, another connection, committed).
    events: list[str] = []
    done = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:  # a decision's worth of writing, again and again, during the import
        try:
            while not done.is_set():
                with other.session() as session:
                    session.execute(text("UPDATE store_meta SET instance = instance"))
                events.append("write")
                time.sleep(0.005)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    def on_execute(*args: Any) -> None:
        if args[2].lstrip().upper().startswith("INSERT"):
            events.append("import")

    other = open_database(sqlite_db.url, busy_ms=600_000)  # the writer waits as long as it takes
    event.listen(sqlite_db.engine, "before_cursor_execute", on_execute)
    try:
        thread = threading.Thread(target=writer)
        thread.start()
        wait_until(lambda: "write" in events, "the writer's first write")
        report = import_rows(sqlite_db, "known", parsed, source_name="big")
        done.set()
        join(thread, "the writer")
    finally:
        event.remove(sqlite_db.engine, "before_cursor_execute", on_execute)
        other.close()
    assert report.added == 60_000 and report.already_present == 0
    assert not errors, errors
    # Not a time, which load moves: the order.  Holding the lock from its first row to its last (as it
    # did), no write of the writer's could come between the import's first INSERT and its last.
    steps = [k for k, e in enumerate(events) if e == "import"]
    between = events[steps[0] : steps[-1]].count("write")
    assert between >= 1, f"the writer never wrote during the import's {len(steps)} INSERTs"
    again = import_rows(sqlite_db, "known", parsed, source_name="big")
    assert (again.added, again.already_present) == (0, 60_000)
    with pytest.raises(BankNotFound):
        import_rows(sqlite_db, "missing", parsed, source_name="big")
    with sqlite_db.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM entries")).scalar_one() == 60_000
        assert connection.execute(text("SELECT count(DISTINCT revision) FROM entries")).scalar_one() == 1
