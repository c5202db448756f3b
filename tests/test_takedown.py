"""Notice and takedown end to end: a closed web, a local RDAP server, a real SMTP server with STARTTLS,
fake time so that 24-hour rounds take no time."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
from pathlib import Path

import pytest
from sqlalchemy import select

from childshield.banks import create_bank
from childshield.banks.entries import add_outcomes
from childshield.crawl import frontier
from childshield.crawl.crawler import CrawlConfig, Crawler
from childshield.hashing.result import HashOutcome
from childshield.hashing.service import hash_bytes
from childshield.mail import SmtpSettings
from childshield.matching.matcher import Matcher
from childshield.net.guard import AddressPolicy
from childshield.store.db import Database
from childshield.store.models import Notice, Provider, TakedownItem, TakedownState
from childshield.takedown.hosting import set_contact
from childshield.takedown.intake import follow_hits
from childshield.takedown.notices import NoticeSettings, plan, send_due
from childshield.takedown.rdap import RdapClient, parse_network
from childshield.takedown.recheck import RecheckSettings, recheck_due
from childshield.takedown.stats import takedown_stats
from childshield.testing.corpus import encode, generated_photo
from childshield.testing.rdap import FakeNetwork, FakeRdap, network_object
from childshield.testing.web import LocalWeb, image, page, status
from smtp_helpers import SmtpServer
from takedown_helpers import one_item_per_provider
from waiting import HANG_GUARD

LOOPBACK = AddressPolicy((ipaddress.ip_network("127.0.0.0/8"),))
T0 = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC)
H = dt.timedelta(hours=1)


def jpeg(seed: int) -> bytes:
    return encode(generated_photo(seed, 256, 192), "JPEG", quality=88)


def networks() -> list[FakeNetwork]:
    return [
        FakeNetwork(
            "127.0.0.2/32", "NET-A", "ALPHA-NET", "NL", "ORG-ALPHA", "Alpha Hosting B.V.", "abuse@alpha.test"
        ),
        FakeNetwork(
            "127.0.0.3/32", "NET-B", "BETA-NET", "US", "ORG-BETA", "Beta Cloud Inc.", "abuse@beta.test", "top"
        ),
        FakeNetwork(
            "127.0.0.4/32", "NET-C", "GAMMA-NET", "DE", "ORG-GAMMA", "Gamma GmbH"
        ),  # no abuse contact
    ]


def test_rdap_parsing_of_both_styles() -> None:
    nested, top = (parse_network(network_object(n), n.cidr.split("/")[0]) for n in networks()[:2])
    assert (nested.abuse_email, nested.org_handle, nested.country, nested.cidr) == (
        "abuse@alpha.test", "ORG-ALPHA", "NL", "127.0.0.2/32",
    )  # fmt: skip
    assert (top.abuse_email, top.org_name) == ("abuse@beta.test", "Beta Cloud Inc.")


def test_notice_and_takedown_rounds(db: Database, tmp_path: Path) -> None:
    known = {k: jpeg(500 + k) for k in range(5)}
    create_bank(db, "known")
    add_outcomes(db, "known", [HashOutcome(f"k{k}", result=hash_bytes(d)) for k, d in known.items()])
    matcher = Matcher.load(db)
    sites = {
        "alpha.test": {"/": page("<img src='/a1.jpg'><img src='/a2.jpg'><img src='/free.jpg'>"),
                       "/a1.jpg": image(known[0]), "/a2.jpg": image(known[1]), "/free.jpg": image(jpeg(900))},
        "beta.test": {"/": page("<img src='/b1.jpg'>"), "/b1.jpg": image(known[2])},
        "gamma.test": {"/": page("<img src='/c1.jpg'>"), "/c1.jpg": image(known[3])},
    }  # fmt: skip
    settings = NoticeSettings(
        sender="Test Hotline",
        from_addr="notices@hotline.test",
        escalate_after=2,
        escalation_to="partner@hotline.test",
    )
    with LocalWeb(sites) as web, FakeRdap(networks()) as rdap_server, SmtpServer(tmp_path) as smtp:
        smtp_settings = SmtpSettings(port=smtp.port, ca_file=str(smtp.cert))
        recheck = RecheckSettings(policy=LOOPBACK, resolve=web.resolver, timeout=HANG_GUARD)
        frontier.add(db, [web.url(s) for s in sites])
        asyncio.run(Crawler(db, matcher, CrawlConfig(policy=LOOPBACK, resolve=web.resolver)).run())
        rdap = RdapClient(rdap_server.base)
        assert follow_hits(db, rdap, now=T0).created == 4
        assert follow_hits(db, rdap, now=T0).created == 0  # followed once
        assert len(rdap_server.requests) == 3  # one lookup per address (cached)

        first = plan(db, settings, now=T0)
        assert len(first) == 2  # Alpha (2 items) and Beta; Gamma has no contact yet
        assert asyncio.run(send_due(db, settings, smtp_settings, now=T0)).sent == 2
        mails = smtp.mailbox.messages
        assert all(smtp.mailbox.encrypted) and sorted(m["To"] for m in mails) == [
            "abuse@alpha.test",
            "abuse@beta.test",
        ]
        alpha = next(m for m in mails if m["To"] == "abuse@alpha.test")
        body = alpha.get_payload()
        assert web.url("alpha.test", "/a1.jpg") in body and web.url("alpha.test", "/a2.jpg") in body
        assert (
            "/free.jpg" not in body
            and "SHA-256" in body
            and alpha["X-Childshield-Reference"] in alpha["Subject"]
        )
        assert alpha["Message-ID"].endswith("@hotline.test>")

        assert plan(db, settings, now=T0 + 2 * H) == []  # nothing due before 24 h
        web.remove("alpha.test", "/a1.jpg")
        web.put("beta.test", "/b1.jpg", image(jpeg(901)))  # replaced by something else
        result = asyncio.run(recheck_due(db, matcher, recheck, now=T0 + 3 * H))
        assert (result.checked, result.removed, result.still_online) == (4, 2, 2)
        with db.session() as session:
            gone = {
                i.url.rsplit("/", 1)[1]: i.removal
                for i in session.scalars(select(TakedownItem)).all()
                if i.removed_at
            }
        assert gone == {"a1.jpg": "http-404", "b1.jpg": "changed"}

        set_contact(db, "ORG-GAMMA", "desk@gamma.test")  # an analyst found Gamma's contact
        reminders = plan(db, settings, now=T0 + 25 * H)
        assert asyncio.run(send_due(db, settings, smtp_settings, now=T0 + 25 * H)).sent == 2
        late = smtp.mailbox.messages[2:]
        to_alpha = next(m for m in late if m["To"] == "abuse@alpha.test")
        assert "Reminder 1" in to_alpha["Subject"] and "/a2.jpg" in to_alpha.get_payload()
        assert "/a1.jpg" not in to_alpha.get_payload()  # removed: not in the reminder
        assert any(m["To"] == "desk@gamma.test" for m in late) and len(reminders) == 2

        assert plan(db, settings, now=T0 + 49 * H) == []  # no reminder without a check since the last one
        asyncio.run(recheck_due(db, matcher, recheck, now=T0 + 48 * H))
        plan(db, settings, now=T0 + 49 * H)  # Alpha's third notice: escalated too
        asyncio.run(send_due(db, settings, smtp_settings, now=T0 + 49 * H))
        to = [m["To"] for m in smtp.mailbox.messages[4:]]
        assert sorted(to) == ["abuse@alpha.test", "desk@gamma.test", "partner@hotline.test"]  # Gamma: 24 h on
        escalation = smtp.mailbox.messages[4:][to.index("partner@hotline.test")]
        assert "Escalation" in escalation["Subject"] and "/a2.jpg" in escalation.get_payload()

        web.put("alpha.test", "/a2.jpg", status(503))  # the host stops answering properly
        for k in range(3):
            result = asyncio.run(recheck_due(db, matcher, recheck, now=T0 + (50 + k) * H))
            assert result.errors["http-503"] == 1 and result.removed == 0
        with db.session() as session:
            a2 = session.scalars(select(TakedownItem).where(TakedownItem.url.like("%/a2.jpg"))).one()
            # a refusal is no proof of removal, however often: an error, shown and retried
            assert (a2.state, a2.removal, a2.failures, a2.last_error) == (
                TakedownState.ONLINE,
                "",
                3,
                "http-503",
            )

        # The removed picture comes back at another address: a re-upload.
        web.put("alpha.test", "/again/", page("<img src='/again/copy.jpg'>"))
        web.put("alpha.test", "/again/copy.jpg", image(known[0]))
        frontier.add(db, [web.url("alpha.test", "/again/")])
        asyncio.run(Crawler(db, matcher, CrawlConfig(policy=LOOPBACK, resolve=web.resolver)).run())
        assert follow_hits(db, rdap, now=T0 + 60 * H).created == 1
        with db.session() as session:
            copy = session.scalars(select(TakedownItem).where(TakedownItem.url.like("%/copy.jpg"))).one()
            original = session.scalars(select(TakedownItem).where(TakedownItem.url.like("%/a1.jpg"))).one()
            assert copy.reupload_of == original.id
            assert session.query(Notice).filter(Notice.state == "sent").count() == 7
            assert {p.key for p in session.scalars(select(Provider)).all()} == {
                "ORG-ALPHA",
                "ORG-BETA",
                "ORG-GAMMA",
            }

        rows = {r["provider"]: r for r in takedown_stats(db, now=T0 + 50 * 24 * H)}
        a = rows["ORG-ALPHA"]
        assert (a["media"], a["removed"], a["notices_sent"], a["country"]) == (3, 1, 3, "NL")
        assert a["median_hours_to_removal"] == pytest.approx(3)  # a1 after 3 h; a2 was never seen gone
        assert rows["ORG-BETA"]["p90_hours_to_removal"] == pytest.approx(3.0)
        assert rows["all"]["media"] == 5
        countries = {r["country"]: r for r in takedown_stats(db, by="country", now=T0 + 50 * 24 * H)}
        assert set(countries) == {"NL", "US", "DE", "all"} and countries["US"]["removed"] == 1
        rdap.close()


def test_smtp_refusals_fail_only_what_they_concern(db: Database, tmp_path: Path) -> None:
    one_item_per_provider(db, 3, T0)
    settings = NoticeSettings(from_addr="notices@hotline.test")
    assert len(plan(db, settings, now=T0)) == 3
    with SmtpServer(tmp_path) as smtp:
        smtp_settings = SmtpSettings(port=smtp.port, ca_file=str(smtp.cert))
        smtp.mailbox.refuse_sender = True  # our side is wrong: nothing fails for good, the run stops
        assert asyncio.run(send_due(db, settings, smtp_settings, now=T0)).sent == 0
        with db.session() as session:
            states = sorted((n.state, n.attempts) for n in session.scalars(select(Notice)).all())
        assert states == [("queued", 0), ("queued", 0), ("queued", 1)]
        smtp.mailbox.refuse_sender = False
        smtp.mailbox.refuse_rcpt = {"abuse@p0.test"}  # one dead address: only its notice fails
        assert asyncio.run(send_due(db, settings, smtp_settings, now=T0 + H)).sent == 2
        assert sorted(m["To"] for m in smtp.mailbox.messages) == ["abuse@p1.test", "abuse@p2.test"]
    with db.session() as session:
        failed = session.scalars(select(Notice).where(Notice.state == "failed")).one()
        assert failed.to_addr == "abuse@p0.test" and "recipient refused" in failed.last_error
        item = session.scalars(select(TakedownItem).where(TakedownItem.url == "http://p0.test/m.jpg")).one()
        assert item.notices == 0 and item.first_notice_at is None  # the failed notice was taken back
    assert plan(db, settings, now=T0 + 2 * H) == []  # not again at once ...
    # ... but with the next round (a first notice for p0); p1 and p2 get reminders only once a re-check
    # has seen them online since their notice
    assert len(plan(db, settings, now=T0 + 26 * H)) == 1


def test_a_provider_missed_by_rdap_is_found_later(db: Database) -> None:
    known = jpeg(777)
    create_bank(db, "known")
    add_outcomes(db, "known", [HashOutcome("k", result=hash_bytes(known))])
    with LocalWeb({"late.test": {"/": page("<img src='/k.jpg'>"), "/k.jpg": image(known)}}) as web:
        frontier.add(db, [web.url("late.test")])
        asyncio.run(Crawler(db, Matcher.load(db), CrawlConfig(policy=LOOPBACK, resolve=web.resolver)).run())
    with FakeRdap([]) as server:  # the registry does not know the address yet
        rdap = RdapClient(server.base)
        first = follow_hits(db, rdap, now=T0)
        assert (first.created, first.without_provider) == (1, 1)
        [(ip, cause, error)] = first.failures  # said, with its cause: not a silent "0 notices"
        assert ip == "127.0.0.2" and cause == "not-found" and "not found" in error
        asked = len(server.requests)
        # a failure is not cached for an hour (only answers are): the next round asks again
        server.networks.append(networks()[0])
        again = follow_hits(db, rdap, now=T0 + 5 * dt.timedelta(minutes=1))
        assert len(server.requests) == asked + 1 and again.failures == [] and again.without_provider == 0
        with db.session() as session:
            assert session.scalars(select(TakedownItem.provider_id)).one() is not None
        rdap.close()


def test_our_failed_checks_are_never_removals_and_reminders_say_the_real_check(db: Database) -> None:
    """A re-check the guard refuses (our side) proves nothing: no removal however often it happens, and no
    reminder claims a check that did not happen; the reminder names the time of the real last check."""
    known = jpeg(611)
    create_bank(db, "known")
    add_outcomes(db, "known", [HashOutcome("k", result=hash_bytes(known))])
    sites = {"held.test": {"/": page("<img src='/k.jpg'>"), "/k.jpg": image(known)}}
    settings = NoticeSettings(from_addr="notices@hotline.test", renotify_every=dt.timedelta(minutes=30))
    with LocalWeb(sites) as web, FakeRdap(networks()) as rdap_server:
        frontier.add(db, [web.url("held.test")])
        asyncio.run(Crawler(db, Matcher.load(db), CrawlConfig(policy=LOOPBACK, resolve=web.resolver)).run())
        rdap = RdapClient(rdap_server.base)
        assert follow_hits(db, rdap, now=T0).created == 1
        rdap.close()
        assert len(plan(db, settings, now=T0)) == 1
        refused = RecheckSettings(
            resolve=web.resolver, timeout=HANG_GUARD
        )  # loopback not allowed: the guard says no
        for k in range(5):
            result = asyncio.run(recheck_due(db, Matcher.load(db), refused, now=T0 + (k + 1) * H))
            assert (result.checked, result.removed, result.failed) == (1, 0, 1)
        [cause] = result.errors
        with db.session() as session:
            item = session.scalars(select(TakedownItem)).one()
            assert (item.state, item.failures, item.last_error) == (TakedownState.ONLINE, 5, cause)
            assert item.last_checked_at is None
        assert plan(db, settings, now=T0 + 6 * H) == []  # no check saw it online: no "still online" claim
        assert takedown_stats(db, now=T0 + 7 * H)[0]["removed"] == 0
        checked = T0 + 6 * H + dt.timedelta(minutes=7)
        fine = RecheckSettings(policy=LOOPBACK, resolve=web.resolver, timeout=HANG_GUARD)
        assert asyncio.run(recheck_due(db, Matcher.load(db), fine, now=checked)).still_online == 1
        [nid] = plan(db, settings, now=T0 + 7 * H)
        with db.session() as session:
            notice = session.get_one(Notice, nid)
            assert notice.subject.startswith("Reminder 1")
            assert f"last seen online: {checked:%Y-%m-%d %H:%M} UTC" in notice.body
            assert f"the latest check: {checked:%Y-%m-%d %H:%M} UTC" in notice.body
            assert "every 0.5 hours" in notice.body  # fractional renotify hours (was "every 0 hours")
