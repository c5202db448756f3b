"""Small column helpers shared by the migration scripts (kept stable: migrations depend on them)."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa


def at(name: str, nullable: bool = False) -> sa.Column[dt.datetime]:
    """A timezone-aware timestamp column."""
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)
