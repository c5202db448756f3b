"""Preserving, opening, holding and deleting evidence; every step an audit record (chain of custody).

* ``preserve_confirmed`` takes every item confirmed by review into the vault: its media (while the review
  queue still keeps it) re-sealed with AES-GCM under the media keys (``review.keys``: outside the
  database, rotatable), bound to the evidence's content id, and its metadata (decision, matches,
  verdicts, context), kept ``retention`` (default 365 days, the US REPORT Act's preservation period).
* ``open_evidence`` is the only way to the media, and records who opened it and why.
* ``hold`` / ``release``: a legal hold keeps evidence past its retention.
* ``expire`` deletes media and metadata past retention and not held; the row stays as a tombstone
  (hashes, when and why it was deleted).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from childshield.audit.log import record
from childshield.errors import Conflict, Invalid, NotFound
from childshield.review.keys import Keyring
from childshield.store.db import Database
from childshield.store.models import (
    Decision,
    Evidence,
    KeptMedia,
    Review,
    ReviewItem,
    ReviewSighting,
    ReviewState,
    User,
    utcnow,
)

RETENTION = dt.timedelta(days=365)


class VaultError(Invalid):
    """Evidence that cannot be had (unknown, deleted, no media kept): the message says which."""


class EvidenceNotFound(NotFound, VaultError):
    """No evidence of that id, or none of its media was kept."""


class EvidenceDeleted(Conflict, VaultError):
    """The evidence was deleted (past retention, or by a custodian): only its tombstone is left."""


@dataclass(frozen=True)
class Opened:
    evidence_id: int
    content_id: str
    data: bytes
    details: dict[str, Any]


def _aad(content_id: str) -> str:
    return f"evidence:{content_id}"


def preserve_confirmed(
    db: Database, keyring: Keyring, *, retention: dt.timedelta = RETENTION, now: dt.datetime | None = None
) -> int:
    """Take every confirmed, not yet preserved review item into the vault; returns how many."""
    now = now or utcnow()
    done = 0
    with db.session() as session:
        taken = select(Evidence.item_id).where(Evidence.item_id.is_not(None))
        ids = session.scalars(
            select(ReviewItem.id).where(
                ReviewItem.state == ReviewState.CONFIRMED, ReviewItem.id.not_in(taken)
            )
        ).all()
    for item_id in ids:
        with db.session() as session:
            item = session.get_one(ReviewItem, item_id)
            decision = session.get_one(Decision, item.decision_id)
            votes = session.execute(
                select(Review, User.name)
                .join(User, User.id == Review.user_id)
                .where(Review.item_id == item_id)
            ).all()
            seen = session.execute(  # every time the content was seen while queued, with its context
                select(ReviewSighting.at, Decision)
                .join(Decision, Decision.id == ReviewSighting.decision_id)
                .where(ReviewSighting.item_id == item_id)
                .order_by(ReviewSighting.id)
            ).all()
            data = None
            kept = session.get(KeptMedia, item.media_id) if item.media_id is not None else None
            if kept is not None:
                data = keyring.open(kept.key_id, kept.nonce, kept.sealed, kept.content_id)
            details = {
                "decision": decision.decision,
                "decided_at": decision.at.isoformat(),
                "policy_version": decision.policy_version,
                "source": decision.source,
                "submitted_by": decision.actor,
                "matches": decision.matches,
                "context": decision.context,
                "reviews": [
                    {
                        "reviewer": name,
                        "verdict": r.verdict,
                        "classification": r.classification,
                        "ruling": r.ruling,
                        "at": r.at.isoformat(),
                    }
                    for r, name in votes
                ],
                "sightings": [
                    {
                        "content_id": d.content_id,
                        "at": at.isoformat(),
                        "submitted_by": d.actor,
                        "source": d.source,
                        "context": d.context,
                    }
                    for at, d in seen
                ],
                "media_sha256": hashlib.sha256(data).hexdigest() if data is not None else None,
                "media_md5": hashlib.md5(data).hexdigest() if data is not None else None,
            }
            row = Evidence(
                item_id=item_id,
                content_id=item.content_id,
                sha256=decision.sha256,
                pdq=decision.pdq,
                classification=item.classification,
                preserved_at=now,
                retain_until=now + retention,
                details=details,
            )
            if data is not None:
                row.key_id, row.nonce, row.sealed = keyring.seal(data, _aad(item.content_id))
                row.size = len(data)
            session.add(row)
            session.flush()
            record(
                session,
                "vault",
                "evidence.preserve",
                f"evidence:{row.id}",
                {"item": item_id, "content_id": item.content_id, "media": data is not None},
            )
            done += 1
    return done


def open_evidence(
    db: Database,
    keyring: Keyring,
    evidence_id: int,
    *,
    actor: str,
    purpose: str,
    media_required: bool = True,
) -> Opened:
    """The media and metadata of one piece of evidence; the access is recorded before it is returned.
    Without ``media_required``, evidence whose media was not kept opens with empty ``data``."""
    if not purpose.strip():
        raise VaultError("say why the evidence is opened (it is recorded)")
    with db.session() as session:
        row = session.get(Evidence, evidence_id)
        if row is None:
            raise EvidenceNotFound(f"no evidence {evidence_id}")
        if row.deleted_at is not None:
            raise EvidenceDeleted(f"evidence {evidence_id} was deleted ({row.deleted_reason})")
        if row.sealed is None or row.nonce is None or row.key_id is None:
            if media_required:
                raise EvidenceNotFound(f"no media was kept for evidence {evidence_id}")
            data = b""
        else:
            data = keyring.open(row.key_id, row.nonce, row.sealed, _aad(row.content_id))
        record(session, actor, "evidence.access", f"evidence:{evidence_id}", {"purpose": purpose[:500]})
        return Opened(row.id, row.content_id, data, dict(row.details or {}))


def hold(db: Database, evidence_id: int, reason: str, *, actor: str) -> None:
    """A legal hold: kept past its retention until released."""
    if not reason.strip():
        raise VaultError("a legal hold needs a reason (a case or order reference)")
    with db.session() as session:
        row = _live(session.get(Evidence, evidence_id), evidence_id)
        row.hold = reason.strip()[:2000]
        record(session, actor, "evidence.hold", f"evidence:{evidence_id}", {"reason": row.hold})


def release(db: Database, evidence_id: int, *, actor: str) -> None:
    with db.session() as session:
        row = _live(session.get(Evidence, evidence_id), evidence_id)
        previous, row.hold = row.hold, ""
        record(session, actor, "evidence.release", f"evidence:{evidence_id}", {"was": previous})


def _live(row: Evidence | None, evidence_id: int) -> Evidence:
    if row is None:
        raise EvidenceNotFound(f"no evidence {evidence_id}")
    if row.deleted_at is not None:
        raise EvidenceDeleted(f"evidence {evidence_id} was deleted ({row.deleted_reason})")
    return row


def expire(db: Database, *, now: dt.datetime | None = None, actor: str = "retention") -> int:
    """Delete the media and metadata of evidence past retention and not on hold; returns how many."""
    now = now or utcnow()
    with db.session() as session:
        rows = session.scalars(
            select(Evidence).where(
                Evidence.retain_until <= now, Evidence.deleted_at.is_(None), Evidence.hold == ""
            )
        ).all()
        for row in rows:
            row.sealed = row.nonce = None
            row.key_id = None
            row.details = None
            row.deleted_at = now
            row.deleted_reason = "retention period over"
            record(session, actor, "evidence.delete", f"evidence:{row.id}", {"sha256": row.sha256})
        return len(rows)


def listing(db: Database) -> list[dict[str, Any]]:
    with db.session() as session:
        return [
            {
                "id": r.id,
                "content_id": r.content_id,
                "sha256": r.sha256,
                "classification": r.classification,
                "preserved_at": r.preserved_at.isoformat(),
                "retain_until": r.retain_until.isoformat(),
                "hold": r.hold,
                "media": r.sealed is not None,
                "deleted_at": r.deleted_at.isoformat() if r.deleted_at else None,
            }
            for r in session.scalars(select(Evidence).order_by(Evidence.id)).all()
        ]
