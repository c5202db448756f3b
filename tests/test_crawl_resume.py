"""Kill `childshield crawl run` (SIGKILL) at random moments: the next run resumes, nothing is lost, no hit
is recorded twice, and only what was in flight at each kill is fetched again."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from collections import Counter

import pytest
from sqlalchemy import func, select

from childshield.banks import create_bank
from childshield.banks.entries import add_outcomes
from childshield.hashing.result import HashOutcome
from childshield.hashing.service import hash_bytes
from childshield.store.db import Database
from childshield.store.models import CrawlHit, CrawlState, CrawlUrl
from childshield.testing.corpus import encode, generated_photo
from childshield.testing.web import LocalWeb, Resource, page
from waiting import HANG_GUARD, exited, wait_until

PAGES, CONCURRENCY = 30, 4


def build(known: dict[int, bytes], other: dict[int, bytes]) -> dict[str, dict[str, Resource]]:
    sites: dict[str, dict[str, Resource]] = {}
    for s in range(3):
        paths: dict[str, Resource] = {"/": page("".join(f"<a href='/p{k}'>{k}</a>" for k in range(PAGES)))}
        for k in range(PAGES):
            n = s * PAGES + k
            paths[f"/p{k}"] = page(f"<img src='/i{k}.jpg'><a href='/p{(k + 1) % PAGES}'>next</a>")
            data = known[n % len(known)] if n % 7 == 0 else other[n % len(other)]
            paths[f"/i{k}.jpg"] = Resource(data, "image/jpeg", stall=0.02)
        sites[f"site{s}.test"] = paths
    return sites


def crawl_command(db: Database, web: LocalWeb) -> list[str]:
    pins = [f"--resolve={name}={address}" for name, address in web.addresses.items()]
    return [
        sys.executable, "-m", "childshield.cli", "crawl", "run", "--db", db.url, "--allow", "127.0.0.0/8",
        *pins, "--concurrency", str(CONCURRENCY), "--per-host", "2", "--lease", "1", "--timeout", "600",
        "--patience", "1000",
    ]  # fmt: skip


@pytest.mark.parametrize("seed", [7])
def test_killed_crawls_resume_without_loss_or_duplicates(db: Database, seed: int) -> None:
    rng = random.Random(seed)
    known = {k: encode(generated_photo(300 + k, 256, 192), "JPEG", quality=85) for k in range(3)}
    other = {k: encode(generated_photo(400 + k, 256, 192), "JPEG", quality=85) for k in range(11)}
    create_bank(db, "known")
    add_outcomes(db, "known", [HashOutcome(f"k{k}", result=hash_bytes(d)) for k, d in known.items()])
    with LocalWeb(build(known, other)) as web:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        seeds = [web.url(f"site{s}.test") for s in range(3)]
        subprocess.run(
            [sys.executable, "-m", "childshield.cli", "crawl", "add", "--db", db.url, *seeds],
            check=True, capture_output=True, env=env,
        )  # fmt: skip
        kills = 0
        for _ in range(3):
            # Killed a random number of fetches into its crawl (counted, not timed: load moves times).
            target = len(web.requests()) + rng.randint(10, 40)
            proc = subprocess.Popen(
                crawl_command(db, web), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            wait_until(
                lambda: len(web.requests()) >= target or proc.poll() is not None,  # noqa: B023
                "the crawl to fetch its share before the kill",
            )
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                kills += 1
            exited(proc, "the killed crawl")
        assert kills >= 2, "the crawl finished before it could be killed: make it longer"
        # The last run finishes with two processes sharing the frontier.
        done = subprocess.run(
            [*crawl_command(db, web), "--processes", "2"],
            env=env,
            capture_output=True,
            text=True,
            timeout=HANG_GUARD,
        )
        assert done.returncode == 0, done.stderr

        total_urls = 3 * (1 + 2 * PAGES)
        with db.session() as session:
            states = Counter(session.scalars(select(CrawlUrl.state)).all())
            matched_media = set(session.scalars(select(CrawlHit.media_url)).all())
            hit_rows = session.scalar(select(func.count()).select_from(CrawlHit))
            distinct = session.execute(
                select(func.count()).select_from(
                    select(CrawlHit.url_id, CrawlHit.bank, CrawlHit.item_id).distinct().subquery()
                )
            ).scalar_one()
        assert states == {CrawlState.DONE: total_urls}  # nothing lost, nothing left behind
        expected = {
            web.url(f"site{s}.test", f"/i{k}.jpg")
            for s in range(3)
            for k in range(PAGES)
            if (s * PAGES + k) % 7 == 0
        }
        assert matched_media == expected
        assert hit_rows == distinct  # no hit recorded twice
        fetched = Counter((h.site, h.path) for h in web.requests())
        again = sum(n - 1 for n in fetched.values())
        assert len(fetched) == total_urls
        assert again <= kills * CONCURRENCY * 2  # only what was in flight at a kill was fetched again
