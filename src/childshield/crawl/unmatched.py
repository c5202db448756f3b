"""Unmatched media found next to known material: on a page where the crawler found matches, the other
images are likely to be new material of the same kind.  This pass (off unless asked for) fetches them
again and queues them for human review, with the page and media URLs as context, so that reviewers can
confirm them and they can be added to a bank.  Each media URL is queued once.

Only the host's answer says an image is **gone** (404, 410, 451) or **changed** (no longer an image); a
fetch of ours that failed (the address guard refusing, DNS, a timeout) or a refusal by the host (403,
429, 5xx) is a **failure**, with its cause, and the image is fetched again by the next pass."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from functools import partial

import httpx
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from childshield.actions.decisions import record_decision, snapshot
from childshield.matching.matcher import Matcher
from childshield.matching.scan import scan_bytes
from childshield.media.errors import MediaError
from childshield.net.afetch import CrawlFetchError, fetch_answer
from childshield.net.guard import AddressPolicy, Resolver
from childshield.net.hops import no_cookies
from childshield.review.intake import Intake, review_intake
from childshield.store.db import Database
from childshield.store.models import CrawlHit, CrawlState, CrawlUrl, Decision

log = logging.getLogger("childshield.crawl")
REASON = "unmatched media on a page where known material was found"


GONE = frozenset({404, 410, 451})


@dataclass
class UnmatchedResult:
    queued: int = 0
    already: int = 0
    gone: int = 0
    """The host answered 404, 410 or 451."""
    changed: int = 0
    """The host answered with something that is not an image we can hash."""
    matched_now: int = 0
    failures: list[tuple[str, str, str]] = field(default_factory=list)
    """(media URL, cause, reason) of fetches that proved nothing: tried again by the next pass."""

    @property
    def failed(self) -> int:
        return len(self.failures)


def _candidates(db: Database) -> list[tuple[str, str, str | None]]:
    """(content id, media URL, page URL) of unmatched media on pages with hits, not queued yet."""
    with db.session() as session:
        pages = select(CrawlHit.page_id).where(CrawlHit.page_id.is_not(None)).distinct()
        rows = session.execute(
            select(CrawlUrl.url_hash, CrawlUrl.final_url, CrawlUrl.url, CrawlUrl.parent_id).where(
                CrawlUrl.parent_id.in_(pages),
                CrawlUrl.kind == "media",
                CrawlUrl.state == CrawlState.DONE,
                CrawlUrl.matched.is_(False),
            )
        ).all()
        parents = {
            r.id: r.final_url or r.url
            for r in session.execute(
                select(CrawlUrl.id, CrawlUrl.url, CrawlUrl.final_url).where(
                    CrawlUrl.id.in_({x.parent_id for x in rows})
                )
            )
        }
        done = set(
            session.scalars(
                select(Decision.content_id).where(
                    Decision.content_id.in_([f"crawl-{r.url_hash[:58]}" for r in rows])
                )
            ).all()
        )
    return [
        (f"crawl-{r.url_hash[:58]}", r.final_url or r.url, parents.get(r.parent_id))
        for r in rows
        if f"crawl-{r.url_hash[:58]}" not in done
    ]


async def queue_unmatched(
    db: Database,
    matcher: Matcher,
    intake: Intake,
    *,
    policy: AddressPolicy,
    resolve: Resolver | None = None,
    timeout: float = 20.0,
    max_bytes: int = 50 * 1024 * 1024,
) -> UnmatchedResult:
    out = UnmatchedResult()
    todo = await asyncio.to_thread(_candidates, db)
    rules = snapshot(matcher)
    async with httpx.AsyncClient(follow_redirects=False, trust_env=False, cookies=no_cookies()) as client:
        for content_id, media_url, page_url in todo:
            try:
                answer = await fetch_answer(
                    client, media_url, policy, max_bytes=max_bytes, timeout=timeout, resolve=resolve
                )
            except CrawlFetchError as exc:  # the operator's own tool: the full reason
                out.failures.append((media_url, exc.cause, exc.detail))
                continue
            if answer.status in GONE:
                out.gone += 1
                continue
            if answer.status != 200:
                cause = f"http-{answer.status}"
                out.failures.append((media_url, cause, f"HTTP {answer.status} from {answer.url[:200]}"))
                continue
            if answer.kind != "media":
                out.changed += 1
                continue
            try:
                scanned = await asyncio.to_thread(scan_bytes, matcher, answer.body)
            except MediaError:
                out.changed += 1
                continue
            if scanned.matches:  # it matches now (the banks grew): the crawler's next visit records it
                out.matched_now += 1
                continue
            h = scanned.hashes
            assert h is not None
            try:
                await asyncio.to_thread(
                    partial(
                        record_decision,
                        db,
                        content_id=content_id,
                        decision="review",
                        policy=rules,
                        matches=[],
                        actor="crawler",
                        sha256=h.sha256,
                        pdq=h.pdq,
                        source="crawl",
                        then=review_intake(intake, answer.body),
                        context={"reason": REASON, "page_url": page_url, "media_url": media_url},
                    )
                )
                out.queued += 1
            except IntegrityError:
                out.already += 1
    return out
