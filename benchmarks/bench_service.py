"""Load on the HTTP API: sustained scans of 1-megapixel JPEGs against a bank of a million hashes, over
loopback, with 1 and 2 workers of ``childshield serve``.

Benign images only (seeded generated photos).  The bank holds ``--hashes`` random PDQ hashes (imported,
as a shared hash list would be) plus ``--known`` generated photos added from media, so that some scans
match; the scanned JPEGs are ``--images`` distinct generated photos (one in ten of them known).

Reported per worker count: requests per second, latency p50/p90/p99 (client side, including the upload),
errors, and the resident memory of the server's processes at the start, the end and the peak of the run
(growth over a long ``--duration`` shows a leak).  The load client runs on the same machine and takes
CPU from the server: its own CPU time is reported too.

Examples::

    python benchmarks/bench_service.py                                   # 1M hashes, 60 s per run
    python benchmarks/bench_service.py --duration 600 --workers 2        # the 10-minute memory run
    python benchmarks/bench_service.py --folder /tmp/svc --reuse          # keep the bank between runs
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

from childshield.accounts.service import create_api_key, create_user
from childshield.banks.entries import add_outcomes, import_rows
from childshield.banks.formats import Parsed, SignalRow
from childshield.banks.service import create_bank
from childshield.hashing.result import HashOutcome
from childshield.hashing.service import HashOptions, hash_bytes
from childshield.matching.matcher import Matcher
from childshield.store.db import open_database
from childshield.store.models import Role, SignalType
from childshield.testing.corpus import encode, generated_photo


def jpeg_1mp(seed: int) -> bytes:
    pixels = generated_photo(seed, 640, 480)
    big = Image.fromarray(pixels).resize((1155, 866), Image.Resampling.BICUBIC)  # 1.0 MP
    return encode(np.asarray(big), "JPEG", quality=90)


def prepare(
    folder: Path, hashes: int, known: int, images: int, reuse: bool, policy: dict[str, Any]
) -> tuple[str, str, list[bytes]]:
    folder.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{folder / 'service.db'}"
    marker = folder / "ready.json"
    photos = [jpeg_1mp(50_000 + k) for k in range(images)]
    if reuse and marker.is_file():
        return url, json.loads(marker.read_text())["key"], photos
    for stale in folder.glob("service.db*"):
        stale.unlink()
    db = open_database(url)
    create_bank(db, "shared", description="random stand-in for a shared hash list", policy=policy)
    rng = np.random.default_rng(1)
    start = time.perf_counter()
    batch = 200_000
    for first in range(0, hashes, batch):
        values = rng.integers(0, 2**63, size=(min(batch, hashes - first), 4), dtype=np.uint64)
        rows = [
            SignalRow(first + k + 1, SignalType.PDQ, "".join(f"{int(w):016x}" for w in row))
            for k, row in enumerate(values)
        ]
        import_rows(db, "shared", Parsed(rows=rows), source_name="random")
        print(f"  imported {first + len(rows):,} hashes", file=sys.stderr)
    create_bank(db, "known", policy=policy)
    options = HashOptions(bank_variants=True, local_features=True)
    outcomes = [
        HashOutcome(f"known-{k}.jpg", hash_bytes(photos[k * (images // max(1, known))], options))
        for k in range(known)
    ]
    add_outcomes(db, "known", outcomes)
    print(f"  bank ready in {time.perf_counter() - start:.0f} s; building the index", file=sys.stderr)
    Matcher.load(db)  # build and save the index once, as the first start of a service would
    create_user(db, "load", Role.SERVICE)
    key = create_api_key(db, "load")
    db.close()
    marker.write_text(json.dumps({"key": key}))
    return url, key, photos


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children, in MB."""
    total = 0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


async def load(base: str, key: str, photos: list[bytes], duration: float, concurrency: int) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    matched = 0
    stop = time.monotonic() + duration
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/octet-stream"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30, limits=limits) as client:

        async def worker(seed: int) -> None:
            nonlocal matched
            rng = random.Random(seed)
            while time.monotonic() < stop:
                data = photos[rng.randrange(len(photos))]
                start = time.perf_counter()
                try:
                    r = await client.post("/v1/scan", content=data)
                    code = r.status_code
                    matched += code == 200 and r.json()["matched"]
                except httpx.HTTPError:
                    code = 0
                latencies.append(time.perf_counter() - start)
                statuses[code] = statuses.get(code, 0) + 1

        began = time.monotonic()
        await asyncio.gather(*(worker(k) for k in range(concurrency)))
        elapsed = time.monotonic() - began
    ok = statuses.get(200, 0)
    q = np.percentile(np.array(latencies) * 1000, [50, 90, 99]) if latencies else [float("nan")] * 3
    return {
        "requests": len(latencies),
        "ok": ok,
        "matched": matched,
        "statuses": statuses,
        "rps": ok / elapsed,
        "p50_ms": float(q[0]),
        "p90_ms": float(q[1]),
        "p99_ms": float(q[2]),
    }


def run_service(
    url: str, key: str, photos: list[bytes], workers: int, args: argparse.Namespace
) -> dict[str, Any]:
    port = free_port()
    env = {**os.environ, "CHILDSHIELD_SCAN_RATE": "0"}
    command = [
        sys.executable,
        "-m",
        "childshield.cli",
        "serve",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    server = subprocess.Popen(
        [*command, "--db", url, "--log-level", "warning"], env=env, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/v1/ready", timeout=30).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("the service did not become ready")
            time.sleep(0.2)
        asyncio.run(load(base, key, photos, args.warmup, args.concurrency))  # every worker loads its index
        rss_start = rss_mb(server.pid)
        peak = rss_start
        samples: list[float] = []

        async def sampled() -> dict[str, Any]:
            nonlocal peak

            async def sampler() -> None:
                nonlocal peak
                while True:
                    await asyncio.sleep(1)
                    value = rss_mb(server.pid)
                    samples.append(value)
                    peak = max(peak, value)

            task = asyncio.create_task(sampler())
            try:
                return await load(base, key, photos, args.duration, args.concurrency)
            finally:
                task.cancel()

        cpu = os.times()
        result = asyncio.run(sampled())
        after = os.times()
        result.update(
            workers=workers,
            rss_start_mb=rss_start,
            rss_end_mb=rss_mb(server.pid),
            rss_peak_mb=peak,
            rss_first_minute_mb=statistics.mean(samples[:60]) if samples else None,
            rss_last_minute_mb=statistics.mean(samples[-60:]) if samples else None,
            client_cpu_s=(after.user - cpu.user) + (after.system - cpu.system),
            duration_s=args.duration,
        )
        return result
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hashes", type=int, default=1_000_000)
    p.add_argument("--known", type=int, default=10, help="photos added from media (some scans match)")
    p.add_argument("--images", type=int, default=100, help="distinct 1-MP JPEGs to scan")
    p.add_argument("--workers", default="1,2")
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    p.add_argument("--duration", type=float, default=60)
    p.add_argument("--warmup", type=float, default=5)
    p.add_argument("--folder", type=Path, default=None, help="where the bank lives (default: a temp folder)")
    p.add_argument("--reuse", action="store_true", help="reuse the bank in --folder")
    p.add_argument("--json", type=Path)
    p.add_argument(
        "--no-query-variants",
        action="store_true",
        help="banks without query-side variants (plain PDQ per scan)",
    )
    args = p.parse_args(argv)
    folder = args.folder or Path(tempfile.mkdtemp(prefix="bench-service-"))
    os.environ["XDG_DATA_HOME"] = str(folder / "data")
    policy = {"query_variants": False} if args.no_query_variants else {}
    url, key, photos = prepare(folder, args.hashes, args.known, args.images, args.reuse, policy)
    print(
        f"bank: {args.hashes:,} random PDQ hashes + {args.known} photos from media; scanning"
        f" {len(photos)} distinct 1-MP JPEGs (mean {statistics.mean(len(x) for x in photos) / 1000:.0f} KB),"
        f" {args.concurrency} in flight, {args.duration:.0f} s per run"
    )
    results = []
    for workers in (int(w) for w in args.workers.split(",")):
        r = run_service(url, key, photos, workers, args)
        results.append(r)
        print(
            f"workers {workers}: {r['rps']:.1f} scans/s, p50 {r['p50_ms']:.1f} ms, p90 {r['p90_ms']:.1f} ms,"
            f" p99 {r['p99_ms']:.1f} ms; {r['requests']} requests, statuses {r['statuses']},"
            f" {r['matched']} matched;"
            f" server RSS {r['rss_start_mb']:.0f} -> {r['rss_end_mb']:.0f} MB (peak {r['rss_peak_mb']:.0f});"
            f" load client CPU {r['client_cpu_s']:.0f} s of {args.duration:.0f} s"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
