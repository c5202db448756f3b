"""Shared by the takedown tests: providers with one online item each, ready for notices."""

from __future__ import annotations

import datetime as dt

from childshield.store.db import Database
from childshield.store.models import Provider, TakedownItem


def one_item_per_provider(db: Database, count: int, now: dt.datetime) -> None:
    """``count`` providers (``ORG-k``, abuse@pk.test), each hosting one followed item."""
    with db.session() as session:
        for k in range(count):
            provider = Provider(
                key=f"ORG-{k}", name=f"Provider {k}", country="NL", abuse_email=f"abuse@p{k}.test"
            )
            session.add(provider)
            session.flush()
            session.add(
                TakedownItem(
                    url=f"http://p{k}.test/m.jpg", url_hash=f"{k:064x}", host=f"p{k}.test", ip="192.0.2.1",
                    provider_id=provider.id, bank="known", item_id=1, sha256="ab" * 32, md5="cd" * 16,
                    found_at=now, next_check_at=now,
                )
            )  # fmt: skip
