"""Signed-in browser sessions, kept in the database (so every worker knows them and signing out ends them).

The cookie holds a 256-bit random token; the table holds its SHA-256, the session's CSRF token, and the
reviewer's wellness state (items reviewed, last break, chosen blur).  Sessions end after
``idle`` without a request and ``lifetime`` after sign-in, whichever comes first.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, update

from childshield.accounts.service import Principal
from childshield.audit.log import record
from childshield.store.db import Database
from childshield.store.models import Role, User, WebSession, utcnow
from childshield.timefmt import aware as _aware

MIN_BLUR, MAX_BLUR, DEFAULT_BLUR = 4, 64, 24


@dataclass(frozen=True)
class SignedIn:
    who: Principal
    session_id: str
    """The SHA-256 of the cookie's token (what reveals are recorded against)."""
    csrf: str
    reviewed: int
    since_break: int
    break_at: dt.datetime
    blur: int


def _id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start(db: Database, who: Principal, *, address: str = "") -> str:
    """A new session for ``who``; returns the cookie's token (shown only here)."""
    token = secrets.token_urlsafe(32)
    with db.session() as session:
        session.add(WebSession(id=_id(token), user_id=who.user_id, csrf=secrets.token_urlsafe(32)))
        record(session, who.name, "login", f"user:{who.name}", {"address": address})
    return token


def lookup(
    db: Database, token: str, *, idle: dt.timedelta, lifetime: dt.timedelta, now: dt.datetime | None = None
) -> SignedIn | None:
    """The session of ``token`` if it is live and its account enabled (and a person's); refreshes it."""
    if not token or len(token) > 100:
        return None
    now = now or utcnow()
    with db.session() as session:
        row = session.execute(
            select(WebSession, User)
            .join(User, User.id == WebSession.user_id)
            .where(WebSession.id == _id(token))
        ).first()
        if row is None:
            return None
        ws, user = row
        if (
            user.disabled
            or user.role is Role.SERVICE
            or _aware(ws.seen_at) + idle <= now
            or _aware(ws.created_at) + lifetime <= now
        ):
            session.delete(ws)
            return None
        if now - _aware(ws.seen_at) > dt.timedelta(seconds=30):
            ws.seen_at = now  # coarse, so every request does not write
        return SignedIn(
            Principal(user.id, user.name, user.role),
            ws.id,
            ws.csrf,
            ws.reviewed,
            ws.since_break,
            _aware(ws.break_at),
            ws.blur,
        )


def end(db: Database, signed: SignedIn) -> None:
    with db.session() as session:
        session.execute(delete(WebSession).where(WebSession.id == signed.session_id))
        record(session, signed.who.name, "logout", f"user:{signed.who.name}")


def count_review(db: Database, session_id: str) -> None:
    with db.session() as session:
        ws = session.get(WebSession, session_id)
        if ws is not None:
            ws.reviewed += 1
            ws.since_break += 1


def take_break(db: Database, session_id: str) -> None:
    with db.session() as session:
        ws = session.get(WebSession, session_id)
        if ws is not None:
            ws.since_break = 0
            ws.break_at = utcnow()


def set_blur(db: Database, session_id: str, blur: int) -> int:
    blur = max(MIN_BLUR, min(MAX_BLUR, blur))
    with db.session() as session:
        ws = session.get(WebSession, session_id)
        if ws is not None:
            ws.blur = blur
    return blur


FLASH_FIELDS = ("verdict", "classification", "note")


def keep_failed_form(db: Database, session_id: str, item_id: int, error: str, form: dict[str, str]) -> None:
    """Hold a verdict form that failed, for the item's page to show once after the redirect."""
    kept = {k: str(form.get(k, ""))[:2000] for k in FLASH_FIELDS}
    with db.session() as session:
        session.execute(
            update(WebSession)
            .where(WebSession.id == session_id)
            .values(flash={"item": item_id, "error": error[:500], **kept})
        )


def take_failed_form(db: Database, session_id: str, item_id: int) -> dict[str, Any] | None:
    """The failed form held for ``item_id`` (then forgotten), or None."""
    with db.session() as session:
        ws = session.get(WebSession, session_id)
        if ws is None or not isinstance(ws.flash, dict) or ws.flash.get("item") != item_id:
            return None
        flash = dict(ws.flash)
        ws.flash = None
    return flash
