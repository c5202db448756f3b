"""Every action that matters (a decision, a reveal, a bank change, a sign-in) is one audit record, written
in the same transaction as the action itself, so neither exists without the other.

Records are hash-chained: each record's hash covers its own fields and the previous record's hash, so
changing, removing or re-ordering any record breaks the chain from there on, which :func:`verify_chain`
(``childshield audit verify``) reports.  The chain's head (last sequence number and hash) is one row that
every writer updates first: that serialises writers on SQLite and PostgreSQL alike, so the chain never
forks.  A verifier that keeps the head's hash elsewhere (printed by ``audit verify``) also detects the
removal of records from the end.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from childshield.errors import ChildshieldError
from childshield.store.db import Database
from childshield.store.models import AuditEvent, AuditHead, utcnow

GENESIS = "0" * 64


class ChainBroken(ChildshieldError):
    def __init__(self, seq: int, reason: str) -> None:
        super().__init__(f"audit log broken at record {seq}: {reason}")
        self.seq = seq
        self.reason = reason


@dataclass(frozen=True, slots=True)
class AuditRecord:
    seq: int
    at: dt.datetime
    actor: str
    action: str
    subject: str
    details: Mapping[str, Any]
    prev_hash: str
    hash: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "subject": self.subject,
            "details": dict(self.details),
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


def _digest(
    seq: int, at: dt.datetime, actor: str, action: str, subject: str, details: Mapping[str, Any], prev: str
) -> str:
    when = at.astimezone(dt.UTC).replace(tzinfo=None) if at.tzinfo else at
    body = json.dumps(
        [seq, when.isoformat(timespec="microseconds"), actor, action, subject, details, prev],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(body.encode()).hexdigest()


def record(
    session: Session,
    actor: str,
    action: str,
    subject: str = "",
    details: Mapping[str, Any] | None = None,
    *,
    at: dt.datetime | None = None,
) -> AuditRecord:
    """Append a record in ``session``'s transaction (it commits or rolls back with the action)."""
    details = dict(details or {})
    json.dumps(details)  # only JSON values: fail here, not at commit
    when = (at or utcnow()).astimezone(dt.UTC)
    # The UPDATE takes the head's row lock (PostgreSQL) or the database's write lock (SQLite) first.
    seq, prev = session.execute(
        update(AuditHead)
        .where(AuditHead.id == 1)
        .values(seq=AuditHead.seq + 1)
        .returning(AuditHead.seq, AuditHead.hash)
    ).one()
    digest = _digest(seq, when, actor, action, subject, details, prev)
    session.execute(update(AuditHead).where(AuditHead.id == 1).values(hash=digest))
    session.add(
        AuditEvent(
            seq=seq,
            at=when,
            actor=actor,
            action=action,
            subject=subject,
            details=details,
            prev_hash=prev,
            hash=digest,
        )
    )
    session.flush()
    return AuditRecord(seq, when, actor, action, subject, details, prev, digest)


def records(db: Database, *, since: int = 0, batch: int = 1000) -> Iterator[AuditRecord]:
    """Every record from ``since`` on, in order, read in batches."""
    last = since
    while True:
        with db.session() as session:
            rows = session.scalars(
                select(AuditEvent).where(AuditEvent.seq > last).order_by(AuditEvent.seq).limit(batch)
            ).all()
        if not rows:
            return
        for r in rows:
            yield AuditRecord(r.seq, r.at, r.actor, r.action, r.subject, r.details, r.prev_hash, r.hash)
        last = rows[-1].seq


def verify_chain(db: Database) -> tuple[int, str]:
    """Check every record and the head; (records, head hash).  Raises :class:`ChainBroken`."""
    prev, expected, count = GENESIS, 1, 0
    for r in records(db):
        if r.seq != expected:
            raise ChainBroken(expected, f"record {expected} is missing (next is {r.seq})")
        if r.prev_hash != prev:
            raise ChainBroken(r.seq, "it does not follow the record before it")
        if _digest(r.seq, r.at, r.actor, r.action, r.subject, r.details, r.prev_hash) != r.hash:
            raise ChainBroken(r.seq, "its contents do not match its hash")
        prev, expected, count = r.hash, expected + 1, count + 1
    with db.session() as session:
        head = session.get(AuditHead, 1)
        if head is None:
            raise ChainBroken(0, "the head row is missing")
        if head.seq != count or head.hash != prev:
            raise ChainBroken(count + 1, f"the head says {head.seq} records, the log holds {count}")
    return count, prev
