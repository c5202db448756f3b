"""Crawler throughput and memory on a closed web over loopback (benign generated images only).

A web server in its own process serves ``--sites`` sites, each an unbounded tree of pages: page ``n``
links to pages ``5n+1 .. 5n+5`` and shows ``--images-per-page`` images drawn from a pool of small
generated JPEGs (a tenth of the pool is in the bank, so some media match).  The crawler runs in this
process against the embedded SQLite database (or ``--db``): pages/s and media/s over ``--duration``
seconds, the crawler's CPU, and its resident memory.  With ``--frontier N`` the frontier is first
filled with N queued URLs (1M: the memory run), to show that memory does not grow with the frontier.

    python benchmarks/bench_crawl.py                         # 60 s, 20 sites
    python benchmarks/bench_crawl.py --frontier 1000000      # with a 1M-URL frontier
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import multiprocessing
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

from childshield.banks import create_bank
from childshield.banks.entries import add_outcomes
from childshield.crawl import frontier
from childshield.crawl.crawler import CrawlConfig, Crawler
from childshield.hashing.result import HashOutcome
from childshield.hashing.service import hash_bytes
from childshield.matching.matcher import Matcher
from childshield.net.guard import AddressPolicy, HostsResolver
from childshield.store.db import open_database
from childshield.testing.corpus import encode, generated_photo

POOL = 200


def pool() -> list[bytes]:
    return [encode(generated_photo(7000 + k, 160, 120), "JPEG", quality=85) for k in range(POOL)]


def serve(port_queue: multiprocessing.Queue, sites: int, per_page: int) -> None:  # type: ignore[type-arg]
    """The web: a minimal HTTP/1.1 keep-alive server on 127.0.0.(2+k) for each site."""
    images = pool()

    def body(path: str) -> tuple[bytes, str]:
        if path.startswith("/img/"):
            n = int(path[5:].split(".")[0])
            return images[n % POOL], "image/jpeg"
        n = int(path[2:] or 0) if path.startswith("/p") else 0
        links = "".join(f"<a href='/p{5 * n + k}'>page {5 * n + k}</a> " for k in range(1, 6))
        imgs = "".join(f"<img src='/img/{n * per_page + k}.jpg' alt=''>" for k in range(per_page))
        head = f"<!doctype html><html><head><title>page {n}</title></head>"
        html = f"{head}<body><h1>{n}</h1>{links}{imgs}</body></html>"
        return html.encode(), "text/html; charset=utf-8"

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1].decode()
                try:
                    data, ctype = body(path)
                    status = b"200 OK"
                except ValueError:
                    data, ctype, status = b"not found", "text/plain", b"404 Not Found"
                writer.write(
                    b"HTTP/1.1 " + status + b"\r\nContent-Type: " + ctype.encode()
                    + b"\r\nContent-Length: " + str(len(data)).encode() + b"\r\n\r\n" + data
                )  # fmt: skip
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        servers = []
        for k in range(sites):
            server = await asyncio.start_server(handle, f"127.0.0.{k + 2}", 0, backlog=1024)
            servers.append(server)
            port_queue.put((k, server.sockets[0].getsockname()[1]))
        await asyncio.Event().wait()

    asyncio.run(main())


def rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _crawl_process(url: str, config: CrawlConfig, duration: float, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    db = open_database(url, migrate=False)
    crawler = Crawler(db, Matcher.load(db), config)

    async def run() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(duration, stop.set)
        await crawler.run(stop=stop, idle_exit=False)

    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    asyncio.run(run())
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    s = crawler.stats
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    out.put({"pages": s.pages, "media": s.media, "fetched": s.fetched, "hits": s.hits, "seconds": s.seconds,
             "cpu": cpu, "rss": rss_mb()})  # fmt: skip


def run_processes(args: argparse.Namespace, url: str, config: CrawlConfig) -> None:
    results: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    procs = [
        multiprocessing.Process(target=_crawl_process, args=(url, config, args.duration, results))
        for _ in range(args.processes)
    ]
    for proc in procs:
        proc.start()
    got = [results.get(timeout=args.duration + 120) for _ in procs]
    for proc in procs:
        proc.join(30)
    seconds = max(g["seconds"] for g in got)
    pages, media = sum(g["pages"] for g in got), sum(g["media"] for g in got)
    summary = {
        "processes": args.processes,
        "pages_per_s": round(pages / seconds, 1),
        "media_per_s": round(media / seconds, 1),
        "urls_per_s": round((pages + media) / seconds, 1),
        "crawler_cores": round(sum(g["cpu"] for g in got) / seconds, 2),
        "rss_mb_each": [round(g["rss"], 1) for g in got],
        "seconds": round(seconds, 1),
    }
    print(json.dumps(summary))
    print(f"{args.processes} processes: {pages / seconds:.1f} pages/s, {media / seconds:.1f} media/s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sites", type=int, default=20)
    p.add_argument("--images-per-page", type=int, default=2)
    p.add_argument("--duration", type=float, default=60)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--per-host", type=int, default=8)
    p.add_argument("--frontier", type=int, default=0, help="pre-fill the frontier with this many URLs")
    p.add_argument("--db", default=None)
    p.add_argument("--processes", type=int, default=1, help="crawler processes sharing the frontier")
    args = p.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="bench-crawl-"))
    db = open_database(args.db or f"sqlite:///{folder / 'crawl.db'}")
    images = pool()
    create_bank(db, "known")
    add_outcomes(
        db, "known", [HashOutcome(f"k{k}", result=hash_bytes(images[k])) for k in range(0, POOL, 10)]
    )
    matcher = Matcher.load(db)

    ports: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    web = multiprocessing.Process(target=serve, args=(ports, args.sites, args.images_per_page), daemon=True)
    web.start()
    found = dict(ports.get(timeout=30) for _ in range(args.sites))
    names = {f"site{k}.test": f"127.0.0.{k + 2}" for k in range(args.sites)}
    seeds = [f"http://site{k}.test:{found[k]}/p0" for k in range(args.sites)]

    fill_seconds = 0.0
    if args.frontier:
        start = time.perf_counter()
        step = 20_000
        for first in range(0, args.frontier, step):  # deep pages of the trees: queued, fetched later
            frontier.add(
                db, [f"http://site{n % args.sites}.test:{found[n % args.sites]}/p{10_000_000 + n}"
                     for n in range(first, min(args.frontier, first + step))]
            )  # fmt: skip
        fill_seconds = time.perf_counter() - start
    frontier.add(db, seeds, source="bench")

    config = CrawlConfig(
        max_depth=1000,
        patience=10**9,
        max_pages_per_site=10**9,
        concurrency=args.concurrency,
        per_host=args.per_host,
        timeout=30,
        policy=AddressPolicy((ipaddress.ip_network("127.0.0.0/8"),)),
        resolve=HostsResolver(names),
    )
    if args.processes > 1:
        run_processes(args, db.url, config)
        web.kill()
        db.close()
        if not args.db:
            shutil.rmtree(folder, ignore_errors=True)
        return
    crawler = Crawler(db, matcher, config)
    rss_start = rss_mb()
    stop = asyncio.Event()
    peak = [rss_start]

    async def run() -> None:
        async def watch() -> None:
            await asyncio.sleep(args.duration)
            stop.set()

        async def sample() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], rss_mb())
                await asyncio.sleep(1)

        tasks = [asyncio.create_task(watch()), asyncio.create_task(sample())]
        await crawler.run(stop=stop, idle_exit=False)
        for t in tasks:
            t.cancel()

    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    asyncio.run(run())
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    s = crawler.stats
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    out = {
        "sites": args.sites,
        "seconds": round(s.seconds, 1),
        "pages": s.pages,
        "media": s.media,
        "pages_per_s": round(s.pages / s.seconds, 1),
        "media_per_s": round(s.media / s.seconds, 1),
        "urls_per_s": round(s.fetched / s.seconds, 1),
        "matched_media": s.hits,
        "failed": s.failed,
        "crawler_cpu_s": round(cpu, 1),
        "crawler_cores": round(cpu / s.seconds, 2),
        "frontier_prefill": args.frontier,
        "prefill_seconds": round(fill_seconds, 1),
        "rss_start_mb": round(rss_start, 1),
        "rss_peak_mb": round(peak[0], 1),
        "rss_end_mb": round(rss_mb(), 1),
        "db_mb": round(sum(f.stat().st_size for f in folder.glob("crawl.db*")) / 1e6, 1)
        if not args.db
        else None,
        "cpus": os.cpu_count(),
    }
    db.close()
    if not args.db:
        shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps(out))
    print(
        f"{out['pages_per_s']} pages/s, {out['media_per_s']} media/s ({out['urls_per_s']} URLs/s) over "
        f"{out['seconds']} s; crawler {out['crawler_cores']} cores; RSS {out['rss_start_mb']} -> "
        f"{out['rss_end_mb']} MB (peak {out['rss_peak_mb']}); frontier prefill {args.frontier}"
    )
    web.kill()


if __name__ == "__main__":
    main()
