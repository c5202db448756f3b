"""Follow what the crawler found: one takedown item per media URL that matched, with its provider.

A round asks RDAP about each address at most once.  Once the registry is unreachable (no answer at all),
the round asks no more (each would wait for its timeout): the addresses not asked are failures of that
cause too, and every one is asked again next round."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import func, select, update

from childshield.crawl.urls import url_hash
from childshield.store.db import Database
from childshield.store.models import CrawlHit, TakedownItem, TakedownState, utcnow
from childshield.takedown.hosting import Lookup, provider_for_ip
from childshield.takedown.rdap import UNREACHABLE, RdapClient


@dataclass
class FollowResult:
    created: int = 0
    """Items created for new hits."""
    failures: list[tuple[str, str, str]] = field(default_factory=list)
    """(address, cause, reason) of each RDAP lookup that failed this round."""
    without_provider: int = 0
    """Online items whose provider is not known after the round (they get no notices yet)."""

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def errors(self) -> Counter[str]:
        """Failed lookups by cause."""
        return Counter(cause for _, cause, _ in self.failures)


class _Lookups:
    """One round's lookups: each address once, none after the registry was found unreachable."""

    def __init__(self, db: Database, rdap: RdapClient, now: dt.datetime, failure_ttl: dt.timedelta) -> None:
        self.db, self.rdap, self.now, self.failure_ttl = db, rdap, now, failure_ttl
        self.done: dict[str, Lookup] = {}
        self.unreachable = ""

    def __call__(self, ip: str) -> Lookup:
        if ip not in self.done:
            if self.unreachable:
                found = Lookup(None, f"not asked: {self.unreachable}", UNREACHABLE)
            else:
                found = provider_for_ip(self.db, self.rdap, ip, now=self.now, failure_ttl=self.failure_ttl)
                if found.cause == UNREACHABLE and not found.cached:
                    self.unreachable = f"RDAP was unreachable this round ({found.error[:200]})"
            self.done[ip] = found
        return self.done[ip]


def follow_hits(
    db: Database,
    rdap: RdapClient,
    *,
    now: dt.datetime | None = None,
    batch: int = 1000,
    failure_ttl: dt.timedelta = dt.timedelta(0),
) -> FollowResult:
    """Create items for hits not followed yet (looking up their hosts).  An item whose content was seen
    before at a URL since removed is marked as a re-upload of it.  Items whose provider could not be
    found before (RDAP away) are looked up again.  Failed lookups are in the result, with their cause."""
    now = now or utcnow()
    lookups = _Lookups(db, rdap, now, failure_ttl)
    out = FollowResult(created=_follow_new(db, lookups, batch))
    _find_missing_providers(db, lookups)
    out.failures = [
        (ip, found.cause, found.error) for ip, found in sorted(lookups.done.items()) if found.error
    ]
    with db.session() as session:
        out.without_provider = (
            session.scalar(
                select(func.count())
                .select_from(TakedownItem)
                .where(TakedownItem.provider_id.is_(None), TakedownItem.state == TakedownState.ONLINE)
            )
            or 0
        )
    return out


def _find_missing_providers(db: Database, lookups: _Lookups) -> None:
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
    for ip in sorted(ips):
        provider = lookups(ip).provider_id
        if provider is not None:
            with db.session() as session:
                session.execute(
                    update(TakedownItem)
                    .where(TakedownItem.ip == ip, TakedownItem.provider_id.is_(None))
                    .values(provider_id=provider)
                )


def _follow_new(db: Database, lookups: _Lookups, batch: int) -> int:
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
        providers = {ip: lookups(ip).provider_id for ip in sorted({h.ip for h in fresh.values() if h.ip})}
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
                        next_check_at=lookups.now,
                        reupload_of=earlier,
                    )
                )
                created += 1
