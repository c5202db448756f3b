"""Re-check followed items on a schedule: gone (404, 410, 451, or content that no longer matches) is
recorded with the time it was first seen gone.

Only an answer from the host proves a removal.  Anything else (the address guard refusing the URL, DNS,
a timeout, a reset, refusals such as 403, 429 or 5xx, a page that is not an image) is an **error** of the
check: recorded on the item with its cause, counted in the round's result, and tried again at the next
check; it never counts as removed, and the item gets no reminder until a check has seen it online again
(a reminder says "still online at our last check")."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from dataclasses import dataclass, field

import httpx
from sqlalchemy import select

from childshield.audit.log import record
from childshield.matching.matcher import Matcher
from childshield.matching.scan import scan_bytes
from childshield.media.errors import MediaError
from childshield.net.afetch import CrawlFetchError, fetch_answer
from childshield.net.guard import AddressPolicy, Resolver
from childshield.net.hops import no_cookies
from childshield.store.db import Database
from childshield.store.models import TakedownItem, TakedownState, utcnow

GONE_STATUSES = {404: "http-404", 410: "http-410", 451: "http-451"}


@dataclass(frozen=True)
class RecheckSettings:
    every: dt.timedelta = dt.timedelta(hours=1)
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
    errors: Counter[str] = field(default_factory=Counter)
    """Checks that proved nothing, by cause (``http-503``, ``not an image``, the fetch's reason)."""

    @property
    def failed(self) -> int:
        return sum(self.errors.values())


@dataclass(frozen=True)
class _Verdict:
    outcome: str
    """``online``, ``error`` or a removal reason (``http-404``, ``http-410``, ``http-451``, ``changed``)."""
    cause: str = ""
    kind: str = ""
    """The error's cause in one word (``refused``, ``dns``, ``timeout``, ``http-503``, ``not-an-image``)."""


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
) -> _Verdict:
    try:
        answer = await fetch_answer(
            client,
            item.url,
            settings.policy,
            max_bytes=settings.max_bytes,
            timeout=settings.timeout,
            resolve=settings.resolve,
        )
    except CrawlFetchError as exc:  # refused by the guard, DNS, timeout, reset: our check failed
        said = (exc.detail or str(exc))[:200] or type(exc).__name__  # for operators
        return _Verdict("error", said, exc.cause)
    if answer.status in GONE_STATUSES:
        return _Verdict(GONE_STATUSES[answer.status])
    if answer.status != 200:
        cause = f"http-{answer.status}"
        return _Verdict("error", cause, cause)  # 403, 429, 5xx ...: not proof of removal
    try:
        scanned = await asyncio.to_thread(scan_bytes, matcher, answer.body)
    except MediaError:
        # A captcha or a block page aimed at us is no proof of removal: only an image that no longer
        # matches is "changed".
        return _Verdict("error", "not an image", "not-an-image")
    still = any(m.bank == item.bank for m in scanned.matches)
    return _Verdict("online") if still else _Verdict("changed")


def _store(
    db: Database,
    item: TakedownItem,
    verdict: _Verdict,
    settings: RecheckSettings,
    now: dt.datetime,
    out: RecheckResult,
) -> None:
    out.checked += 1
    with db.session() as session:
        row = session.get_one(TakedownItem, item.id)
        row.next_check_at = now + settings.every
        if verdict.outcome == "error":
            row.failures += 1
            row.last_error = verdict.cause
            row.last_cause = verdict.kind[:32]
            out.errors[verdict.cause] += 1
            return
        row.last_checked_at = now  # the last check that got an answer from the host
        row.failures = 0
        row.last_error = ""
        row.last_cause = ""
        if verdict.outcome == "online":
            out.still_online += 1
            return
        row.state = TakedownState.REMOVED
        row.removed_at = now
        row.removal = verdict.outcome
        out.removed += 1
        record(
            session,
            "takedown",
            "item.removed",
            f"takedown:{row.id}",
            {"url": row.url[:500], "how": verdict.outcome},
        )
