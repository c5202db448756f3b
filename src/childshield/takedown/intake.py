"""Follow what the crawler found: one takedown item per media URL that matched, with its provider."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update

from childshield.crawl.urls import url_hash
from childshield.store.db import Database
from childshield.store.models import CrawlHit, TakedownItem, TakedownState, utcnow
from childshield.takedown.hosting import provider_for_ip
from childshield.takedown.rdap import RdapClient


def follow_hits(db: Database, rdap: RdapClient, *, now: dt.datetime | None = None, batch: int = 1000) -> int:
    """Create items for hits not followed yet (looking up their hosts); returns how many were created.
    An item whose content was seen before at a URL since removed is marked as a re-upload of it.
    Items whose provider could not be found before (RDAP away) are looked up again."""
    now = now or utcnow()
    created = _follow_new(db, rdap, now, batch)
    _find_missing_providers(db, rdap, now)
    return created


def _find_missing_providers(db: Database, rdap: RdapClient, now: dt.datetime) -> None:
    with db.session() as session:
        ips = set(
            session.scalars(
                select(TakedownItem.ip).where(
                    TakedownItem.provider_id.is_(None),
                    TakedownItem.state == TakedownState.ONLINE,
                    TakedownItem.ip != "",
                )
            ).all()
        )
    for ip in sorted(ips):  # failed lookups are cached for an hour: this asks again only after that
        provider = provider_for_ip(db, rdap, ip, now=now)
        if provider is not None:
            with db.session() as session:
                session.execute(
                    update(TakedownItem)
                    .where(TakedownItem.ip == ip, TakedownItem.provider_id.is_(None))
                    .values(provider_id=provider)
                )


def _follow_new(db: Database, rdap: RdapClient, now: dt.datetime, batch: int) -> int:
    created = 0
    last = 0
    while True:
        with db.session() as session:
            hits = session.scalars(
                select(CrawlHit).where(CrawlHit.id > last).order_by(CrawlHit.id).limit(batch)
            ).all()
            known = set(
                session.scalars(
                    select(TakedownItem.url_hash).where(
                        TakedownItem.url_hash.in_({url_hash(h.media_url) for h in hits})
                    )
                ).all()
            )
            fresh: dict[str, CrawlHit] = {}
            for h in hits:
                key = url_hash(h.media_url)
                if key not in known and key not in fresh:
                    fresh[key] = h
            session.expunge_all()
        if not hits:
            return created
        last = hits[-1].id
        providers = {
            ip: provider_for_ip(db, rdap, ip, now=now) for ip in {h.ip for h in fresh.values() if h.ip}
        }
        with db.session() as session:
            for key, h in fresh.items():
                earlier = session.scalar(
                    select(TakedownItem.id)
                    .where(TakedownItem.sha256 == h.sha256, TakedownItem.state == TakedownState.REMOVED)
                    .order_by(TakedownItem.id)
                    .limit(1)
                )
                session.add(
                    TakedownItem(
                        url=h.media_url,
                        url_hash=key,
                        page_url=h.page_url,
                        host=h.host,
                        ip=h.ip,
                        provider_id=providers.get(h.ip),
                        hit_id=h.id,
                        bank=h.bank,
                        item_id=h.item_id,
                        sha256=h.sha256,
                        md5=h.md5,
                        pdq=h.pdq,
                        found_at=h.found_at,
                        next_check_at=now,
                        reupload_of=earlier,
                    )
                )
                created += 1
