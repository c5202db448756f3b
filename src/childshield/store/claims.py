"""Taking the next due row of an outbox (notices, e-mailed reports) for one sender: a conditional
UPDATE, so of two senders one gets it, and on SQLite the write lock first, so the read and the write
meet no other writer in between."""

from __future__ import annotations

import datetime as dt
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, select, update

from childshield.store.db import Database, lock_for_writing

T = TypeVar("T")


def claim_next(db: Database, model: type[T], ready: ColumnElement[bool], **values: Any) -> T | None:
    """The first row (by id) matching ``ready``, updated with ``values`` (committed), detached; None
    when there is none or another sender took it first."""
    table: Any = model
    with db.session() as session:
        lock_for_writing(session, table.__tablename__)
        row_id = session.scalar(select(table.id).where(ready).order_by(table.id).limit(1))
        if row_id is None:
            return None
        taken = session.execute(update(table).where(table.id == row_id, ready).values(**values))
        if not taken.rowcount:  # type: ignore[attr-defined]
            return None
        row = session.get_one(table, row_id)
        session.refresh(row)
        session.expunge(row)
        return row  # type: ignore[no-any-return]


def retry_delay(attempts: int) -> dt.timedelta:
    """How long an outbox row waits after ``attempts`` tries: 30 s doubling, at most an hour."""
    return dt.timedelta(seconds=min(3600, 30 * 2 ** min(attempts, 7)))
