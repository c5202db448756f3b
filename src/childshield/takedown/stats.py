"""Removal-time figures per provider and per country, the way hotlines publish them.

Time to removal runs from the first notice to the first check that found the item gone.  "Online after
24 h / 7 days / 42 days" counts, among items first noticed at least that long ago, those still online at
that age (removed later, or not yet).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, select

from childshield.store.db import Database
from childshield.store.models import Notice, Provider, TakedownItem, TakedownState, utcnow
from childshield.timefmt import aware

AGES = {"24h": dt.timedelta(hours=24), "7d": dt.timedelta(days=7), "42d": dt.timedelta(days=42)}


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    low, high = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def figures(items: Iterable[TakedownItem], notices_sent: int, now: dt.datetime) -> dict[str, Any]:
    hours: list[float] = []
    media = removed = 0
    aged = {k: [0, 0] for k in AGES}  # [old enough, still online at that age]
    for item in items:
        media += 1
        first = aware(item.first_notice_at) if item.first_notice_at else None
        gone = aware(item.removed_at) if item.removed_at else None
        if item.state is TakedownState.REMOVED:
            removed += 1
            if first is not None and gone is not None:
                hours.append(max(0.0, (gone - first).total_seconds() / 3600))
        if first is None:
            continue
        for key, age in AGES.items():
            if first + age <= now:
                aged[key][0] += 1
                if gone is None or gone > first + age:
                    aged[key][1] += 1
    median, p90 = _percentile(hours, 0.5), _percentile(hours, 0.9)
    return {
        "media": media,
        "notices_sent": notices_sent,
        "removed": removed,
        "online": media - removed,
        "median_hours_to_removal": None if median is None else round(median, 2),
        "p90_hours_to_removal": None if p90 is None else round(p90, 2),
        **{f"online_after_{k}": v[1] for k, v in aged.items()},
        **{f"noticed_{k}_ago": v[0] for k, v in aged.items()},
    }


def takedown_stats(
    db: Database, *, by: str = "provider", now: dt.datetime | None = None
) -> list[dict[str, Any]]:
    """One row per provider (``by="provider"``) or country (``by="country"``), plus ``all``."""
    now = now or utcnow()
    with db.session() as session:
        items = session.scalars(select(TakedownItem)).all()
        providers = {p.id: p for p in session.scalars(select(Provider)).all()}
        sent = dict(
            session.execute(
                select(Notice.provider_id, func.count())
                .where(Notice.state == "sent", Notice.escalation.is_(False))
                .group_by(Notice.provider_id)
            ).all()
        )
        session.expunge_all()
    groups: dict[str, list[TakedownItem]] = defaultdict(list)
    notices: dict[str, int] = defaultdict(int)
    for item in items:
        p = providers.get(item.provider_id) if item.provider_id is not None else None
        key = (p.key if p else "unknown") if by == "provider" else ((p.country if p else "") or "unknown")
        groups[key].append(item)
    for provider_id, count in sent.items():
        p = providers.get(provider_id)
        key = (p.key if p else "unknown") if by == "provider" else ((p.country if p else "") or "unknown")
        notices[key] += count
    rows = []
    for key in sorted(groups):
        row = {by: key, **figures(groups[key], notices[key], now)}
        if by == "provider":
            p = next((x for x in providers.values() if x.key == key), None)
            row["name"] = p.name if p else ""
            row["country"] = p.country if p else ""
        rows.append(row)
    rows.append({by: "all", **figures(items, sum(notices.values()), now)})
    return rows
