"""``childshield crawl``: queue reported URLs, work the frontier, read what was found."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from childshield.cli_bank import DbOption, _database

if TYPE_CHECKING:
    from childshield.crawl.crawler import CrawlConfig, Crawler, CrawlStats
    from childshield.crawl.guard import HostsResolver

crawl_app = typer.Typer(help="Crawl reported URLs for known material (hotline work).", no_args_is_help=True)
err = Console(stderr=True)


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
    """Queue reported URLs (a URL already queued or crawled is not queued again)."""
    from childshield.crawl import frontier

    given = list(urls or [])
    if file is not None:
        text = sys.stdin.read() if str(file) == "-" else file.read_text(errors="replace")
        given += [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if not given:
        raise typer.BadParameter("give URLs or --file")
    with _database(db, create=True) as database:
        added, again, refused = frontier.add(database, given, source=source, reporter_ref=reporter_ref)
    for reason in refused:
        err.print(f"[yellow]refused[/] {reason}", highlight=False)
    err.print(f"queued {added} URLs ({again} already known, {len(refused)} refused)")
    if refused and not added:
        raise typer.Exit(1)


def _resolver(pins: list[str]) -> HostsResolver | None:
    if not pins:
        return None
    import socket

    from childshield.crawl.guard import HostsResolver

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
    db: DbOption = None,
) -> None:
    """Work the frontier until it is empty; Ctrl-C (or SIGTERM) stops after the URLs in flight.  A crawl
    killed at any point resumes where it stopped with the next `crawl run`."""
    from childshield.crawl.crawler import CrawlConfig, Crawler
    from childshield.crawl.guard import AddressPolicy
    from childshield.matching.matcher import Matcher

    try:
        policy = AddressPolicy.from_text(allow)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--allow") from None
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
    )
    if processes > 1:
        stats = _run_processes(db, config, processes, max_urls)
    else:
        with _database(db) as database:
            crawler = Crawler(database, Matcher.load(database), config)
            stats = asyncio.run(_run(crawler, max_urls))
    err.print(
        f"fetched {stats.fetched} ({stats.pages} pages, {stats.media} media) in {stats.seconds:.1f} s: "
        f"{stats.hits} media matched, {stats.failed} failed, {stats.retried} to retry, "
        f"{stats.skipped} skipped"
    )


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


def _run_processes(db: str | None, config: CrawlConfig, processes: int, max_urls: int | None) -> CrawlStats:
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
    while len(got) < len(children):
        try:
            got.append(results.get(timeout=1))
        except KeyboardInterrupt:  # the children got it too: they stop after the URLs in flight
            continue
        except _queue.Empty:
            dead = [c for c in children if not c.is_alive() and c.exitcode not in (0, None)]
            if dead and len(got) + len(dead) >= len(children):
                err.print(f"[red]{len(dead)} crawler process(es) failed[/] (exit {dead[0].exitcode}); "
                          "what they had in flight is crawled again by the next run")  # fmt: skip
                break
    for child in children:
        child.join()
    for one in got:
        for name in ("fetched", "pages", "media", "hits", "failed", "retried", "skipped"):
            setattr(total, name, getattr(total, name) + getattr(one, name))
        total.seconds = max(total.seconds, one.seconds)
    return total


async def _run(crawler: Crawler, max_urls: int | None, *, progress: bool = True) -> CrawlStats:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    show = progress and err.is_terminal

    async def ticking() -> None:
        with err.status("crawling") as status:
            while True:
                s = crawler.stats
                status.update(
                    f"crawling: {s.fetched} fetched, {s.pages} pages, {s.media} media, {s.hits} matched"
                )
                await asyncio.sleep(0.5)

    ticker = asyncio.create_task(ticking()) if show else None
    try:
        return await crawler.run(max_urls=max_urls, stop=stop)
    finally:
        if ticker is not None:
            ticker.cancel()


@crawl_app.command("status")
def crawl_status(db: DbOption = None) -> None:
    """URLs per state, what was fetched, hits and sites, as JSON."""
    from childshield.crawl import frontier

    with _database(db) as database:
        sys.stdout.write(json.dumps(frontier.status(database)) + "\n")


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
    was found (fetched again, kept sealed like uploads; each URL once).  Review settings: docs/review.md."""
    from pathlib import Path as _Path

    from childshield.crawl.guard import AddressPolicy
    from childshield.crawl.unmatched import queue_unmatched
    from childshield.matching.matcher import Matcher
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
    err.print(
        f"queued {result.queued} for review ({result.already} already queued, {result.gone} gone, "
        f"{result.matched_now} match now)"
    )
