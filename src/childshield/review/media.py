"""Media kept for review: sealed at rest (AES-GCM, see ``keys``), only as long as it is needed.

Kept media expires ``retention`` after it was queued (``CHILDSHIELD_MEDIA_RETENTION_HOURS``), and at
once when its item is settled as a false match; expired media is deleted by ``purge_expired`` (run by the
service every few minutes and by ``childshield media purge``), each deletion an audit record.  Nothing but
the review queue reads it, and only through ``load``.
"""

from __future__ import annotations

import datetime as dt
import hashlib

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from childshield.audit.log import record
from childshield.errors import NotFound
from childshield.review.keys import Keyring
from childshield.store.db import Database
from childshield.store.models import KeptMedia, ReviewItem, utcnow
from childshield.timefmt import aware as _aware


class MediaGone(NotFound):
    """The media was not kept, or has expired and been deleted."""


def keep(session: Session, keyring: Keyring, content_id: str, data: bytes, retention: dt.timedelta) -> int:
    """Seal ``data`` and store it (in the caller's transaction); returns the kept media's id."""
    key_id, nonce, sealed = keyring.seal(data, content_id)
    now = utcnow()
    row = KeptMedia(
        content_id=content_id,
        created_at=now,
        expires_at=now + retention,
        key_id=key_id,
        nonce=nonce,
        sealed=sealed,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    session.add(row)
    session.flush()
    return row.id


def load(db: Database, keyring: Keyring, media_id: int | None, *, now: dt.datetime | None = None) -> bytes:
    """The media's bytes, unsealed and checked against its SHA-256."""
    if media_id is None:
        raise MediaGone("no media was kept for this item")
    with db.session() as session:
        row = session.get(KeptMedia, media_id)
        if row is None or _aware(row.expires_at) <= (now or utcnow()):
            raise MediaGone("the media has expired and was deleted")
        data = keyring.open(row.key_id, row.nonce, row.sealed, row.content_id)
        if hashlib.sha256(data).hexdigest() != row.sha256:  # pragma: no cover - GCM's tag catches this first
            raise MediaGone("the kept media does not match its recorded hash")
        return data


def expire_now(session: Session, media_id: int | None) -> None:
    """Mark media as no longer needed (a settled false match): the next purge deletes it."""
    if media_id is not None:
        row = session.get(KeptMedia, media_id)
        if row is not None:
            row.expires_at = utcnow()


def purge_expired(db: Database, *, now: dt.datetime | None = None, actor: str = "retention") -> int:
    """Delete every expired media row (with one audit record naming the items); returns how many."""
    now = now or utcnow()
    with db.session() as session:
        rows = session.execute(
            select(KeptMedia.id, KeptMedia.content_id).where(KeptMedia.expires_at <= now)
        ).all()
        if not rows:
            return 0
        ids = [r.id for r in rows]
        items = session.scalars(select(ReviewItem.id).where(ReviewItem.media_id.in_(ids))).all()
        session.execute(delete(KeptMedia).where(KeptMedia.id.in_(ids)))
        record(
            session,
            actor,
            "media.purge",
            f"media:{len(ids)}",
            {"content_ids": [r.content_id for r in rows][:1000], "items": list(items)[:1000]},
        )
        return len(ids)


def reseal(db: Database, keyring: Keyring, *, actor: str = "admin") -> int:
    """Re-seal every kept media not sealed with the current key (after ``rotate``); returns how many."""
    count = 0
    with db.session() as session:
        rows = session.scalars(select(KeptMedia).where(KeptMedia.key_id != keyring.current)).all()
        for row in rows:
            data = keyring.open(row.key_id, row.nonce, row.sealed, row.content_id)
            row.key_id, row.nonce, row.sealed = keyring.seal(data, row.content_id)
            count += 1
        if count:
            record(session, actor, "media.reseal", f"media:{count}", {"key_id": keyring.current})
    return count
