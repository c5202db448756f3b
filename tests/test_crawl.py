"""The crawler against a closed web on loopback (several real HTTP servers): media found and matched,
bounds, politeness and retries, hostile pages, the address guard, and resuming after a kill."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import threading
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from childshield.banks import create_bank
from childshield.banks.entries import add_outcomes
from childshield.crawl import frontier
from childshield.crawl.crawler import CrawlConfig, Crawler
from childshield.crawl.unmatched import queue_unmatched
from childshield.hashing.result import HashOutcome
from childshield.hashing.service import hash_bytes
from childshield.matching.matcher import Matcher
from childshield.net.guard import AddressPolicy
from childshield.store.db import Database
from childshield.store.models import CrawlHit, CrawlState, CrawlUrl, Decision, ReviewItem, utcnow
from childshield.testing.corpus import encode, generated_photo
from childshield.testing.web import LocalWeb, Resource, image, page, redirect, status
from waiting import HANG_GUARD

LOOPBACK = AddressPolicy((ipaddress.ip_network("127.0.0.0/8"),))


def jpeg(seed: int) -> bytes:
    return encode(generated_photo(seed, 320, 240), "JPEG", quality=88)


@pytest.fixture(scope="module")
def pictures() -> dict[str, bytes]:
    return {f"known{k}": jpeg(100 + k) for k in range(3)} | {f"other{k}": jpeg(200 + k) for k in range(4)}


def known_bank(db: Database, pictures: dict[str, bytes]) -> Matcher:
    create_bank(db, "known")
    outcomes = [HashOutcome(n, result=hash_bytes(d)) for n, d in pictures.items() if n.startswith("known")]
    add_outcomes(db, "known", outcomes)
    return Matcher.load(db)


def config(web: LocalWeb, **extra: object) -> CrawlConfig:
    """Fetches time out only after the hang guard: no load makes a loopback answer that late."""
    return CrawlConfig(policy=LOOPBACK, resolve=web.resolver, **{"timeout": HANG_GUARD, **extra})  # type: ignore[arg-type]


def crawl(db: Database, matcher: Matcher, conf: CrawlConfig, **run: object) -> Crawler:
    crawler = Crawler(db, matcher, conf)
    asyncio.run(crawler.run(**run))  # type: ignore[arg-type]
    return crawler


def rows(db: Database) -> dict[str, CrawlUrl]:
    with db.session() as session:
        out = {r.url: r for r in session.scalars(select(CrawlUrl)).all()}
        session.expunge_all()
    return out


def hits(db: Database) -> list[CrawlHit]:
    with db.session() as session:
        out = list(session.scalars(select(CrawlHit).order_by(CrawlHit.id)).all())
        session.expunge_all()
    return out


def test_crawl_finds_known_media_across_sites(db: Database, pictures: dict[str, bytes]) -> None:
    sites = {
        "gallery.test": {
            "/": page(
                """<html><head><meta property="og:image" content="/img/cover.jpg"></head><body>
                <a href="/album/1">album</a> <a href="/moved">moved</a> <a href="/loop/a">loop</a>
                <a href="http://elsewhere.test/">offsite page</a> <a href="/gone">gone</a>
                <img src="http://cdn.test/x/k1.jpg"> <img data-src="/img/o1.jpg"></body></html>"""
            ),
            "/img/cover.jpg": image(pictures["known0"]),
            "/img/o1.jpg": image(pictures["other0"]),
            "/album/1": page(
                """<div style="background:url('/img/k2.png')"></div>
                <a href="/img/big.jpg" data-lightbox="a"><img src="/img/o2.jpg" srcset="/img/o3.jpg 2x"></a>
                <a href="/">home</a><<<>>><script>document.write('<a href=/never>')</script>"""
            ),
            "/img/k2.png": image(encode(generated_photo(102, 320, 240), "PNG"), "image/png"),
            "/img/o2.jpg": image(pictures["other1"]),
            "/img/o3.jpg": image(pictures["other2"]),
            "/img/big.jpg": Resource(b"", "image/jpeg", trickle=3 * 1024 * 1024),
            "/moved": redirect("/album/1"),
            "/loop/a": redirect("/loop/b"),
            "/loop/b": redirect("/loop/a"),
        },
        "cdn.test": {"/x/k1.jpg": image(pictures["known1"])},
        "elsewhere.test": {"/": page("<img src='/e.jpg'>"), "/e.jpg": image(pictures["known0"])},
    }
    matcher = known_bank(db, pictures)
    with LocalWeb(sites) as web:
        seed = web.url("gallery.test")
        added, again, refused = frontier.add(
            db, [seed, seed + "#top", "ftp://nope"], source="hotline", reporter_ref="R-1"
        )
        assert (added, again, len(refused)) == (1, 1, 1)
        crawler = crawl(db, matcher, config(web, max_media_bytes=1024 * 1024))
        found = {(h.bank, h.media_url.rsplit("/", 1)[-1], h.page_url) for h in hits(db)}
        assert found == {
            ("known", "cover.jpg", seed),
            ("known", "k1.jpg", seed),  # from the CDN: media is fetched from any host
            ("known", "k2.png", web.url("gallery.test", "/album/1")),  # re-encoded, matched by PDQ
        }
        assert all(h.sha256 and h.md5 and h.pdq for h in hits(db))
        assert not web.requests("elsewhere.test")  # page links stay on the site
        assert not web.requests("gallery.test", "/never")  # scripts are not run
        urls = rows(db)
        assert urls[web.url("gallery.test", "/img/big.jpg")].state is CrawlState.FAILED
        assert "over the limit" in urls[web.url("gallery.test", "/img/big.jpg")].error
        assert "redirect loop" in urls[web.url("gallery.test", "/loop/a")].error
        assert urls[web.url("gallery.test", "/gone")].status == 404
        assert urls[web.url("gallery.test", "/moved")].final_url == web.url("gallery.test", "/album/1")
        assert (
            urls[seed].source == "hotline"
            and urls[seed].reporter_ref == "R-1"
            and urls[seed].matched is False
        )
        assert urls[web.url("gallery.test", "/img/cover.jpg")].matched is True
        fetched = Counter(h.path for h in web.requests("gallery.test"))
        assert fetched["/album/1"] == 2  # once itself, once through /moved: nothing else twice
        assert all(n == 1 for p, n in fetched.items() if p != "/album/1")
        assert crawler.stats.hits == 3 and crawler.stats.media >= 6


def test_retries_slow_down_and_timeouts(db: Database, pictures: dict[str, bytes]) -> None:
    never = threading.Event()  # the slow image is answered only when the web closes: no timeout is early
    sites = {
        "busy.test": {
            "/": page("<img src='/a.jpg'><img src='/err.jpg'>"),
            "/a.jpg": image(pictures["known2"]),
            "/slow.jpg": Resource(pictures["other3"], "image/jpeg", hold=never),
            "/err.jpg": status(500),
        }
    }
    matcher = known_bank(db, pictures)
    with LocalWeb(sites) as web:
        web.once[("busy.test", "/a.jpg")] = [status(429, Retry_After="1")]
        frontier.add(db, [web.url("busy.test")])
        crawler = crawl(db, matcher, config(web, max_attempts=2))
        # The slow image in a crawl of its own: the short timeout there is for it alone.
        frontier.add(db, [web.url("busy.test", "/slow.jpg")])
        timing_out = crawl(db, matcher, config(web, timeout=1.0, max_attempts=2))
        urls = rows(db)
        a = web.requests("busy.test", "/a.jpg")
        assert len(a) == 2 and a[1].at - a[0].at >= 0.9  # waited as asked, then got it
        assert {h.media_url for h in hits(db)} == {web.url("busy.test", "/a.jpg")}
        slow = urls[web.url("busy.test", "/slow.jpg")]
        assert slow.state is CrawlState.FAILED and "timed out" in slow.error and slow.attempts == 2
        assert len(web.requests("busy.test", "/slow.jpg")) == 2
        assert urls[web.url("busy.test", "/err.jpg")].state is CrawlState.FAILED
        assert len(web.requests("busy.test", "/err.jpg")) == 2
        assert crawler.stats.retried + timing_out.stats.retried >= 3


def test_bounds_depth_pages_and_patience(db: Database, pictures: dict[str, bytes]) -> None:
    chain = {f"/c{k}": page(f"<a href='/c{k + 1}'>next</a>") for k in range(10)}
    wide = {"/": page("".join(f"<a href='/w{k}'>{k}</a>" for k in range(30)))}
    wide |= {f"/w{k}": page("nothing here") for k in range(30)}
    rich = {"/": page("".join(f"<a href='/r{k}'>{k}</a>" for k in range(12)))}
    rich |= {f"/r{k}": page(f"<img src='/i{k}.jpg'>") for k in range(12)}
    rich |= {f"/i{k}.jpg": image(pictures[f"known{k % 3}"]) for k in range(12)}
    matcher = known_bank(db, pictures)
    with LocalWeb({"chain.test": chain, "wide.test": wide, "rich.test": rich}) as web:
        frontier.add(db, [web.url("chain.test", "/c0"), web.url("wide.test"), web.url("rich.test")])
        crawl(db, matcher, config(web, max_depth=3, patience=5, concurrency=1, per_host=1))
        chain_paths = {h.path for h in web.requests("chain.test")}
        assert chain_paths == {"/c0", "/c1", "/c2", "/c3"}  # depth 3
        wide_pages = len(web.requests("wide.test"))
        assert wide_pages <= 6  # the seed and 5 pages without a match, then it was left alone
        skipped = [r for r in rows(db).values() if r.site == "wide.test" and r.state is CrawlState.SKIPPED]
        assert len(skipped) == 30 - (wide_pages - 1)
        assert len(web.requests("rich.test")) == 1 + 12 + 12  # matches kept it going to the end


def test_no_cookies_and_a_clear_user_agent(db: Database, pictures: dict[str, bytes]) -> None:
    sites = {
        "jar.test": {
            "/": Resource(b"<a href='/next'>n</a>", headers={"Set-Cookie": "session=abc; Path=/"}),
            "/next": page("<a href='/last'>l</a>"),
            "/last": page("end"),
        }
    }
    with LocalWeb(sites) as web:
        frontier.add(db, [web.url("jar.test")])
        crawl(db, known_bank(db, pictures), config(web, per_host=1, concurrency=1))
        seen = web.requests("jar.test")
        assert [h.path for h in seen] == ["/", "/next", "/last"]
        assert all(h.cookie == "" for h in seen) and all(
            h.user_agent.startswith("childshield/") for h in seen
        )


def test_address_guard_refuses_loopback_by_default(db: Database, pictures: dict[str, bytes]) -> None:
    matcher = known_bank(db, pictures)
    with LocalWeb({"inside.test": {"/": page("hello")}}) as web:
        frontier.add(db, [web.url("inside.test"), "http://169.254.169.254/latest/meta-data/"])
        crawl(db, matcher, CrawlConfig(resolve=web.resolver, timeout=HANG_GUARD))
        assert not web.requests()
        errors = sorted(r.error for r in rows(db).values())
        assert all(r.state is CrawlState.FAILED for r in rows(db).values())
        assert "loopback" in errors[1] or "loopback" in errors[0]
        assert any("metadata" in e or "not in the hosts table" in e for e in errors)


def test_hostile_html_never_stops_the_crawl() -> None:
    from childshield.crawl.extract import extract

    nasty = [
        "<" * 10000,
        "<a href='" + "x" * 100000,
        "<img srcset=',,,, ,'><img src='http://[::1'><base href='javascript:alert(1)'>",
        "\x00\ud800<a href=/ok>",
        "<a href='/a'>" * 20000,
        "<style>" + "url(" * 5000,
    ]
    for html in nasty:
        found = extract(html, "http://site.test/")
        assert len(found.pages) + len(found.media) <= 5000
    assert extract("\x00<a href=/ok>", "http://site.test/").pages == ["http://site.test/ok"]


def test_unmatched_media_next_to_known_material_goes_to_review(
    db: Database, pictures: dict[str, bytes], tmp_path: Path
) -> None:
    from childshield.review.intake import Intake
    from childshield.review.keys import Keyring
    from childshield.review.media import load

    sites = {
        "mixed.test": {
            "/": page("<a href='/p1'>1</a><a href='/p2'>2</a>"),
            "/p1": page("<img src='/k.jpg'><img src='/new1.jpg'><img src='/new2.jpg'>"),
            "/p2": page("<img src='/only-other.jpg'>"),  # no match on this page: not queued
            "/k.jpg": image(pictures["known0"]),
            "/new1.jpg": image(pictures["other0"]),
            "/new2.jpg": image(pictures["other1"]),
            "/only-other.jpg": image(pictures["other2"]),
        }
    }
    matcher = known_bank(db, pictures)
    keyring = Keyring.load(tmp_path / "media.keys")
    intake = Intake(consensus=2, keyring=keyring)
    with LocalWeb(sites) as web:
        frontier.add(db, [web.url("mixed.test")])
        crawl(db, matcher, config(web))
        web.remove("mixed.test", "/new2.jpg")  # gone by the time of the pass
        # the guard refusing our fetch is no "gone" (it said so): a failure with its cause, tried again
        refused = asyncio.run(
            queue_unmatched(db, matcher, intake, policy=AddressPolicy(), resolve=web.resolver)
        )
        assert (refused.queued, refused.gone, refused.failed) == (0, 0, 2)
        assert {cause for _, cause, _ in refused.failures} == {"refused"}
        assert all("loopback" in reason for _, _, reason in refused.failures)
        result = asyncio.run(queue_unmatched(db, matcher, intake, policy=LOOPBACK, resolve=web.resolver))
        assert (result.queued, result.gone, result.failed) == (1, 1, 0)
        again = asyncio.run(queue_unmatched(db, matcher, intake, policy=LOOPBACK, resolve=web.resolver))
        assert again.queued == 0
    with db.session() as session:
        item = session.scalars(select(ReviewItem)).one()
        decision = session.get_one(Decision, item.decision_id)
        assert decision.decision == "review" and decision.matches == [] and decision.source == "crawl"
        assert decision.context == {
            "reason": "unmatched media on a page where known material was found",
            "page_url": web.url("mixed.test", "/p1"),
            "media_url": web.url("mixed.test", "/new1.jpg"),
        }
        media_id = item.media_id
    assert load(db, keyring, media_id) == pictures["other0"]


@given(st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=60))
@settings(max_examples=300, deadline=None)
def test_url_normalisation_is_stable(tail: str) -> None:
    from childshield.crawl.urls import BadUrl, normalize

    try:
        once = normalize("http://site.test/" + tail)
    except BadUrl:
        return
    assert normalize(once) == once  # one spelling, whatever the input


def test_url_normalisation_keeps_what_names_the_resource() -> None:
    from childshield.crawl.urls import normalize

    assert normalize("HTTP://Site.TEST:80/a%2Fb/%7euser?sig=ab%2Bcd&x=%26#frag") == (
        "http://site.test/a%2Fb/~user?sig=ab%2Bcd&x=%26"
    )
    assert normalize("http://site.test/a%2541") == "http://site.test/a%2541"  # never decoded twice
    assert normalize("http://site.test/100%") == "http://site.test/100%25"


def test_extraction_of_cdn_srcsets_and_refresh_pages() -> None:
    from childshield.crawl.extract import extract

    found = extract(
        "<img srcset='https://cdn.test/w_300,h_200/a.jpg 1x, https://cdn.test/w_600,h_400/a.jpg 2x'>"
        "<img srcset='d.jpg 100w,e.jpg 200w'><meta http-equiv='Refresh' content='0; URL=/next'>",
        "http://s.test/",
    )
    assert found.media == [
        "https://cdn.test/w_300,h_200/a.jpg", "https://cdn.test/w_600,h_400/a.jpg",
        "http://s.test/d.jpg", "http://s.test/e.jpg",
    ]  # fmt: skip
    assert found.pages == ["http://s.test/next"]


def test_pages_in_odd_charsets_are_still_read(db: Database, pictures: dict[str, bytes]) -> None:
    sites = {"odd.test": {"/": Resource(b"<img src='/k.jpg'>", "text/html; charset=idna"),
                          "/k.jpg": image(pictures["known0"])}}  # fmt: skip
    with LocalWeb(sites) as web:
        frontier.add(db, [web.url("odd.test")])
        crawl(db, known_bank(db, pictures), config(web))
        assert {h.media_url for h in hits(db)} == {web.url("odd.test", "/k.jpg")}


def test_a_stale_claim_cannot_overwrite_the_new_holder(db: Database) -> None:
    import datetime as dt

    from childshield.crawl.frontier import Finished, Retry, apply, claim

    frontier.add(db, ["http://slow.test/m.jpg"])
    first = claim(db, 1, dt.timedelta(seconds=0))[0]  # its lease is over at once
    second = claim(db, 1, dt.timedelta(minutes=5))[0]  # another crawler takes the URL over
    assert (first.id, first.attempts, second.attempts) == (second.id, 1, 2)
    assert apply(db, [Retry(first, "timed out", 60, 1)]) == [False]  # gives up, but no longer holds it
    hit = {"page_id": None, "media_url": "http://slow.test/m.jpg", "page_url": None, "host": "slow.test",
           "ip": "192.0.2.1", "bank": "known", "entry_id": 1, "item_id": 1, "check": "md5", "distance": 0,
           "sha256": "ab" * 32, "md5": "cd" * 16, "pdq": None}  # fmt: skip
    assert apply(db, [(second, Finished(kind="media", status=200, hits=[hit]))]) == [True]
    url = rows(db)["http://slow.test/m.jpg"]
    assert url.state is CrawlState.DONE and url.matched and len(hits(db)) == 1


def test_the_guard_sees_through_6to4_and_teredo() -> None:
    from childshield.net.guard import BlockedAddress, check_ip

    for address in ("2002:a00:1::", "2002:7f00:1::", "2001:0:4136:e378:8000:63bf:3fff:fdd2"):
        with pytest.raises(BlockedAddress):
            check_ip(ipaddress.ip_address(address), AddressPolicy())
    check_ip(ipaddress.ip_address("2002:808:808::1"), AddressPolicy())  # 8.8.8.8 inside: public


def test_urls_waiting_for_a_slow_host_keep_their_leases(db: Database, pictures: dict[str, bytes]) -> None:
    import datetime as dt

    sites = {"slow.test": {"/": page("".join(f"<a href='/p{k}'>{k}</a>" for k in range(8)))}}
    sites["slow.test"] |= {f"/p{k}": page("x") for k in range(8)}
    with LocalWeb(sites) as web:
        frontier.add(db, [web.url("slow.test")])
        conf = config(web, per_host=1, delay=0.4, lease=dt.timedelta(seconds=1.5), concurrency=16)
        crawl(db, known_bank(db, pictures), conf)
        fetched = Counter(h.path for h in web.requests("slow.test"))
        assert len(fetched) == 9 and set(fetched.values()) == {1}  # 3.6 s of waiting, nothing fetched twice
        assert {r.attempts for r in rows(db).values()} == {1}


def test_an_unparseable_redirect_fails_the_url_at_once(db: Database) -> None:
    """httpx raised InvalidURL (no HTTPError) on this Location: the crawler took it for an internal error
    and queued the URL again and again; it is the server's answer, so the URL fails, the reason kept."""
    with LocalWeb({"odd.test": {"/": redirect(r"http:\\127.0.0.1\x")}}) as web:
        frontier.add(db, [web.url("odd.test")])
        crawler = Crawler(db, Matcher.load(db), config(web))
        asyncio.run(asyncio.wait_for(crawler.run(), HANG_GUARD))
        crawler.close()
        row = rows(db)[web.url("odd.test")]
        assert row.state is CrawlState.FAILED and row.attempts == 1
        assert "redirects to a URL that cannot be fetched" in row.error
        assert len(web.requests("odd.test")) == 1


def test_a_url_that_never_finishes_is_given_up_after_max_attempts(db: Database) -> None:
    """A URL whose crawler dies (or stalls) every time leaves an expired lease: claimed again, but only
    until it has had its attempts; then it fails with the reason, never to be claimed again."""
    frontier.add(db, ["http://poison.test/"])
    lease = dt.timedelta(seconds=1)
    now = utcnow()
    for attempt in range(1, 4):
        now += dt.timedelta(seconds=2)  # the previous lease has run out, unfinished
        (claimed,) = frontier.claim(db, 10, lease, now=now, max_attempts=3)
        assert claimed.attempts == attempt
    gave_up: list[tuple[str, str]] = []
    for _ in range(2):
        now += dt.timedelta(seconds=2)
        assert frontier.claim(db, 10, lease, now=now, max_attempts=3, gave_up=gave_up) == []
    row = rows(db)["http://poison.test/"]
    assert row.state is CrawlState.FAILED and "given up after 3 attempts" in row.error
    assert row.cause == "stalled" and gave_up == [("http://poison.test/", row.error)]  # told once
    assert not frontier.has_work(db)
