"""Hotline work that fails is said, counted by cause, and retried (issue 16.5): the address guard refusing
a crawl, DNS that cannot answer for now (retried with backoff, on a clock the test moves), failed URLs put
back in the queue, RDAP unreachable (never cached as an answer), SMTP away, refusing or without STARTTLS
(the notice stays queued, never sent, never failed for it), and the CLI saying each with exit status 1.
Everything runs against real local servers: HTTP sites, an RDAP fake, aiosmtpd, closed ports."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import socket
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from childshield.crawl import frontier
from childshield.crawl.crawler import CrawlConfig, Crawler
from childshield.crawl.frontier import Finished
from childshield.mail import SmtpSettings
from childshield.matching.matcher import Matcher
from childshield.net.guard import AddressPolicy, HostsResolver
from childshield.store.db import Database, open_database
from childshield.store.models import CrawlState, CrawlUrl, Notice, Provider, TakedownItem, utcnow
from childshield.takedown.intake import follow_hits
from childshield.takedown.notices import NoticeSettings, plan, send_due
from childshield.takedown.rdap import RdapClient
from childshield.takedown.status import takedown_status
from childshield.testing.corpus import encode, generated_photo
from childshield.testing.rdap import FakeNetwork, FakeRdap
from childshield.testing.web import LocalWeb, image, page
from childshield.timefmt import aware
from cli_runner import cli_for
from smtp_helpers import SmtpServer
from takedown_helpers import one_item_per_provider
from waiting import HANG_GUARD

LOOPBACK = AddressPolicy((ipaddress.ip_network("127.0.0.0/8"),))
T0 = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC)
H = dt.timedelta(hours=1)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then let go)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Clock:
    def __init__(self, at: dt.datetime) -> None:
        self.at = at

    def __call__(self) -> dt.datetime:
        return self.at


class FlakyDns:
    """A resolver that answers from ``inner``, except that the names in ``down`` get "temporary failure
    in name resolution" (EAI_AGAIN) that many times (-1: always)."""

    def __init__(self, inner: HostsResolver, down: dict[str, int]) -> None:
        self.inner, self.down = inner, dict(down)
        self.asked: list[str] = []

    def __call__(
        self, host: str, port: int, type: int = socket.SOCK_STREAM, **_: Any
    ) -> list[tuple[Any, ...]]:
        self.asked.append(host)
        left = self.down.get(host, 0)
        if left:
            self.down[host] = left - 1 if left > 0 else left
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return self.inner(host, port, type=type)


def row(db: Database, url: str) -> CrawlUrl:
    with db.session() as session:
        found = session.scalars(select(CrawlUrl).where(CrawlUrl.url == url)).one()
        session.expunge(found)
    return found


def test_temporary_dns_failures_are_retried_with_backoff_until_their_tries_are_spent(db: Database) -> None:
    """EAI_AGAIN used to fail a reported URL for good at once.  Now it goes back in the queue, due after
    60 s, then 120 s (its tries and next time in the frontier); the run does not sit waiting for it; a
    later run fetches it once DNS answers.  A name that always fails is given up after its tries, and
    one that does not exist fails at once; each failure is in the run's figures with its reason."""
    sites = {"flaky.test": {"/": page("hello")}, "dead.test": {"/": page("never")}}
    with LocalWeb(sites) as web:
        flaky, dead = web.url("flaky.test"), web.url("dead.test")
        nowhere = "http://nowhere.test/"  # not in the hosts table: no such name
        frontier.add(db, [flaky, dead, nowhere])
        dns = FlakyDns(web.resolver, {"flaky.test": 2, "dead.test": -1})
        clock = Clock(utcnow())
        conf = CrawlConfig(
            policy=LOOPBACK,
            resolve=dns,
            timeout=HANG_GUARD,
            clock=clock,
            dns_backoff=60,
            dns_attempts=3,
            wait=5,
        )

        def crawl() -> Crawler:
            crawler = Crawler(db, Matcher.load(db), conf)
            asyncio.run(asyncio.wait_for(crawler.run(), HANG_GUARD))  # returns: nothing is due within `wait`
            crawler.close()
            return crawler

        start = clock.at
        first = crawl()
        assert first.stats.retried == 2 and first.stats.failed == 1
        [(url, cause, reason)] = first.stats.failures
        assert (url, cause) == (nowhere, "dns") and "not in the hosts table" in reason
        for url in (flaky, dead):
            r = row(db, url)
            assert (r.state, r.attempts, r.cause) == (CrawlState.QUEUED, 1, "dns")
            assert aware(r.next_at) == start + dt.timedelta(seconds=60)
            assert "Temporary failure in name resolution" in r.error
        assert row(db, nowhere).state is CrawlState.FAILED and row(db, nowhere).attempts == 1
        status = frontier.status(db)["errors"]
        assert status["retrying"] == {"dns": 2} and status["failed"] == {"dns": 1}

        clock.at = start + dt.timedelta(seconds=61)
        crawl()
        r = row(db, flaky)
        assert (r.state, r.attempts) == (CrawlState.QUEUED, 2)
        assert aware(r.next_at) == clock.at + dt.timedelta(seconds=120)  # the backoff doubles

        clock.at += dt.timedelta(seconds=121)
        third = crawl()
        assert row(db, flaky).state is CrawlState.DONE and row(db, flaky).cause == ""
        assert len(web.requests("flaky.test", "/")) == 1
        assert row(db, dead).state is CrawlState.FAILED and row(db, dead).attempts == 3  # bounded
        assert [(u, c) for u, c, _ in third.stats.failures] == [(dead, "dns")]
        assert not web.requests("dead.test")
        assert frontier.status(db)["errors"] == {"failed": {"dns": 2}, "retrying": {}, "next_retry_at": None}


def test_failed_urls_are_requeued_by_url_by_cause_or_all(db: Database) -> None:
    urls = ["http://a.test/1", "http://b.test/2", "http://c.test/3", "http://d.test/4"]
    frontier.add(db, urls)
    causes = {urls[0]: "refused", urls[1]: "dns", urls[2]: "timeout"}
    for claimed in frontier.claim(db, 10, dt.timedelta(minutes=1)):
        cause = causes.get(claimed.url)
        result = (
            Finished(state=CrawlState.FAILED, error=f"{cause} here", cause=cause) if cause else Finished()
        )
        frontier.finish(db, claimed, result)
    assert frontier.status(db)["errors"]["failed"] == {"dns": 1, "refused": 1, "timeout": 1}
    [known] = frontier.failures(db, urls=["HTTP://A.TEST:80/1#top", urls[3]])  # any spelling; d did not fail
    assert (known.url, known.cause, known.error) == (urls[0], "refused", "refused here")

    out = frontier.requeue(db, urls=["HTTP://A.TEST/1", urls[3], "http://e.test/5"])
    assert out.requeued == [urls[0]] and out.not_failed == [(urls[3], "done")]
    assert out.unknown == ["http://e.test/5"]
    again = row(db, urls[0])
    assert (again.state, again.attempts, again.error, again.cause) == (CrawlState.QUEUED, 0, "", "")
    assert frontier.requeue(db, cause="dns").requeued == [urls[1]]
    assert frontier.requeue(db).requeued == [urls[2]]  # all that failed
    assert frontier.status(db)["urls"] == {"queued": 3, "done": 1}
    assert sorted(c.url for c in frontier.claim(db, 10, dt.timedelta(minutes=1))) == urls[:3]


def test_crawl_cli_says_each_failure_and_requeues(tmp_path: Path) -> None:
    """The guard refusing a crawl printed "1 failed" (exit 0) with the reason only in the database, and
    re-adding the URL said "already known"."""
    db = open_database(f"sqlite:///{tmp_path / 'crawl.db'}")
    crawl = cli_for(db, "crawl")
    with LocalWeb({"inside.test": {"/": page("hello")}}) as web:
        url, pin = web.url("inside.test"), f"inside.test={web.addresses['inside.test']}"
        frontier.add(db, [url])
        refused = crawl("run", "--resolve", pin)  # loopback, not allowed
        assert refused.returncode == 1, refused.stderr
        assert f"failed (refused): {url}" in refused.stderr
        assert "resolves to 127.0.0.2 is a loopback address" in refused.stderr  # the operator's full reason
        assert "crawl requeue --cause" in refused.stderr and not web.requests()
        assert json.loads(crawl("status").stdout)["errors"]["failed"] == {"refused": 1}

        again = crawl("add", url)
        assert again.returncode == 1
        assert f"already crawled and failed (refused): {url}" in again.stderr
        assert f"childshield crawl requeue {url}" in again.stderr

        requeued = crawl("requeue", "--cause", "refused")
        assert requeued.returncode == 0 and "requeued 1 URLs" in requeued.stderr
        fine = crawl("run", "--resolve", pin, "--allow", "127.0.0.0/8")
        assert fine.returncode == 0 and ", 0 failed," in fine.stderr
        assert len(web.requests("inside.test", "/")) == 1
        status = frontier.status(db)
        assert status["urls"] == {"done": 1} and status["errors"]["failed"] == {}


def hit_at(db: Database, url: str, ip: str) -> None:
    """A crawl hit for ``url`` served from ``ip`` (as the crawler stores one)."""
    frontier.add(db, [url])
    [claimed] = [c for c in frontier.claim(db, 10, dt.timedelta(minutes=1)) if c.url == url]
    hit = {"page_id": None, "media_url": url, "page_url": None, "host": url.split("/")[2], "ip": ip,
           "bank": "known", "entry_id": 1, "item_id": 1, "check": "sha256", "distance": 0,
           "sha256": "ab" * 32, "md5": "cd" * 16, "pdq": None}  # fmt: skip
    assert frontier.finish(db, claimed, Finished(kind="media", status=200, hits=[hit]))


def test_rdap_unreachable_is_a_failure_with_its_cause_and_is_not_cached(db: Database) -> None:
    hit_at(db, "http://a.test/k.jpg", "127.0.0.2")
    hit_at(db, "http://b.test/k.jpg", "127.0.0.3")
    away = RdapClient(f"http://127.0.0.1:{closed_port()}/")
    out = follow_hits(db, away, now=T0)
    away.close()
    assert out.created == 2 and out.without_provider == 2
    assert [(ip, cause) for ip, cause, _ in out.failures] == [
        ("127.0.0.2", "unreachable"),
        ("127.0.0.3", "unreachable"),
    ]
    assert "ConnectError" in out.failures[0][2]
    assert out.failures[1][2].startswith("not asked: RDAP was unreachable")  # no timeout per address
    assert takedown_status(db)["errors"]["rdap"] == {"unreachable": 1}

    nets = [
        FakeNetwork("127.0.0.2/32", "NET-A", "A", "NL", "ORG-A", "A B.V.", "abuse@a.test"),
        FakeNetwork("127.0.0.3/32", "NET-B", "B", "US", "ORG-B", "B Inc.", "abuse@b.test"),
    ]
    with FakeRdap(nets) as server:
        rdap = RdapClient(server.base)
        ttl = dt.timedelta(minutes=10)  # CHILDSHIELD_RDAP_FAILURE_CACHE_SECONDS: a short negative cache
        soon = follow_hits(db, rdap, now=T0 + dt.timedelta(minutes=1), failure_ttl=ttl)
        assert server.requests == ["/ip/127.0.0.3"]  # the failure is kept only as long as asked
        assert [ip for ip, _, _ in soon.failures] == ["127.0.0.2"] and soon.without_provider == 1
        later = follow_hits(db, rdap, now=T0 + dt.timedelta(minutes=11), failure_ttl=ttl)
        rdap.close()
    assert later.failures == [] and later.without_provider == 0
    assert takedown_status(db)["errors"]["rdap"] == {}
    with db.session() as session:
        assert session.scalars(select(TakedownItem).where(TakedownItem.provider_id.is_(None))).all() == []


def test_smtp_trouble_of_ours_is_said_and_the_notice_stays_queued(db: Database, tmp_path: Path) -> None:
    """STARTTLS missing (and required), the server refusing our sender, the server away: each is a failure
    with its cause; the notice is never counted as sent nor failed for good, however often it happens."""
    one_item_per_provider(db, 1, T0)
    settings = NoticeSettings(from_addr="notices@hotline.test")
    [nid] = plan(db, settings, now=T0)
    with SmtpServer(tmp_path, starttls=False) as plain:
        result = asyncio.run(send_due(db, settings, SmtpSettings(port=plain.port), now=T0))
        assert result.sent == 0 and result.stopped and plain.mailbox.messages == []
        [miss] = result.failures
        assert miss.cause == "smtp-starttls" and "STARTTLS" in miss.error and not miss.final
    with SmtpServer(tmp_path) as server:
        server.mailbox.refuse_sender = True
        refusing = SmtpSettings(port=server.port, ca_file=str(server.cert))
        result = asyncio.run(send_due(db, settings, refusing, now=T0 + 2 * H))
        assert result.sent == 0 and [f.cause for f in result.failures] == ["smtp-sender-refused"]
    down = SmtpSettings(port=closed_port())
    for k in range(10):  # more than max_attempts (8): a problem of ours never fails the notice
        result = asyncio.run(send_due(db, settings, down, now=T0 + (4 + 2 * k) * H))
        assert result.sent == 0 and [f.cause for f in result.failures] == ["smtp-unreachable"]
    with db.session() as session:
        notice = session.get_one(Notice, nid)
        assert (notice.state, notice.cause, notice.attempts, notice.sent_at) == (
            "queued",
            "smtp-unreachable",
            12,
            None,
        )
        assert session.scalars(select(TakedownItem)).one().notices == 1  # not taken back from its item
    status = takedown_status(db)
    assert status["notices"] == {"queued": 1}
    assert status["errors"]["notices_retrying"] == {"smtp-unreachable": 1}


def test_takedown_cli_says_what_failed_and_exits_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`takedown send` printed "sent 0" and `takedown run --once` "wrote 0 notices", both with exit 0, when
    SMTP and RDAP were away.  Now each failure is printed with its cause, the exit status is 1, and
    `takedown status` counts the errors by cause."""
    db = open_database(f"sqlite:///{tmp_path / 'takedown.db'}")
    picture = encode(generated_photo(5, 64, 48), "JPEG", quality=85)  # in no bank: "changed" when checked
    sites = {"host.test": {"/m.jpg": image(picture), "/k.jpg": image(picture)}}
    monkeypatch.setenv("CHILDSHIELD_RDAP_BASE", f"http://127.0.0.1:{closed_port()}/")
    monkeypatch.setenv("CHILDSHIELD_SMTP_PORT", str(closed_port()))
    takedown = cli_for(db, "takedown")
    with LocalWeb(sites) as web:
        with db.session() as session:
            provider = Provider(key="ORG-0", name="Provider 0", country="NL", abuse_email="abuse@p0.test")
            session.add(provider)
            session.flush()
            session.add(
                TakedownItem(
                    url=web.url("host.test", "/m.jpg"), url_hash="0" * 64, host="host.test", ip="127.0.0.2",
                    provider_id=provider.id, bank="known", item_id=1, sha256="ab" * 32, md5="cd" * 16,
                    found_at=utcnow(), next_check_at=utcnow(),
                )
            )  # fmt: skip
        assert len(plan(db, NoticeSettings())) == 1
        sent = takedown("send")
        assert sent.returncode == 1, sent.stderr
        assert "not sent (smtp-unreachable): SMTPConnectError" in sent.stderr
        assert "queued to be tried again" in sent.stderr and "sent 0 notices (1 not sent)" in sent.stderr

        hit_at(db, web.url("host.test", "/k.jpg"), "127.0.0.9")  # at an address RDAP has yet to name
        run = takedown("run", "--once", "--allow", "127.0.0.0/8", "--resolve", "host.test=127.0.0.2")
    assert run.returncode == 1, run.stderr  # the lookup alone failed: the re-checks got answers
    assert "RDAP lookup failed (unreachable): 127.0.0.9: ConnectError" in run.stderr
    assert "followed 1 new (1 lookups failed)" in run.stderr and "2 removed" in run.stderr
    status = takedown_status(db)  # what `takedown status` prints
    assert status["errors"] == {
        "recheck": {},
        "rdap": {"unreachable": 1},
        "notices_retrying": {"smtp-unreachable": 1},
        "notices_failed": {},
    }
    assert status["items"] == {"removed": 2} and status["notices"] == {"queued": 1}
