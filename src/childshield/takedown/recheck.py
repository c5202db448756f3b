"""Re-check followed items on a schedule: gone (404, 410, 451; content that no longer matches; a host
unreachable several times in a row) is recorded with the time it was first seen gone."""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass, field

import httpx
from sqlalchemy import select

from childshield.audit.log import record
from childshield.crawl.afetch import CrawlFetchError, fetch_answer
from childshield.crawl.fetch import no_cookies
from childshield.crawl.guard import AddressPolicy, Resolver
from childshield.matching.matcher import Matcher
from childshield.matching.scan import scan_bytes
from childshield.media.errors import MediaError
from childshield.store.db import Database
from childshield.store.models import TakedownItem, TakedownState, utcnow

GONE_STATUSES = {404: "http-404", 410: "http-410", 451: "http-451"}


@dataclass(frozen=True)
class RecheckSettings:
    every: dt.timedelta = dt.timedelta(hours=1)
    unreachable_after: int = 3
    """Checks in a row that cannot reach the host before the item counts as removed."""
    timeout: float = 20.0
    max_bytes: int = 50 * 1024 * 1024
    concurrency: int = 16
    policy: AddressPolicy = field(default_factory=AddressPolicy)
    resolve: Resolver | None = None


@dataclass
class RecheckResult:
    checked: int = 0
    removed: int = 0
    still_online: int = 0
    unreachable: int = 0


async def recheck_due(
    db: Database, matcher: Matcher, settings: RecheckSettings, *, now: dt.datetime | None = None
) -> RecheckResult:
    now = now or utcnow()
    with db.session() as session:
        due = session.scalars(
            select(TakedownItem)
            .where(TakedownItem.state == TakedownState.ONLINE, TakedownItem.next_check_at <= now)
            .order_by(TakedownItem.next_check_at)
        ).all()
        session.expunge_all()
    out = RecheckResult()
    slots = asyncio.Semaphore(settings.concurrency)
    async with httpx.AsyncClient(follow_redirects=False, trust_env=False, cookies=no_cookies()) as client:

        async def one(item: TakedownItem) -> None:
            async with slots:
                verdict = await _check(client, matcher, settings, item)
            await asyncio.to_thread(_store, db, item, verdict, settings, now, out)

        await asyncio.gather(*(one(i) for i in due))
    return out


async def _check(
    client: httpx.AsyncClient, matcher: Matcher, settings: RecheckSettings, item: TakedownItem
) -> str:
    """``online``, ``unreachable`` or a removal reason."""
    try:
        answer = await fetch_answer(
            client,
            item.url,
            settings.policy,
            max_bytes=settings.max_bytes,
            timeout=settings.timeout,
            resolve=settings.resolve,
        )
    except CrawlFetchError:
        return "unreachable"
    if answer.status in GONE_STATUSES:
        return GONE_STATUSES[answer.status]
    if answer.status != 200:
        return "unreachable"  # 403, 5xx ...: not proof of removal; counted towards `unreachable_after`
    try:
        scanned = await asyncio.to_thread(scan_bytes, matcher, answer.body)
    except MediaError:
        # Not an image (a captcha or a block page aimed at us?): no proof of removal, counted like an
        # unreachable host; only an image that no longer matches is "changed".
        return "unreachable"
    still = any(m.bank == item.bank for m in scanned.matches)
    return "online" if still else "changed"


def _store(
    db: Database,
    item: TakedownItem,
    verdict: str,
    settings: RecheckSettings,
    now: dt.datetime,
    out: RecheckResult,
) -> None:
    out.checked += 1
    with db.session() as session:
        row = session.get_one(TakedownItem, item.id)
        row.last_checked_at = now
        row.next_check_at = now + settings.every
        if verdict == "online":
            row.failures = 0
            out.still_online += 1
            return
        if verdict == "unreachable":
            row.failures += 1
            out.unreachable += 1
            if row.failures < settings.unreachable_after:
                return
            verdict = "unreachable"
        row.state = TakedownState.REMOVED
        row.removed_at = now
        row.removal = verdict
        out.removed += 1
        record(
            session, "takedown", "item.removed", f"takedown:{row.id}", {"url": row.url[:500], "how": verdict}
        )
