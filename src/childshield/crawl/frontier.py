"""The crawl frontier in the database: every URL once, claimed with a lease, finished in one transaction.

A crawler claims due URLs by leasing them (``leased_until``); it finishes each one in a single transaction
that stores the result, the hits and the URLs it found.  A crawler killed at any moment leaves its leased
URLs to be claimed again once their lease runs out, and nothing it had not committed exists: so nothing
is lost, nothing is recorded twice, and only the URLs in flight at the kill are fetched again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from childshield.crawl.urls import BadUrl, normalize, site_of, url_hash
from childshield.store.db import Database, is_postgres, lock_for_writing, upsert_insert
from childshield.store.models import CrawlHit, CrawlSite, CrawlState, CrawlUrl, utcnow
from childshield.timefmt import aware

INSERT_BATCH = 500


@dataclass(frozen=True)
class Claimed:
    id: int
    url: str
    site: str
    depth: int
    hint: str
    seed: bool
    parent_id: int | None
    attempts: int


@dataclass
class Finished:
    """What came of one URL (stored by :func:`finish` in one transaction)."""

    state: CrawlState = CrawlState.DONE
    status: int | None = None
    kind: str = ""
    final_url: str | None = None
    size: int | None = None
    error: str = ""
    cause: str = ""
    """Why it failed, in one word (see ``net.hops``); "" when it did not."""
    found: list[tuple[str, str, int]] = field(default_factory=list)
    """(normalised url, hint, depth) to add to the frontier."""
    hits: list[dict[str, Any]] = field(default_factory=list)
    page_site: str | None = None
    """The site of the page the media was on (its patience is reset by a match)."""


def add(
    db: Database, urls: Iterable[str], *, source: str = "", reporter_ref: str = ""
) -> tuple[int, int, list[str]]:
    """Queue reported URLs (seeds); returns (added, already queued, refused with reasons)."""
    rows, refused = [], []
    for raw in urls:
        try:
            url = normalize(raw)
        except BadUrl as exc:
            refused.append(f"{raw[:200]}: {exc}")
            continue
        rows.append(_row(url, "page", 0, None, seed=True, source=source, reporter_ref=reporter_ref))
    with db.session() as session:
        added = _add_rows(session, rows)
    return added, len(rows) - added, refused


def _row(
    url: str,
    hint: str,
    depth: int,
    parent: int | None,
    *,
    seed: bool = False,
    source: str = "",
    reporter_ref: str = "",
) -> dict[str, Any]:
    now = utcnow()
    return {
        "url": url,
        "url_hash": url_hash(url),
        "site": site_of(url)[:255],
        "depth": depth,
        "hint": hint,
        "priority": 0 if hint == "media" else 1,
        "seed": seed,
        "parent_id": parent,
        "source": source[:200],
        "reporter_ref": reporter_ref[:200],
        "state": CrawlState.QUEUED.value,
        "attempts": 0,
        "next_at": now,
        "added_at": now,
        "kind": "",
        "error": "",
        "matched": False,
    }


def _add_rows(session: Session, rows: Sequence[dict[str, Any]]) -> int:
    added = 0
    insert = upsert_insert(session)
    for start in range(0, len(rows), INSERT_BATCH):
        batch = list({r["url_hash"]: r for r in rows[start : start + INSERT_BATCH]}.values())
        stmt = insert(CrawlUrl).values(batch).on_conflict_do_nothing(index_elements=["url_hash"])
        added += len(session.execute(stmt.returning(CrawlUrl.id)).all())
    return added


def claim(
    db: Database,
    limit: int,
    lease: dt.timedelta,
    *,
    now: dt.datetime | None = None,
    max_attempts: int | None = None,
    gave_up: list[tuple[str, str]] | None = None,
) -> list[Claimed]:
    """Lease up to ``limit`` due URLs: expired leases first (a crawler died holding them), then queued
    ones by priority (media before pages), depth and age, each read off an index in order.

    An expired lease that has had ``max_attempts`` claims already fails instead of being claimed again:
    a URL that kills or stalls every crawler that takes it would otherwise come back for ever.  Those
    are added to ``gave_up`` as (URL, reason) when it is given."""
    now = now or utcnow()
    expired = and_(CrawlUrl.state == CrawlState.LEASED, CrawlUrl.leased_until < now)
    queued = and_(CrawlUrl.state == CrawlState.QUEUED, CrawlUrl.next_at <= now)
    with db.session() as session:
        postgres = is_postgres(session)
        lock_for_writing(session, "crawl_urls")
        if max_attempts is not None:
            reason = (
                f"given up after {max_attempts} attempts that never finished (the crawler stopped or "
                "stalled while handling it)"
            )
            failed = session.scalars(
                update(CrawlUrl)
                .where(expired, CrawlUrl.attempts >= max_attempts)
                .values(
                    state=CrawlState.FAILED, leased_until=None, fetched_at=now, error=reason, cause=STALLED
                )
                .returning(CrawlUrl.url)
            ).all()
            if gave_up is not None:
                gave_up += [(url, reason) for url in failed]

        def pick(condition: Any, order: Sequence[Any], room: int) -> list[int]:
            query = select(CrawlUrl.id).where(condition).order_by(*order).limit(room)
            if postgres:  # other crawlers skip the rows we lock
                query = query.with_for_update(skip_locked=True)
            return list(session.scalars(query).all())

        chosen = pick(expired, [CrawlUrl.leased_until], limit)
        if len(chosen) < limit:
            chosen += pick(queued, [CrawlUrl.priority, CrawlUrl.depth, CrawlUrl.id], limit - len(chosen))
        if not chosen:
            return []
        rows = session.execute(
            update(CrawlUrl)
            .where(CrawlUrl.id.in_(chosen), or_(expired, queued))
            .values(state=CrawlState.LEASED, leased_until=now + lease, attempts=CrawlUrl.attempts + 1)
            .returning(
                CrawlUrl.id,
                CrawlUrl.url,
                CrawlUrl.site,
                CrawlUrl.depth,
                CrawlUrl.hint,
                CrawlUrl.seed,
                CrawlUrl.parent_id,
                CrawlUrl.attempts,
            )
        ).all()
    return sorted((Claimed(**row._mapping) for row in rows), key=lambda c: (c.hint != "media", c.depth, c.id))


def finish(db: Database, claimed: Claimed, result: Finished) -> bool:
    """Store a URL's result, its hits and what it found, in one transaction."""
    return bool(apply(db, [(claimed, result)])[0])


def retry_later(
    db: Database, claimed: Claimed, error: str, delay: float, *, max_attempts: int, cause: str = ""
) -> bool:
    """Put a URL back for another try after ``delay`` seconds, or fail it after ``max_attempts``; True if
    it will be tried again."""
    return bool(apply(db, [Retry(claimed, error, delay, max_attempts, cause)])[0])


STALLED = "stalled"
"""The cause of a URL whose crawlers never finished it (see :func:`claim`)."""


@dataclass(frozen=True)
class Retry:
    """Tried and failed for a reason that may pass: back in the queue after ``delay`` seconds, its error
    and cause kept (``crawl status`` counts it as waiting for a retry), or failed after ``max_attempts``
    claims."""

    claimed: Claimed
    error: str
    delay: float
    max_attempts: int
    cause: str = ""


@dataclass(frozen=True)
class Defer:
    """Not tried at all (its host asked for a pause): back in the queue, the claim not counted."""

    claimed: Claimed
    delay: float


Op = tuple[Claimed, Finished] | Retry | Defer


def extend(db: Database, ids: Sequence[int], lease: dt.timedelta, *, now: dt.datetime | None = None) -> None:
    """Renew the leases of URLs still in flight (a crawler's heartbeat)."""
    if not ids:
        return
    with db.session() as session:
        session.execute(
            update(CrawlUrl)
            .where(CrawlUrl.id.in_(list(ids)), CrawlUrl.state == CrawlState.LEASED)
            .values(leased_until=(now or utcnow()) + lease)
        )


def apply(db: Database, ops: Sequence[Op], *, now: dt.datetime | None = None) -> list[bool]:
    """Results (finishes and retries) of many URLs in one transaction, a crawler's group commit: each
    URL's result is stored whole, or (the transaction failing) not at all, and its lease then runs out.

    A finish returns True when stored; a retry, True when the URL will be tried again.  Results for URLs
    no longer leased (another crawler took them after our lease ran out) are dropped: theirs stand."""
    if not ops:
        return []
    now = now or utcnow()
    with db.session() as session:
        lock_for_writing(session, "crawl_urls")  # nobody claims between our read and our writes
        ids = [op[0].id if isinstance(op, tuple) else op.claimed.id for op in ops]
        # Ours only while leased to *this* claim: a claim's attempt number identifies it (a crawler whose
        # lease ran out and was claimed again must not overwrite the new holder's result).
        leased = {
            (row.id, row.attempts)
            for row in session.execute(
                select(CrawlUrl.id, CrawlUrl.attempts)
                .where(CrawlUrl.id.in_(ids), CrawlUrl.state == CrawlState.LEASED)
                .with_for_update()  # PostgreSQL: claims skip these rows until we commit
            )
        }
        updates: list[dict[str, Any]] = []
        found: list[dict[str, Any]] = []
        hits: list[dict[str, Any]] = []
        sites: dict[str, list[int]] = {}  # site -> [pages, media, since_match delta, matches]
        matched_sites: set[str] = set()
        out: list[bool] = []
        for op in ops:
            if isinstance(op, Defer):
                key = (op.claimed.id, op.claimed.attempts)
                if key in leased:
                    leased.discard(key)
                    updates.append({
                        "id": op.claimed.id,
                        "state": CrawlState.QUEUED,
                        "next_at": now + dt.timedelta(seconds=op.delay),
                        "leased_until": None,
                        "attempts": op.claimed.attempts - 1,
                    })  # fmt: skip
                out.append(True)
                continue
            if isinstance(op, Retry):
                again = op.claimed.attempts < op.max_attempts
                if (op.claimed.id, op.claimed.attempts) in leased:
                    leased.discard((op.claimed.id, op.claimed.attempts))
                    updates.append({
                        "id": op.claimed.id,
                        "state": CrawlState.QUEUED if again else CrawlState.FAILED,
                        "next_at": now + dt.timedelta(seconds=op.delay),
                        "leased_until": None,
                        "error": op.error[:2000],
                        "cause": op.cause[:32],
                        "fetched_at": None if again else now,
                    })  # fmt: skip
                out.append(again)
                continue
            claimed, result = op
            if (claimed.id, claimed.attempts) not in leased:
                out.append(False)
                continue
            leased.discard((claimed.id, claimed.attempts))
            updates.append({
                "id": claimed.id,
                "state": result.state,
                "status": result.status,
                "kind": result.kind,
                "final_url": result.final_url,
                "size": result.size,
                "error": result.error[:2000],
                "cause": result.cause[:32],
                "fetched_at": now,
                "leased_until": None,
                "matched": bool(result.hits),
            })  # fmt: skip
            found += [_row(url, hint, depth, claimed.id) for url, hint, depth in result.found]
            hits += [{**h, "url_id": claimed.id} for h in result.hits]
            if result.state is CrawlState.DONE and result.kind in ("page", "media"):
                page = result.kind == "page"
                counts = sites.setdefault(claimed.site, [0, 0, 0, 0])
                counts[0 if page else 1] += 1
                counts[2] += 1 if page else 0
                if result.hits:
                    target = sites.setdefault(result.page_site or claimed.site, [0, 0, 0, 0])
                    target[3] += len(result.hits)
                    matched_sites.add(result.page_site or claimed.site)
            out.append(True)
        updates.sort(key=lambda u: u["id"])  # one lock order for every crawler (no deadlocks)
        found.sort(key=lambda r: r["url_hash"])
        hits.sort(key=lambda h: (h["url_id"], h["bank"], h["item_id"]))
        if updates:
            session.execute(update(CrawlUrl), updates)  # one statement per row kind, executed as a batch
        _add_rows(session, found)
        insert = upsert_insert(session)
        for start in range(0, len(hits), INSERT_BATCH):
            session.execute(
                insert(CrawlHit)
                .values(hits[start : start + INSERT_BATCH])
                .on_conflict_do_nothing(index_elements=["url_id", "bank", "item_id"])
            )
        if sites:
            _count_sites(session, sites, matched_sites)
        return out


def _count_sites(session: Session, sites: dict[str, list[int]], matched: set[str]) -> None:
    insert = upsert_insert(session)
    session.execute(
        insert(CrawlSite)
        .values([{"site": s, "pages": 0, "media": 0, "matches": 0, "since_match": 0} for s in sorted(sites)])
        .on_conflict_do_nothing(index_elements=["site"])
    )
    for site, (pages, media, since, matches) in sorted(sites.items()):
        session.execute(
            update(CrawlSite)
            .where(CrawlSite.site == site)
            .values(
                pages=CrawlSite.pages + pages,
                media=CrawlSite.media + media,
                matches=CrawlSite.matches + matches,
                # a match in this batch resets the site's patience (pages after it are not known apart)
                since_match=0 if site in matched else CrawlSite.since_match + since,
            )
        )


def site_counts(db: Database, site: str) -> CrawlSite | None:
    with db.session() as session:
        row = session.get(CrawlSite, site)
        if row is not None:
            session.expunge(row)
        return row


def status(db: Database) -> dict[str, Any]:
    """URLs per state, what was fetched, hits, sites, and ``errors``: failed URLs by cause, and URLs
    waiting to be tried again by the cause of their last failure (with the time the next one is due)."""
    with db.session() as session:
        states = dict(session.execute(select(CrawlUrl.state, func.count()).group_by(CrawlUrl.state)).all())
        kinds = dict(
            session.execute(
                select(CrawlUrl.kind, func.count()).where(CrawlUrl.kind != "").group_by(CrawlUrl.kind)
            ).all()
        )
        hits = session.scalar(select(func.count()).select_from(CrawlHit)) or 0
        sites = session.scalar(select(func.count()).select_from(CrawlSite)) or 0
        failed = dict(
            session.execute(
                select(CrawlUrl.cause, func.count())
                .where(CrawlUrl.state == CrawlState.FAILED)
                .group_by(CrawlUrl.cause)
            ).all()
        )
        waiting = session.execute(
            select(CrawlUrl.cause, func.count(), func.min(CrawlUrl.next_at))
            .where(CrawlUrl.state == CrawlState.QUEUED, CrawlUrl.cause != "")
            .group_by(CrawlUrl.cause)
        ).all()
    return {
        "urls": {CrawlState(s).value: n for s, n in states.items()},
        "fetched": kinds,
        "hits": hits,
        "sites": sites,
        "errors": {
            "failed": {cause or "other": n for cause, n in sorted(failed.items())},
            "retrying": {cause: n for cause, n, _ in sorted(waiting)},
            "next_retry_at": min(aware(at) for _, _, at in waiting).isoformat() if waiting else None,
        },
    }


def has_work(db: Database, *, now: dt.datetime | None = None, within: float | None = None) -> bool:
    """Any URL leased (other crawlers' too), or queued (and, with ``within``, due in that many seconds
    from ``now``)?"""
    queued: Any = CrawlUrl.state == CrawlState.QUEUED
    if within is not None:
        queued = and_(queued, CrawlUrl.next_at <= (now or utcnow()) + dt.timedelta(seconds=within))
    with db.session() as session:
        found = session.scalar(
            select(CrawlUrl.id).where(or_(CrawlUrl.state == CrawlState.LEASED, queued)).limit(1)
        )
        return found is not None


def next_due(db: Database) -> dt.datetime | None:
    """When the next queued URL is due (None: nothing queued)."""
    with db.session() as session:
        at = session.scalar(select(func.min(CrawlUrl.next_at)).where(CrawlUrl.state == CrawlState.QUEUED))
    return aware(at) if at is not None else None


@dataclass(frozen=True)
class KnownFailure:
    url: str
    cause: str
    error: str
    attempts: int
    fetched_at: dt.datetime | None


def failures(
    db: Database, *, cause: str | None = None, urls: Iterable[str] | None = None
) -> list[KnownFailure]:
    """Failed URLs (with ``cause``, or among ``urls`` given in any spelling), oldest id first."""
    query = select(CrawlUrl).where(CrawlUrl.state == CrawlState.FAILED).order_by(CrawlUrl.id)
    if cause is not None:
        query = query.where(CrawlUrl.cause == cause)
    if urls is not None:
        query = query.where(CrawlUrl.url_hash.in_(_hashes(urls)))
    with db.session() as session:
        return [
            KnownFailure(
                r.url, r.cause or "other", r.error, r.attempts, aware(r.fetched_at) if r.fetched_at else None
            )
            for r in session.scalars(query)
        ]


def _hashes(urls: Iterable[str]) -> list[str]:
    out = []
    for raw in urls:
        try:
            out.append(url_hash(normalize(raw)))
        except BadUrl:
            continue
    return out


@dataclass
class Requeued:
    requeued: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    """URLs given that are not in the frontier."""
    not_failed: list[tuple[str, str]] = field(default_factory=list)
    """URLs given that did not fail, with their state."""


def requeue(
    db: Database,
    *,
    urls: Sequence[str] | None = None,
    cause: str | None = None,
    now: dt.datetime | None = None,
) -> Requeued:
    """Put failed URLs back in the queue, due now, with their tries counted afresh: those among
    ``urls``, or those that failed for ``cause``, or (neither given) every failed URL."""
    now = now or utcnow()
    out = Requeued()
    with db.session() as session:
        lock_for_writing(session, "crawl_urls")
        query = select(CrawlUrl.id, CrawlUrl.url, CrawlUrl.url_hash, CrawlUrl.state)
        if urls is not None:
            wanted: dict[str, str] = {}
            for raw in urls:
                try:
                    wanted.setdefault(url_hash(normalize(raw)), raw)
                except BadUrl:
                    out.unknown.append(raw)
            rows = session.execute(query.where(CrawlUrl.url_hash.in_(list(wanted)))).all()
            found = {r.url_hash for r in rows}
            out.unknown += [raw for key, raw in wanted.items() if key not in found]
            out.not_failed += [
                (r.url, CrawlState(r.state).value) for r in rows if r.state != CrawlState.FAILED
            ]
            rows = [r for r in rows if r.state == CrawlState.FAILED]
        else:
            query = query.where(CrawlUrl.state == CrawlState.FAILED)
            if cause is not None:
                query = query.where(CrawlUrl.cause == cause)
            rows = session.execute(query.order_by(CrawlUrl.id)).all()
        ids = [r.id for r in rows]
        for start in range(0, len(ids), INSERT_BATCH):
            session.execute(
                update(CrawlUrl)
                .where(
                    CrawlUrl.id.in_(ids[start : start + INSERT_BATCH]), CrawlUrl.state == CrawlState.FAILED
                )
                .values(
                    state=CrawlState.QUEUED,
                    attempts=0,
                    next_at=now,
                    leased_until=None,
                    fetched_at=None,
                    status=None,
                    kind="",
                    final_url=None,
                    size=None,
                    error="",
                    cause="",
                )
            )
        out.requeued = [r.url for r in rows]
    return out


def hit_rows(db: Database, *, after: int = 0, batch: int = 1000) -> Iterator[dict[str, Any]]:
    """Every hit after id ``after``, oldest first, as plain dicts (the CLI's and the API's output)."""
    last = after
    while True:
        with db.session() as session:
            found = session.scalars(
                select(CrawlHit).where(CrawlHit.id > last).order_by(CrawlHit.id).limit(batch)
            ).all()
            out = [
                {
                    "id": h.id,
                    "media_url": h.media_url,
                    "page_url": h.page_url,
                    "host": h.host,
                    "ip": h.ip,
                    "bank": h.bank,
                    "entry_id": h.entry_id,
                    "item_id": h.item_id,
                    "check": h.check,
                    "distance": h.distance,
                    "sha256": h.sha256,
                    "md5": h.md5,
                    "pdq": h.pdq,
                    "found_at": h.found_at.isoformat(),
                }
                for h in found
            ]
        if not out:
            return
        yield from out
        last = int(out[-1]["id"] or 0)
