"""The guarded GET's one logic (``net.hops``): walked without any I/O, and through both of its drivers
(sync ``fetch`` and async ``fetch_answer``) against a closed web on loopback, where every refusal must be
the same error, word for word and cause for cause."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from childshield.net.afetch import Answer, fetch_answer
from childshield.net.fetch import Fetched, fetch
from childshield.net.guard import AddressPolicy
from childshield.net.hops import MAX_REDIRECTS, REDIRECT, TOO_LARGE, FetchError, Hops, no_cookies
from childshield.testing.web import LocalWeb, Resource, image, redirect, status

PUBLIC = "http://93.184.216.34/start"
"""A public literal: the guard passes it without a lookup, and nothing here connects to it."""
LOOPBACK = AddressPolicy.from_text("127.0.0.0/8")
LIMIT = 1000


def _walk_redirects(hops: Hops, count: int) -> None:
    for k in range(count):
        hops.target()
        assert hops.answer(httpx.Response(302, headers={"Location": f"/hop{k}"})) is None


def test_hops_follow_at_most_max_redirects_without_io() -> None:
    hops = Hops(PUBLIC, AddressPolicy(), max_bytes=LIMIT, timeout=5)
    _walk_redirects(hops, MAX_REDIRECTS)
    assert hops.target().path == f"/hop{MAX_REDIRECTS - 1}"  # the fifth redirect is followed
    assert hops.answer(httpx.Response(301, headers={"Location": "/one-more"})) is None
    with pytest.raises(FetchError, match=f"more than {MAX_REDIRECTS} redirects") as failed:
        hops.target()
    assert failed.value.cause == REDIRECT and not failed.value.retry


def test_hops_refuse_loops_and_refused_hops_without_io() -> None:
    hops = Hops(PUBLIC, AddressPolicy(), max_bytes=LIMIT, timeout=5)
    hops.target()
    assert hops.answer(httpx.Response(302, headers={"Location": "/start"})) is None
    with pytest.raises(FetchError, match="redirect loop") as looped:
        hops.target()
    assert looped.value.cause == REDIRECT
    hops = Hops(PUBLIC, AddressPolicy(), max_bytes=LIMIT, timeout=5)
    hops.target()
    hops.answer(httpx.Response(307, headers={"Location": "http://169.254.169.254/latest/"}))
    with pytest.raises(FetchError, match="not a public address") as refused:
        hops.target()
    assert refused.value.cause == "refused" and "metadata" in refused.value.detail
    with pytest.raises(FetchError, match="without a Location"):
        Hops(PUBLIC, AddressPolicy(), max_bytes=LIMIT, timeout=5).answer(
            httpx.Response(302, headers={"Location": ""})
        )


def _at_last_hop(*, page_bytes: int | None = None, only_ok: bool = True) -> Hops:
    hops = Hops(PUBLIC, AddressPolicy(), max_bytes=LIMIT, timeout=5, page_bytes=page_bytes, only_ok=only_ok)
    hops.target()
    return hops


def test_a_reply_is_held_to_its_limits_and_status_policy_without_io() -> None:
    with pytest.raises(FetchError, match="HTTP 503") as refused:
        _at_last_hop().answer(httpx.Response(503, headers={"Retry-After": "7"}))
    assert refused.value.cause == "http-503"
    slow = _at_last_hop(only_ok=False).answer(httpx.Response(503, headers={"Retry-After": "7"}))
    assert slow is not None and not slow.reads and slow.retry_after == 7.0 and slow.ip == "93.184.216.34"

    for page_bytes, ctype, limit in ((None, "image/jpeg", LIMIT), (100, "text/html", 100)):
        with pytest.raises(FetchError, match=f"{limit + 1} bytes, over the limit of {limit}") as declared:
            _at_last_hop(page_bytes=page_bytes).answer(
                httpx.Response(200, headers={"Content-Type": ctype}, content=b"x" * (limit + 1))
            )
        assert declared.value.cause == TOO_LARGE
        reply = _at_last_hop(page_bytes=page_bytes).answer(
            httpx.Response(200, headers={"Content-Type": ctype})
        )
        assert reply is not None and reply.reads and reply.limit == limit
        reply.add(b"x" * limit)
        with pytest.raises(FetchError, match=f"over the limit of {limit} bytes") as streamed:
            reply.add(b"x")
        assert streamed.value.cause == TOO_LARGE
        assert reply.body() == b"x" * limit


BIG = b"\xff" * (LIMIT * 5)


@pytest.fixture(scope="module")
def web() -> Iterator[LocalWeb]:
    chain = {f"/chain{k}": redirect(f"/chain{k + 1}") for k in range(MAX_REDIRECTS + 1)}
    chain[f"/chain{MAX_REDIRECTS + 1}"] = image(b"\xff\xd8\xff tiny")
    sites = {
        "a.test": {
            **chain,
            "/loop/a": redirect("/loop/b"),
            "/loop/b": redirect("/loop/a"),
            "/metadata": redirect("http://169.254.169.254/latest/meta-data/"),
            "/odd": redirect(r"http:\\127.0.0.1\x"),
            "/empty": redirect(""),
            "/declared": image(BIG),
            "/trickle": Resource(content_type="image/jpeg", trickle=LIMIT * 2),
            "/nowhere": redirect("http://nowhere.test/"),
            "/busy": status(503, retry_after="9"),
        }
    }
    with LocalWeb(sites) as w:
        yield w


def _both(web: LocalWeb, path: str) -> tuple[Fetched | FetchError, Answer | FetchError]:
    url = web.url("a.test", path)
    try:
        sync: Fetched | FetchError = fetch(url, LOOPBACK, max_bytes=LIMIT, timeout=10, resolve=web.resolver)
    except FetchError as exc:
        sync = exc

    async def crawl() -> Answer | FetchError:
        async with httpx.AsyncClient(follow_redirects=False, trust_env=False, cookies=no_cookies()) as client:
            try:
                return await fetch_answer(
                    client, url, LOOPBACK, max_bytes=LIMIT, timeout=10, resolve=web.resolver
                )
            except FetchError as exc:
                return exc

    return sync, asyncio.run(crawl())


@pytest.mark.parametrize(
    ("path", "cause", "said"),
    [
        ("/chain0", REDIRECT, f"more than {MAX_REDIRECTS} redirects"),
        ("/loop/a", REDIRECT, "redirect loop at"),
        ("/metadata", "refused", "refused: not a public address"),
        ("/odd", REDIRECT, "redirects to a URL that cannot be fetched"),
        ("/empty", REDIRECT, "a redirect without a Location"),
        ("/declared", TOO_LARGE, f"the body is {len(BIG)} bytes, over the limit of {LIMIT}"),
        ("/trickle", TOO_LARGE, f"the body is over the limit of {LIMIT} bytes"),
        ("/nowhere", "dns", "cannot resolve 'nowhere.test'"),
    ],
)
def test_both_drivers_refuse_alike(web: LocalWeb, path: str, cause: str, said: str) -> None:
    sync, crawl = _both(web, path)
    assert isinstance(sync, FetchError) and isinstance(crawl, FetchError)
    assert said in str(sync)
    assert (str(sync), sync.detail, sync.cause, sync.retry) == (
        str(crawl),
        crawl.detail,
        crawl.cause,
        crawl.retry,
    )
    assert sync.cause == cause


def test_both_drivers_follow_the_same_redirects(web: LocalWeb) -> None:
    sync, crawl = _both(web, "/chain1")  # exactly MAX_REDIRECTS hops to the image
    assert isinstance(sync, Fetched) and isinstance(crawl, Answer)
    assert (sync.url, sync.status, sync.body) == (crawl.url, crawl.status, crawl.body)
    assert sync.url.endswith(f"/chain{MAX_REDIRECTS + 1}") and crawl.ip == web.addresses["a.test"]
    sync, crawl = _both(web, "/busy")  # a scan wants 200 only; the crawler is told to slow down
    assert isinstance(sync, FetchError) and sync.cause == "http-503"
    assert isinstance(crawl, Answer) and (crawl.status, crawl.retry_after, crawl.body) == (503, 9.0, b"")
