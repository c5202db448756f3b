"""Hotline work over HTTP: queue reported URLs for the crawler, read what it found, removal figures."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from childshield.accounts.service import Principal
from childshield.audit.log import record
from childshield.crawl import frontier
from childshield.store.db import Database
from childshield.store.models import Role
from childshield.takedown.stats import takedown_stats
from childshield.takedown.status import takedown_status
from childshield.web.api.schemas import AfterId, Text, problems
from childshield.web.deps import allow, database

router = APIRouter(prefix="/v1", tags=["hotline"])
Db = Annotated[Database, Depends(database)]
Reporter = Annotated[Principal, Depends(allow(Role.SERVICE, Role.SENIOR))]
Analyst = Annotated[Principal, Depends(allow(Role.SENIOR))]


class UrlsIn(BaseModel):
    urls: list[str] = Field(min_length=1, max_length=10_000)
    source: Annotated[str, Text(200)] = ""
    reporter_ref: Annotated[str, Text(200)] = ""


class FailedUrl(BaseModel):
    url: str
    cause: str
    """Why its crawl failed (``refused``, ``dns``, ``timeout`` ...); an analyst queues it again with
    ``childshield crawl requeue``."""


class UrlsOut(BaseModel):
    added: int
    already_known: int
    refused: list[str]
    failed: list[FailedUrl] = []
    """URLs given that were crawled before and failed (among ``already_known``)."""


@router.post("/crawl/urls", response_model=UrlsOut, responses=problems(400, 401, 403, 422))
def queue_urls(body: UrlsIn, who: Reporter, db: Db) -> UrlsOut:
    """Queue reported URLs for the crawler (a URL already queued or crawled is not queued again; one
    whose crawl failed is listed under ``failed`` with the cause)."""
    added, again, refused = frontier.add(db, body.urls, source=body.source, reporter_ref=body.reporter_ref)
    failed = frontier.failures(db, urls=body.urls) if again else []
    with db.session() as session:
        record(
            session,
            who.name,
            "crawl.add",
            f"crawl:{added}",
            {"source": body.source, "ref": body.reporter_ref},
        )
    return UrlsOut(
        added=added,
        already_known=again,
        refused=refused[:100],
        failed=[FailedUrl(url=f.url, cause=f.cause) for f in failed[:100]],
    )


@router.get("/crawl/status", responses=problems(401, 403))
def crawl_status(who: Analyst, db: Db) -> dict[str, Any]:
    """URLs per state, what was fetched, hits and sites, and errors by cause (failed URLs, and URLs
    waiting to be tried again)."""
    return frontier.status(db)


@router.get("/crawl/hits", responses=problems(401, 403, 422))
def crawl_hits(
    who: Analyst,
    db: Db,
    after: AfterId = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[dict[str, Any]]:
    """Known material found, oldest first, from hit id ``after``: media URL, page, host and address,
    bank and entry, check and distance, hashes."""
    out = []
    for row in frontier.hit_rows(db, after=after):
        out.append(row)
        if len(out) >= limit:
            break
    return out


@router.get("/takedown/status", responses=problems(401, 403))
async def status(who: Analyst, db: Db) -> dict[str, Any]:
    """Items by state, online items no notice can reach yet (no provider, no contact), notices by
    state, and errors by cause: re-checks, RDAP lookups, notices waiting to be retried or failed."""
    return await run_in_threadpool(takedown_status, db)


@router.get("/takedown/stats", responses=problems(401, 403, 422))
async def stats(
    who: Analyst, db: Db, by: Annotated[Literal["provider", "country"], Query()] = "provider"
) -> list[dict[str, Any]]:
    """Per provider (or country): media, notices sent, removed, median and 90th percentile hours from the
    first notice to removal, and how many were still online 24 h, 7 days and 42 days after it."""
    return await run_in_threadpool(takedown_stats, db, by=by)
