"""The store's revision counter: every change to banks or entries takes the next revision.

Writers call :func:`bump` inside their transaction.  The counter is one row, so concurrent writers queue on
it and commit in revision order: a reader that sees revision R has seen every change up to R.  Each entry
written records the revision, so a reader that holds a snapshot at R catches up by reading entries with a
higher revision.  Changes that delete entries (deleting a bank) also move ``reset_revision``: snapshots
older than it are rebuilt.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, select, update
from sqlalchemy.orm import Session

from childshield.store.models import StoreMeta


@dataclass(frozen=True, slots=True)
class StoreState:
    instance: str
    """Set once when the database is created: a snapshot of another database is never mistaken for ours."""
    revision: int
    reset_revision: int


def bump(session: Session, *, reset: bool = False) -> int:
    """Take the next revision for this transaction's changes; ``reset`` when entries are deleted."""
    values: dict[str, object] = {"revision": StoreMeta.revision + 1}
    if reset:
        values["reset_revision"] = StoreMeta.revision + 1
    stmt = update(StoreMeta).where(StoreMeta.id == 1).values(values).returning(StoreMeta.revision)
    return int(session.execute(stmt).scalar_one())


_READ = select(StoreMeta.instance, StoreMeta.revision, StoreMeta.reset_revision).where(StoreMeta.id == 1)


def read_state(session: Session | Connection) -> StoreState:
    row = session.execute(_READ).one()
    return StoreState(str(row.instance), int(row.revision), int(row.reset_revision))
