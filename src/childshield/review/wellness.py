"""When to offer a reviewer a break: after many items, after a long stretch, or at a very fast pace.

Reviewing this material wears people down, and it shows as speed as much as stamina: verdicts coming
every few seconds are a sign of someone clicking through rather than looking.  So besides the count of
items and the time since the last break, the prompt notices a pace faster than ``fast_items`` verdicts
within ``fast_minutes`` (counted from the reviewer's own recorded verdicts, since their last break).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select

from childshield.store.db import Database
from childshield.store.models import Review


@dataclass(frozen=True)
class BreakRules:
    every_items: int = 25
    every_minutes: float = 50.0
    fast_items: int = 10
    """Verdicts within ``fast_minutes`` that count as a very fast pace (0: never)."""
    fast_minutes: float = 3.0


@dataclass(frozen=True)
class BreakDue:
    reason: str
    """``items`` (many since the last break), ``time`` (a long stretch) or ``pace`` (very fast)."""
    items: int
    """Items reviewed since the last break."""
    minutes: int
    """Minutes since the last break."""
    recent: int = 0
    """For ``pace``: verdicts within the pace window."""
    window: float = 0.0


def break_due(
    db: Database,
    rules: BreakRules,
    *,
    user_id: int,
    since_break: int,
    break_at: dt.datetime,
    now: dt.datetime,
) -> BreakDue | None:
    """Whether to offer a break now, and why (None: not yet)."""
    minutes = (now - break_at).total_seconds() / 60
    if since_break >= rules.every_items:
        return BreakDue("items", since_break, int(minutes))
    if since_break > 0 and minutes >= rules.every_minutes:
        return BreakDue("time", since_break, int(minutes))
    if rules.fast_items > 0 and since_break >= rules.fast_items:
        since = max(break_at, now - dt.timedelta(minutes=rules.fast_minutes))
        recent = recent_verdicts(db, user_id, since)
        if recent >= rules.fast_items:
            return BreakDue("pace", since_break, int(minutes), recent, rules.fast_minutes)
    return None


def recent_verdicts(db: Database, user_id: int, since: dt.datetime) -> int:
    """Verdicts the reviewer recorded at or after ``since``."""
    with db.session() as session:
        count = session.scalar(
            select(func.count()).select_from(Review).where(Review.user_id == user_id, Review.at >= since)
        )
    return int(count or 0)
