"""Times shown to people: always in UTC, whatever zone the database handed them back in."""

from __future__ import annotations

import datetime as dt


def aware(value: dt.datetime) -> dt.datetime:
    """A stored time with its zone: SQLite hands times back without one (they are stored in UTC)."""
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def utc(value: dt.datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A time in UTC (PostgreSQL hands back times in the session's zone, SQLite without a zone)."""
    if value is None:
        return "-"
    return aware(value).astimezone(dt.UTC).strftime(fmt)
