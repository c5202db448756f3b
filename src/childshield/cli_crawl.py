"""``childshield crawl``: queue reported URLs, work the frontier, read what was found."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import json
import shlex
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from childshield.cli_app import App
from childshield.cli_bank import DbOption, _database
from childshield.cli_output import err, say

if TYPE_CHECKING:
    from childshield.crawl.crawler import CrawlConfig, Crawler, CrawlStats
    from childshield.net.guard import HostsResolver

crawl_app = App(help="Crawl reported URLs for known material (hotline work).", no_args_is_help=True)


AllowOption = Annotated[
    str, typer.Option(help="Networks allowed although not public (CIDRs, comma-separated).")
]
ResolveOption = Annotated[
    list[str] | None, typer.Option("--resolve", help="Pin HOST=ADDRESS (repeatable), like curl's --resolve.")
]


@crawl_app.command("add")
def crawl_add(
    urls: Annotated[list[str] | None, typer.Argument(help="Reported URLs.")] = None,
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="A file of URLs, one per line ('-': stdin).")
    ] = None,
    source: Annotated[str, typer.Option(help="Where the reports came from (e.g. a hotline's name).")] = "",
    reporter_ref: Annotated[str, typer.Option(help="The report's reference at its source.")] = "",
    db: DbOption = None,
) -> None:
    """Queue reported URLs (a URL already queued or crawled is not queued again; one that failed is
    named, with its reason and how to queue it again: `crawl requeue`)."""
    from childshield.crawl import frontier

    given = list(urls or [])
    if file is not None:
        text = sys.stdin.read() if str(file) == "-" else file.read_text(errors="replace")
        given += [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if not given:
        raise typer.BadParameter("give URLs or --file")
    with _database(db, create=True) as database:
        added, again, refused = frontier.add(database, given, source=source, reporter_ref=reporter_ref)
        failed = frontier.failures(database, urls=given) if again else []
    for reason in refused:
        say(reason, label="refused", style="yellow")
    for f in failed:
        say(f"already crawled and failed ({f.cause}): {f.url}: {f.error}")
        say(f"  to crawl it again: childshield crawl requeue {shlex.quote(f.url)}")
    known = f"{again} already known" + (f", {len(failed)} of them failed" if failed else "")
    err.print(f"queued {added} URLs ({known}, {len(refused)} refused)", highlight=False)
    if (refused or failed) and not added:
        raise typer.Exit(1)


def _resolver(pins: list[str]) -> HostsResolver | None:
    if not pins:
        return None
    import socket

    from childshield.net.guard import HostsResolver

    table: dict[str, list[str]] = {}
    for pin in pins:
        host, _, address = pin.partition("=")
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise typer.BadParameter(f"expected HOST=ADDRESS, got {pin!r}", param_hint="--resolve") from None
        table.setdefault(host.lower(), []).append(address)
    return HostsResolver(table, fallback=socket.getaddrinfo)


@crawl_app.command("run")
def crawl_run(
    allow: AllowOption = "",
    resolve: ResolveOption = None,
    max_depth: Annotated[int, typer.Option(min=0, help="Clicks from a reported page.")] = 3,
    patience: Annotated[
        int, typer.Option(min=1, help="Pages in a row without a match before a site is left.")
    ] = 50,
    max_pages_per_site: Annotated[int, typer.Option(min=1)] = 1000,
    any_site: Annotated[
        bool, typer.Option("--any-site", help="Follow page links to other sites too.")
    ] = False,
    concurrency: Annotated[int, typer.Option(min=1, max=1000)] = 32,
    per_host: Annotated[int, typer.Option(min=1, max=100, help="Requests in flight per host.")] = 4,
    delay: Annotated[float, typer.Option(min=0, help="Seconds between requests to one host.")] = 0.0,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds per fetch.")] = 20.0,
    max_urls: Annotated[int | None, typer.Option(min=1, help="Stop after this many URLs.")] = None,
    lease: Annotated[
        float,
        typer.Option(min=1, help="Seconds a claimed URL is ours; a crawler that dies frees it after this."),
    ] = 120.0,
    processes: Annotated[
        int, typer.Option(min=1, max=64, help="Crawler processes sharing the frontier (one core each).")
    ] = 1,
    wait: Annotated[
        float,
        typer.Option(
            min=0,
            help="Seconds to wait at most for URLs due again later (later ones are left for the next run).",
        ),
    ] = 30.0,
    dns_attempts: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Tries of a URL whose host cannot be resolved for now ($CHILDSHIELD_CRAWL_DNS_ATTEMPTS, 5).",
        ),
    ] = None,
    dns_backoff: Annotated[
        float | None,
        typer.Option(
            min=0, help="Seconds before the first DNS retry, doubling ($CHILDSHIELD_CRAWL_DNS_BACKOFF, 60)."
        ),
    ] = None,
    db: DbOption = None,
) -> None:
    """Work the frontier until it is empty; Ctrl-C (or SIGTERM) stops after the URLs in flight.  A crawl
    killed at any point resumes where it stopped with the next `crawl run`.  Each URL that failed is
    printed with its reason; the exit status is 1 when any did (`crawl requeue` queues them again)."""
    from childshield.crawl import frontier
    from childshield.crawl.crawler import CrawlConfig, Crawler
    from childshield.crawl.settings import dns_retry
    from childshield.matching.matcher import Matcher
    from childshield.net.guard import AddressPolicy

    try:
        policy = AddressPolicy.from_text(allow)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--allow") from None
    try:
        env_attempts, env_backoff = dns_retry()
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    config = CrawlConfig(
        max_depth=max_depth,
        patience=patience,
        max_pages_per_site=max_pages_per_site,
        same_site=not any_site,
        concurrency=concurrency,
        per_host=per_host,
        delay=delay,
        timeout=timeout,
        policy=policy,
        lease=dt.timedelta(seconds=lease),
        resolve=_resolver(list(resolve or [])),
        wait=wait,
        dns_attempts=dns_attempts or env_attempts,
        dns_backoff=env_backoff if dns_backoff is None else dns_backoff,
    )
    if processes > 1:
        stats, broken = _run_processes(db, config, processes, max_urls)
    else:
        broken = False
        with _database(db) as database:
            crawler = Crawler(database, Matcher.load(database), config)
            stats = asyncio.run(_run(crawler, max_urls))
    for url, cause, reason in stats.failures:  # the operator's own tool: the guard's full reason
        say(f"failed ({cause}): {url}: {reason}")
    if stats.failed > len(stats.failures):
        say(f"... and {stats.failed - len(stats.failures)} more (childshield crawl failed lists them all)")
    say(
        f"fetched {stats.fetched} ({stats.pages} pages, {stats.media} media) in {stats.seconds:.1f} s: "
        f"{stats.hits} media matched, {stats.failed} failed, {stats.retried} retried, "
        f"{stats.skipped} skipped"
    )
    with _database(db) as database:
        errors = frontier.status(database)["errors"]
    if errors["retrying"]:
        causes = ", ".join(f"{cause} {n}" for cause, n in errors["retrying"].items())
        say(
            f"{sum(errors['retrying'].values())} URLs wait to be tried again ({causes}), the next at "
            f"{errors['next_retry_at']}: a later `crawl run` (or the service's crawl worker) takes them"
        )
    if stats.failed:
        say("failed URLs by cause: " + ", ".join(f"{c} {n}" for c, n in errors["failed"].items()))
        say("queue them again with: childshield crawl requeue --cause CAUSE (or --all-failed, or the URLs)")
    if stats.failed or broken:
        raise typer.Exit(1)


def _worker(url: str | None, config: CrawlConfig, max_urls: int | None, out: Any) -> None:
    """One crawler process (the frontier's leases keep processes off each other's URLs)."""
    from childshield.crawl.crawler import Crawler
    from childshield.matching.matcher import Matcher
    from childshield.store.db import open_database

    db = open_database(url, migrate=False)
    try:
        out.put(asyncio.run(_run(Crawler(db, Matcher.load(db), config), max_urls, progress=False)))
    finally:
        db.close()


def _run_processes(
    db: str | None, config: CrawlConfig, processes: int, max_urls: int | None
) -> tuple[CrawlStats, bool]:
    """The processes' figures together, and whether any process failed."""
    import multiprocessing

    from childshield.crawl.crawler import CrawlStats
    from childshield.store.db import open_database

    open_database(db).close()  # migrate once, before the processes start
    spawn = multiprocessing.get_context("spawn")
    results: Any = spawn.Queue()
    share = None if max_urls is None else max(1, max_urls // processes)
    children = [spawn.Process(target=_worker, args=(db, config, share, results)) for _ in range(processes)]
    for child in children:
        child.start()
    import queue as _queue

    total = CrawlStats()
    got: list[CrawlStats] = []
    broken = False
    status = err.status("crawling") if err.is_terminal else None
    if status is not None:  # the processes' own counts are theirs: the frontier's are everyone's
        status.start()
    while len(got) < len(children):
        if status is not None:
            status.update(_frontier_line(db, processes))
        try:
            got.append(results.get(timeout=1))
        except KeyboardInterrupt:  # the children got it too: they stop after the URLs in flight
            continue
        except _queue.Empty:
            dead = [c for c in children if not c.is_alive() and c.exitcode not in (0, None)]
            if dead and len(got) + len(dead) >= len(children):
                broken = True
                say(f"(exit {dead[0].exitcode}); what they had in flight is crawled again by the next run",
                    label=f"{len(dead)} crawler process(es) failed", style="red")  # fmt: skip
                break
    if status is not None:
        status.stop()
    for child in children:
        child.join()
    for one in got:
        total.merge(one)
    return total, broken


async def _run(crawler: Crawler, max_urls: int | None, *, progress: bool = True) -> CrawlStats:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    show = progress and err.is_terminal

    async def ticking() -> None:
        with err.status("crawling") as status:
            try:
                while True:
                    status.update(live_line(crawler.stats))
                    await asyncio.sleep(0.5)
            finally:  # the last counts are drawn too, however short the crawl
                status.update(live_line(crawler.stats))

    ticker = asyncio.create_task(ticking()) if show else None
    try:
        return await crawler.run(max_urls=max_urls, stop=stop)
    finally:
        if ticker is not None:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker


def live_line(s: CrawlStats) -> str:
    """The crawl's live line: every outcome counted, failures and retries too (a crawl whose fetches
    all fail, refused by the address guard or unanswered, is not "0 fetched" until the end)."""
    return (
        f"crawling: {s.fetched} fetched ({s.pages} pages, {s.media} media), {s.hits} matched, "
        f"{s.failed} failed, {s.retried} retried, {s.skipped} skipped"
    )


def _frontier_line(db: str | None, processes: int) -> str:
    """The live line of a crawl in several processes, from the frontier they share."""
    from childshield.crawl import frontier
    from childshield.store.db import open_database

    try:
        database = open_database(db, migrate=False)
        try:
            now = frontier.status(database)
        finally:
            database.close()
    except Exception as exc:  # the database busy or away: say so, the crawl goes on
        return f"crawling in {processes} processes (counts unavailable: {type(exc).__name__})"
    urls = now["urls"]
    return (
        f"crawling in {processes} processes: {urls.get('done', 0)} done, {urls.get('failed', 0)} failed, "
        f"{urls.get('skipped', 0)} skipped, {urls.get('queued', 0)} queued, {urls.get('leased', 0)} in "
        f"flight; {now['hits']} hits"
    )


@crawl_app.command("status")
def crawl_status(db: DbOption = None) -> None:
    """URLs per state, what was fetched, hits and sites, and errors by cause (failed URLs, and URLs
    waiting to be tried again), as JSON."""
    from childshield.crawl import frontier

    with _database(db) as database:
        sys.stdout.write(json.dumps(frontier.status(database)) + "\n")


@crawl_app.command("failed")
def crawl_failed(
    cause: Annotated[str | None, typer.Option(help="Only those that failed for this cause.")] = None,
    db: DbOption = None,
) -> None:
    """URLs that failed, as JSON Lines: URL, cause, reason, tries, when."""
    from childshield.crawl import frontier

    with _database(db) as database:
        for f in frontier.failures(database, cause=cause):
            row = {"url": f.url, "cause": f.cause, "error": f.error, "attempts": f.attempts,
                   "failed_at": f.fetched_at.isoformat() if f.fetched_at else None}  # fmt: skip
            sys.stdout.write(json.dumps(row) + "\n")


@crawl_app.command("requeue")
def crawl_requeue(
    urls: Annotated[list[str] | None, typer.Argument(help="Failed URLs to crawl again.")] = None,
    cause: Annotated[
        str | None, typer.Option(help="Every URL that failed for this cause (see `crawl status`).")
    ] = None,
    all_failed: Annotated[bool, typer.Option("--all-failed", help="Every URL that failed.")] = False,
    db: DbOption = None,
) -> None:
    """Queue failed URLs again (their tries counted afresh), e.g. after allowing a network or when DNS
    works again.  Exit 1 when a URL given is unknown or did not fail, or no URL failed for --cause."""
    from childshield.crawl import frontier

    if sum((bool(urls), cause is not None, all_failed)) != 1:
        raise typer.BadParameter("give failed URLs, --cause CAUSE or --all-failed (one of them)")
    with _database(db) as database:
        done = frontier.requeue(database, urls=list(urls) if urls else None, cause=cause)
        left = frontier.status(database)["errors"]["failed"]
    for url in done.unknown:
        say(f"not in the frontier: {url} (childshield crawl add queues it)")
    for url, state in done.not_failed:
        say(f"did not fail ({state}): {url}")
    say(f"requeued {len(done.requeued)} URLs")
    if cause is not None and not done.requeued:
        causes = ", ".join(f"{c} {n}" for c, n in left.items()) or "none"
        say(f"no URL failed for {cause!r}; failed URLs by cause: {causes}")
        raise typer.Exit(1)
    if done.unknown or done.not_failed:
        raise typer.Exit(1)


@crawl_app.command("hits")
def crawl_hits(db: DbOption = None) -> None:
    """Known material found, as JSON Lines: media URL, page, host, bank, entry, check, distance, hashes."""
    from childshield.crawl.frontier import hit_rows

    with _database(db) as database:
        for row in hit_rows(database):
            sys.stdout.write(json.dumps(row) + "\n")


@crawl_app.command("review-unmatched")
def crawl_review_unmatched(
    allow: AllowOption = "",
    resolve: ResolveOption = None,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds per fetch.")] = 20.0,
    db: DbOption = None,
) -> None:
    """Queue for human review the images that matched nothing but were on pages where known material
    was found (fetched again, kept sealed like uploads; each URL once).  Fetches that failed are printed
    with their reason and tried again by the next run (exit 1).  Review settings: docs/review.md."""
    from pathlib import Path as _Path

    from childshield.crawl.unmatched import queue_unmatched
    from childshield.matching.matcher import Matcher
    from childshield.net.guard import AddressPolicy
    from childshield.review.keys import Keyring
    from childshield.web.settings import ServiceSettings

    conf = ServiceSettings()
    keyring = (
        Keyring.load(_Path(conf.media_key_file) if conf.media_key_file else None) if conf.keep_media else None
    )
    with _database(db) as database:
        result = asyncio.run(
            queue_unmatched(
                database,
                Matcher.load(database),
                conf.intake(keyring),
                policy=AddressPolicy.from_text(allow),
                resolve=_resolver(list(resolve or [])),
                timeout=timeout,
            )
        )
    for url, cause, reason in result.failures:
        say(f"failed ({cause}): {url}: {reason}")
    say(
        f"queued {result.queued} for review ({result.already} already queued, {result.gone} gone, "
        f"{result.changed} no longer an image, {result.matched_now} match now, {result.failed} failed)"
    )
    if result.failed:
        raise typer.Exit(1)
