"""The crawler: works the frontier until it is empty (or stopped), politely, resumably.

Each URL is fetched once.  What it is comes from its bytes: an image is hashed in memory (never
stored) and matched against the banks, each match a hit with the page it was found on; an HTML page
gives links and media.  Bounds: depth, pages per site, same site (media may come from anywhere, as
sites use CDNs), and **patience**: a site stops being explored once ``patience`` pages in a row were
fetched from it without a match (the way Arachnid keeps crawling where material is found and leaves
where it no longer is).  Reported URLs (seeds) are always fetched.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import httpx

from childshield.crawl import frontier
from childshield.crawl.extract import extract
from childshield.crawl.frontier import Claimed, Finished
from childshield.crawl.politeness import HostGate
from childshield.crawl.urls import host_of, site_of
from childshield.matching.matcher import Matcher
from childshield.matching.scan import ScanResult, scan_bytes
from childshield.media.errors import MediaError
from childshield.net.afetch import Answer, CrawlFetchError, fetch_answer
from childshield.net.guard import AddressPolicy, Resolver
from childshield.net.hops import DNS, no_cookies
from childshield.store.db import Database
from childshield.store.models import CrawlState, utcnow

log = logging.getLogger("childshield.crawl")


@dataclass(frozen=True)
class CrawlConfig:
    max_depth: int = 3
    """Links followed from a reported page: pages this many clicks away (media one more)."""
    max_pages_per_site: int = 1000
    patience: int = 50
    """Pages in a row without a match after which a site is no longer explored."""
    same_site: bool = True
    """Follow page links only within the page's site (media is fetched from any host)."""
    concurrency: int = 32
    per_host: int = 4
    delay: float = 0.0
    """Seconds between request starts to one host."""
    timeout: float = 20.0
    max_page_bytes: int = 5 * 1024 * 1024
    max_media_bytes: int = 50 * 1024 * 1024
    max_attempts: int = 3
    dns_attempts: int = 5
    """Tries of a URL whose host name the resolver could not resolve for now (a temporary DNS failure:
    a resolver timeout or outage); a name that does not exist fails at once."""
    dns_backoff: float = 60.0
    """Seconds before the first retry after a temporary DNS failure, doubling with each (at most
    ``dns_backoff_max``)."""
    dns_backoff_max: float = 3600.0
    wait: float = 30.0
    """A run that stops when the frontier is empty (``idle_exit``) waits at most this many seconds for
    URLs due later (retries, paused hosts); those due later are left for the next run."""
    lease: dt.timedelta = dt.timedelta(minutes=2)
    policy: AddressPolicy = field(default_factory=AddressPolicy)
    resolve: Resolver | None = None
    clock: Callable[[], dt.datetime] = utcnow
    """The frontier's time (claims, leases, retry times): tests move it instead of sleeping."""

    def dns_delay(self, attempt: int) -> float:
        """Seconds to wait after the ``attempt``-th try failed for a temporary DNS failure."""
        return float(min(self.dns_backoff_max, self.dns_backoff * 2 ** max(0, min(attempt - 1, 30))))


@dataclass
class CrawlStats:
    fetched: int = 0
    pages: int = 0
    media: int = 0
    hits: int = 0
    """Media that matched something."""
    failed: int = 0
    retried: int = 0
    skipped: int = 0
    seconds: float = 0.0
    failures: list[tuple[str, str, str]] = field(default_factory=list)
    """(URL, cause, reason) of URLs that failed in this run (the first ``MAX_LISTED``)."""

    def add_failure(self, url: str, cause: str, reason: str) -> None:
        self.failed += 1
        if len(self.failures) < MAX_LISTED:
            self.failures.append((url, cause, reason))

    def merge(self, other: CrawlStats) -> None:
        """Add another crawler's figures (one of several processes)."""
        for name in ("fetched", "pages", "media", "hits", "failed", "retried", "skipped"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.seconds = max(self.seconds, other.seconds)
        self.failures += other.failures[: max(0, MAX_LISTED - len(self.failures))]


MAX_LISTED = 1000
"""Failures a run keeps to show (all are counted, and all are in the frontier: ``crawl failed``)."""


INTERNAL = "internal"
"""The cause of a URL whose handling raised (a bug, or the database away)."""
GROUP_COMMIT = 256
"""Results stored per transaction at most."""
T = TypeVar("T")
Op = frontier.Op


class Crawler:
    def __init__(
        self, db: Database, matcher: Matcher | Callable[[bytes], ScanResult], config: CrawlConfig
    ) -> None:
        """``matcher``: the banks' matcher, or a function scanning bytes with one (the service's, which
        keeps its matcher current under a lock)."""
        self.db = db
        self._scan = (lambda data: scan_bytes(matcher, data)) if isinstance(matcher, Matcher) else matcher
        self.config = config
        self.gate = HostGate(config.per_host, config.delay)
        self.stats = CrawlStats()
        # Every database call goes through one thread (SQLite has one writer: threads queueing on its lock
        # would sleep), and results are committed in groups by one writer task.
        self._db_thread = ThreadPoolExecutor(1, thread_name_prefix="crawl-db")
        self._writes: asyncio.Queue[tuple[Op, asyncio.Future[int | bool]]] | None = None
        self._parents: dict[int, str | None] = {}
        self._inflight: dict[int, Claimed] = {}

    async def _db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._db_thread, partial(fn, *args, **kwargs))

    async def _store(self, op: Op) -> int | bool:
        """Queue a result for the next group commit; returns once it is committed."""
        assert self._writes is not None
        done: asyncio.Future[int | bool] = asyncio.get_running_loop().create_future()
        await self._writes.put((op, done))
        return await done

    async def _writer(self) -> None:
        assert self._writes is not None
        while True:
            batch = [await self._writes.get()]
            while not self._writes.empty() and len(batch) < GROUP_COMMIT:
                batch.append(self._writes.get_nowait())
            try:
                results = await self._db(
                    frontier.apply, self.db, [op for op, _ in batch], now=self.config.clock()
                )
            except Exception as exc:  # the transaction failed: nothing of it was stored
                log.exception("storing %d crawl results failed", len(batch))
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for (_, done), result in zip(batch, results, strict=True):
                if not done.done():
                    done.set_result(result)

    async def run(
        self, *, max_urls: int | None = None, stop: asyncio.Event | None = None, idle_exit: bool = True
    ) -> CrawlStats:
        """Work the frontier; returns when it is empty (``idle_exit``), ``max_urls`` were handled, or
        ``stop`` is set."""
        start = time.monotonic()
        self._writes = asyncio.Queue()
        running: set[asyncio.Task[None]] = set()
        helpers = [asyncio.create_task(self._writer()), asyncio.create_task(self._heartbeat())]
        try:
            await self._crawl(stop or asyncio.Event(), max_urls, idle_exit, running)
        finally:  # on an error too: nothing is left waiting (their leases run out, they are tried again)
            for task in [*running, *helpers]:
                task.cancel()
            for task in [*running, *helpers]:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self._inflight.clear()
        self.stats.seconds = time.monotonic() - start
        return self.stats

    def close(self) -> None:
        self._db_thread.shutdown(wait=True)

    async def _heartbeat(self) -> None:
        """Renew the leases of the URLs in flight (a URL waiting for its host keeps its lease)."""
        every = max(0.5, self.config.lease.total_seconds() / 3)
        while True:
            await asyncio.sleep(every)
            with contextlib.suppress(Exception):  # the database away: the next beat tries again
                await self._db(
                    frontier.extend, self.db, list(self._inflight), self.config.lease, now=self.config.clock()
                )

    async def _crawl(
        self, stop: asyncio.Event, max_urls: int | None, idle_exit: bool, running: set[asyncio.Task[None]]
    ) -> None:
        taken = 0
        async with _Clients(self.config.per_host) as client:
            while not stop.is_set():
                room = self.config.concurrency * 2 - len(running)
                if max_urls is not None:
                    room = min(room, max_urls - taken)
                gave_up: list[tuple[str, str]] = []
                batch = (
                    await self._db(
                        frontier.claim,
                        self.db,
                        room,
                        self.config.lease,
                        now=self.config.clock(),
                        max_attempts=self.config.max_attempts,
                        gave_up=gave_up,
                    )
                    if room > 0
                    else []
                )
                for url, reason in gave_up:
                    self.stats.add_failure(url, frontier.STALLED, reason)
                for claimed in batch:
                    task = asyncio.create_task(self._one(client, claimed))
                    running.add(task)
                    task.add_done_callback(running.discard)
                taken += len(batch)
                if max_urls is not None and taken >= max_urls and not running:
                    break
                if not batch:
                    if running:
                        await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED, timeout=0.5)
                        continue
                    if idle_exit and not await self._db(
                        frontier.has_work, self.db, now=self.config.clock(), within=self.config.wait
                    ):
                        break
                    await asyncio.sleep(0.2)  # work is only leased elsewhere, or not yet due
                    continue
                while len(running) >= self.config.concurrency:
                    await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            if running:
                await asyncio.wait(running)

    async def _one(self, client: _Clients, claimed: Claimed) -> None:
        self._inflight[claimed.id] = claimed
        try:
            await self._handle(client, claimed)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug or the database away: leave it to be retried, keep crawling
            log.exception("crawling %s failed", claimed.url[:200])
            with contextlib.suppress(Exception):  # else its lease runs out and it is tried again
                reason = f"internal error: {type(exc).__name__}: {str(exc)[:300]}"
                retry = frontier.Retry(claimed, reason, 60, self.config.max_attempts, INTERNAL)
                if not await self._store(retry):
                    self.stats.add_failure(claimed.url, INTERNAL, reason)
        finally:
            self._inflight.pop(claimed.id, None)

    async def _retry(
        self, claimed: Claimed, error: str, wait: float, cause: str, most: int | None = None
    ) -> bool:
        """Back in the queue for another try after ``wait`` seconds (True), or failed after ``most``
        tries (False, counted as failed with its reason)."""
        again = await self._store(
            frontier.Retry(claimed, error, wait, most or self.config.max_attempts, cause)
        )
        if again:
            self.stats.retried += 1
        else:
            self.stats.add_failure(claimed.url, cause, error)
        return bool(again)

    async def _handle(self, clients: _Clients, claimed: Claimed) -> None:
        c = self.config
        if not claimed.seed and claimed.hint == "page" and await self._db(self._out_of_bounds, claimed):
            self.stats.skipped += 1
            await self._store((claimed, Finished(state=CrawlState.SKIPPED)))
            return
        host = host_of(claimed.url)
        pause = self.gate.paused_for(host)
        if pause > 1.0:  # the host asked for a pause: back in the queue, not waiting here holding a slot
            await self._store(frontier.Defer(claimed, pause))
            return
        limit = c.max_media_bytes if claimed.hint == "media" else max(c.max_page_bytes, c.max_media_bytes)
        try:
            async with self.gate.slot(host):
                answer = await fetch_answer(
                    clients.get(host),
                    claimed.url,
                    c.policy,
                    max_bytes=limit,
                    timeout=c.timeout,
                    resolve=c.resolve,
                    page_bytes=c.max_page_bytes,
                )
        except CrawlFetchError as exc:  # the crawl's record is for its operators: the full reason
            if exc.retry and exc.cause == DNS:  # the resolver had no answer now: ask again, later and later
                await self._retry(claimed, exc.detail, c.dns_delay(claimed.attempts), DNS, c.dns_attempts)
                return
            if exc.retry:
                await self._retry(claimed, exc.detail, self.gate.slow_down(host, None), exc.cause)
                return
            self.stats.add_failure(claimed.url, exc.cause, exc.detail)
            await self._store((claimed, Finished(state=CrawlState.FAILED, error=exc.detail, cause=exc.cause)))
            return
        self.stats.fetched += 1
        if answer.status in (429, 503) or answer.status >= 500:
            wait = self.gate.slow_down(host, answer.retry_after)
            await self._retry(
                claimed, f"HTTP {answer.status} from {answer.url[:200]}", wait, f"http-{answer.status}"
            )
            return  # tried again later, or failed after its tries (the host never answered otherwise)
        self.gate.doing_fine(host)
        page = await self._db(self._page_of, claimed) if claimed.hint == "media" else None
        result = await asyncio.to_thread(self._result, claimed, answer, page)
        await self._store((claimed, result))

    def _out_of_bounds(self, claimed: Claimed) -> bool:
        counts = frontier.site_counts(self.db, claimed.site)
        if counts is None:
            return False
        return counts.pages >= self.config.max_pages_per_site or counts.since_match >= self.config.patience

    def _result(self, claimed: Claimed, answer: Answer, page: str | None) -> Finished:
        base = Finished(
            status=answer.status,
            final_url=answer.url if answer.url != claimed.url else None,
            size=len(answer.body),
            kind=answer.kind,
        )
        if answer.status != 200:
            base.error = f"HTTP {answer.status}"
            return base
        if base.kind == "media":
            self.stats.media += 1
            return self._media(claimed, answer, base, page)
        if base.kind == "page":
            self.stats.pages += 1
            self._links(claimed, answer, base)
        return base

    def _media(self, claimed: Claimed, answer: Answer, base: Finished, page: str | None) -> Finished:
        try:
            scanned = self._scan(answer.body)
        except MediaError as exc:
            base.error = f"not hashed: {exc}"
            return base
        h = scanned.hashes
        assert h is not None
        base.page_site = site_of(page) if page else None
        for m in scanned.matches:
            base.hits.append(
                {
                    "page_id": claimed.parent_id,
                    "media_url": answer.url,
                    "page_url": page,
                    "host": host_of(answer.url)[:255],
                    "ip": answer.ip,
                    "bank": m.bank,
                    "entry_id": m.entry_id,
                    "item_id": m.item_id,
                    "check": m.check or m.signal_type,
                    "distance": m.distance,
                    "sha256": h.sha256,
                    "md5": h.md5,
                    "pdq": h.pdq,
                }
            )
        self.stats.hits += 1 if base.hits else 0  # media that matched (each entry it matched is a row)
        return base

    def _page_of(self, claimed: Claimed) -> str | None:
        """The URL of the page a media URL was found on (remembered for the page's other media)."""
        if claimed.parent_id is None:
            return None
        if claimed.parent_id in self._parents:
            return self._parents[claimed.parent_id]
        from childshield.store.models import CrawlUrl

        with self.db.session() as session:
            parent = session.get(CrawlUrl, claimed.parent_id)
            url = (parent.final_url or parent.url) if parent is not None else None
        if len(self._parents) > 10_000:
            self._parents.clear()
        self._parents[claimed.parent_id] = url
        return url

    def _links(self, claimed: Claimed, answer: Answer, base: Finished) -> None:
        c = self.config
        try:
            text = answer.body.decode(_charset(answer.content_type), errors="replace")
        except (LookupError, UnicodeError, ValueError):  # codecs such as idna refuse errors="replace"
            text = answer.body.decode("utf-8", errors="replace")
        found = extract(text, answer.url)
        depth = claimed.depth + 1
        site = site_of(answer.url)
        for url in found.media:
            base.found.append((url, "media", depth))
        if depth > c.max_depth:
            return
        for url in found.pages:
            if c.same_site and site_of(url) != site:
                continue
            base.found.append((url, "page", depth))


class _Clients:
    """One HTTP client (connection pool) per host: httpx's pool looks at every connection it holds for
    every request, so one large pool for all hosts costs more than the crawl itself."""

    def __init__(self, per_host: int, *, max_hosts: int = 2000) -> None:
        self.limits = httpx.Limits(max_connections=per_host, max_keepalive_connections=per_host)
        self.max_hosts = max_hosts
        self._clients: dict[str, httpx.AsyncClient] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def get(self, host: str) -> httpx.AsyncClient:
        client = self._clients.pop(host, None)
        if client is None:
            client = httpx.AsyncClient(
                follow_redirects=False, trust_env=False, limits=self.limits, cookies=no_cookies()
            )
            if len(self._clients) >= self.max_hosts:  # close the least recently used
                oldest = next(iter(self._clients))
                task = asyncio.create_task(self._clients.pop(oldest).aclose())
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
        self._clients[host] = client  # most recently used last
        return client

    async def __aenter__(self) -> _Clients:
        return self

    async def __aexit__(self, *_: object) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()
        if self._closing:
            await asyncio.wait(self._closing)


def _charset(content_type: str) -> str:
    for part in content_type.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.lower() == "charset" and value:
            name = value.strip("\"' ").lower()
            try:
                "".encode(name)
                return name
            except LookupError:
                break
    return "utf-8"
