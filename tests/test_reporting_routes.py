"""Reports chosen by policy: the reporting file, incidents from the scan's context, automatic queueing
(once, whatever runs it twice at the same time), e-mailed letters (text, PDF, JSON) to a real SMTP
server, one delivery round over every destination, reports inside signed bundles, and the custodian's
endpoints with their roles."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import json
import threading
import zipfile
from email.message import Message
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree
from pypdf import PdfReader
from sqlalchemy import select

from childshield.accounts.service import Principal, create_api_key, create_user
from childshield.mail import SmtpSettings
from childshield.reporting import mailer
from childshield.reporting.attachments import for_bundle
from childshield.reporting.auto import queue_confirmed
from childshield.reporting.config import ConfigError, parse_config
from childshield.reporting.deliver import deliver_due
from childshield.review.keys import Keyring
from childshield.review.queue import ReviewConfig, decide
from childshield.store.db import Database
from childshield.store.models import Decision, Evidence, Report, ReportFile, ReviewItem, Role
from childshield.testing.corpus import encode, generated_photo
from childshield.testing.cybertip import FakeCyberTip
from childshield.vault.bundle import BundleError, export_bundle, generate_keys, verify_bundle
from childshield.vault.store import expire, preserve_confirmed
from childshield.web.app import create_app
from childshield.web.settings import ServiceSettings
from review_helpers import auth, bank_with, browser, people, png
from smtp_helpers import SmtpServer

NOW = dt.datetime.now(dt.UTC)
SETTLED = NOW + dt.timedelta(hours=1)

CONFIG = """
[reporter]
email = "safety@platform.test"
organisation = "Platform Trust & Safety"
platform = "Platform"
default_url = "https://platform.test/upload"

[[destination]]
name = "ncmec"
kind = "cybertipline"
url = "{cybertip}"

[[destination]]
name = "hotline"
kind = "email"
to = ["reports@hotline.test"]

[[route]]
destination = "ncmec"

[[route]]
destination = "hotline"
classifications = ["A1"]

[auto]
enabled = true
settle_minutes = 10
"""


@pytest.fixture(autouse=True)
def _own_data_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("CHILDSHIELD_CYBERTIP_USER", "esp")  # the local CyberTipline's account
    monkeypatch.setenv("CHILDSHIELD_CYBERTIP_PASSWORD", "secret")


def uploads_with_context(db: Database, tmp_path: Path, contexts: list[tuple[dict[str, str], str]]) -> Keyring:
    """Copies of a known picture scanned with the given context and confirmed with a classification,
    then preserved as evidence."""
    keys = people(db)
    key_file = tmp_path / "media.keys"
    app = create_app(
        ServiceSettings(database_url=db.url, refresh_seconds=0, consensus=1, media_key_file=str(key_file))
    )
    known = generated_photo(4242, 320, 240)
    bank_with(browser(app), keys["admin"], known)
    for n, (context, _) in enumerate(contexts):
        data = encode(known, "JPEG", quality=90 - n)  # a different file each time
        r = browser(app).post("/v1/scan", params=context, content=data, headers=auth(keys["service"]))
        assert r.status_code == 200 and r.json()["decision"] == "review", r.text
    with db.session() as session:
        items = session.scalars(select(ReviewItem.id).order_by(ReviewItem.id)).all()
    for item_id, (_, classification) in zip(items, contexts, strict=True):
        decide(
            db,
            Principal(1, "r1", Role.REVIEWER),
            item_id,
            "confirm",
            classification=classification,
            config=ReviewConfig(),
        )
    keyring = Keyring.load(key_file)
    assert preserve_confirmed(db, keyring) == len(contexts)
    return keyring


ALICE = {
    "user_id": "u-17",
    "screen_name": "alice",
    "ip": "203.0.113.9",
    "location": "https://platform.test/p/1",
}
BOB = {"user_id": "u-99", "ip": "198.51.100.4", "location": "https://platform.test/p/2"}


def test_the_scan_context_is_checked_and_kept(db: Database, tmp_path: Path) -> None:
    keys = people(db)
    app = create_app(ServiceSettings(database_url=db.url, refresh_seconds=0, consensus=1))
    known = generated_photo(4243, 200, 150)
    bank_with(browser(app), keys["admin"], known)
    client = browser(app)
    bad = client.post(
        "/v1/scan", params={"ip": "999.1.1.1"}, content=png(known), headers=auth(keys["service"])
    )
    assert bad.status_code == 422 and "ip" in bad.text
    bad = client.post(
        "/v1/scan",
        params={"location": "javascript:alert(1)"},
        content=png(known),
        headers=auth(keys["service"]),
    )
    assert bad.status_code == 422
    ok = client.post("/v1/scan", params=ALICE, content=png(known), headers=auth(keys["service"]))
    assert ok.status_code == 200
    with db.session() as session:
        assert session.scalars(select(Decision.context)).one() == ALICE


def test_config_file_errors_name_the_setting() -> None:
    config = parse_config(CONFIG.format(cybertip="https://exttest.cybertip.org/ispws"))
    assert set(config.destinations) == {"ncmec", "hotline"} and config.auto
    assert config.settle == dt.timedelta(minutes=10)
    assert config.destinations_for("A1", set(), "api") == ["ncmec", "hotline"]
    assert config.destinations_for("A2", set(), "api") == ["ncmec"]
    for broken, says in [
        ("[[destination]]\nname='x'\nkind='fax'", "kind must be one of"),
        ("[[destination]]\nname='x'\nkind='email'", "needs 'to'"),
        ("[[destination]]\nname='x'\nkind='email'\nto=['a@b.test, c@d.test']", "not plain e-mail"),
        ("[[route]]\ndestination='nowhere'", "no destination named 'nowhere'"),
        ("[reporter]\nemail='a@b.test'\ncolour='red'", "unknown setting(s) colour"),
        ("[auto]\nenabled=true", "need [reporter].email"),
        ("[auto]\nsettle_minutes=-1", "settle_minutes"),
        ("[[destination]]\nname='x'\nkind='cybertipline'\nurl='http://example.org/'", "must be an https URL"),
        ("[[destination]]\nname='x'\nkind='email'\nto=['a@b.test']\n[[destination]]\nname='x'\n"
         "kind='email'\nto=['a@b.test']", "used twice"),
        ("not toml [", "not valid TOML"),
    ]:  # fmt: skip
        with pytest.raises(
            ConfigError, match=says.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
        ):
            parse_config(broken)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_any_reporting_file_is_read_or_refused_clearly(text: str) -> None:
    with contextlib.suppress(ConfigError):
        parse_config(text)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["reporter", "destination", "route", "auto", "x"]),
        st.one_of(
            st.integers(),
            st.text(max_size=5),
            st.lists(st.dictionaries(st.text(max_size=8), st.text(max_size=8)), max_size=2),
        ),
        max_size=4,
    )
)
def test_odd_shapes_are_refused_clearly(data: dict[str, object]) -> None:
    text = "\n".join(f"{k} = {json.dumps(v)}" for k, v in data.items() if not isinstance(v, list))
    with contextlib.suppress(ConfigError):
        parse_config(text)


def test_reports_are_queued_by_routes_once_per_incident(db: Database, tmp_path: Path) -> None:
    uploads_with_context(db, tmp_path, [(ALICE, "A1"), (ALICE, "A2"), (BOB, "A2"), ({}, "A2")])
    config = parse_config(CONFIG.format(cybertip="https://exttest.cybertip.org/ispws"))

    early = queue_confirmed(db, config, now=NOW)
    assert early.reports == [] and early.waiting == 4  # the incidents are still settling
    queued = queue_confirmed(db, config, now=SETTLED)
    assert (
        len(queued.reports) == 4 and not queued.problems
    )  # ncmec: alice, bob, the anonymous one; hotline: alice
    assert queue_confirmed(db, config, now=SETTLED + dt.timedelta(days=1)).reports == []  # once

    with db.session() as session:
        reports = session.scalars(select(Report).order_by(Report.id)).all()
        by_destination = {
            (
                r.destination,
                len(session.scalars(select(ReportFile).where(ReportFile.report_id == r.id)).all()),
            )
            for r in reports
        }
        xml = [etree.fromstring(r.document.encode()) for r in reports if r.destination == "ncmec"]
        letters = [json.loads(r.document) for r in reports if r.destination == "hotline"]
    assert sorted(by_destination) == [("hotline", 1), ("ncmec", 1), ("ncmec", 2)]
    alice = next(x for x in xml if x.findtext(".//espIdentifier") == "u-17")
    assert alice.findtext(".//screenName") == "alice"
    assert alice.findtext(".//ipCaptureEvent/ipAddress") == "203.0.113.9"
    assert alice.findtext(".//webPageIncident/url") == "https://platform.test/p/1"
    anonymous = next(x for x in xml if x.find(".//personOrUserReported") is None)
    assert anonymous.findtext(".//webPageIncident/url") == "https://platform.test/upload"  # default_url
    assert letters[0]["incident"]["user_id"] == "u-17" and len(letters[0]["files"]) == 1
    assert letters[0]["files"][0]["classification"] == "A1"


def test_two_queuers_at_once_never_queue_twice(db: Database, tmp_path: Path) -> None:
    uploads_with_context(db, tmp_path, [(ALICE, "A1"), (BOB, "A2")])
    config = parse_config(CONFIG.format(cybertip="https://exttest.cybertip.org/ispws"))
    results, errors = [], []

    def run() -> None:
        try:
            results.append(queue_confirmed(db, config, now=SETTLED))
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sum(len(r.reports) for r in results) == 3
    with db.session() as session:
        pairs = session.execute(select(ReportFile.evidence_id, Report.destination).join(Report)).all()
    assert len(pairs) == len(set(pairs)) == 3


def test_deleted_or_mediafree_evidence_goes_only_where_it_can(db: Database, tmp_path: Path) -> None:
    uploads_with_context(db, tmp_path, [(ALICE, "A1")])
    with db.session() as session:
        row = session.scalars(select(Evidence)).one()
        row.sealed = row.nonce = row.key_id = None  # no media kept
    config = parse_config(CONFIG.format(cybertip="https://exttest.cybertip.org/ispws"))
    queued = queue_confirmed(db, config, now=SETTLED)
    with db.session() as session:
        assert [r.destination for r in session.scalars(select(Report)).all()] == [
            "hotline"
        ]  # a letter needs no file
    assert len(queued.reports) == 1
    assert expire(db, now=NOW + dt.timedelta(days=400)) == 1
    assert queue_confirmed(db, config, now=NOW + dt.timedelta(days=400)).reports == []


def _attachments(msg: Message) -> dict[str, bytes]:
    out = {}
    for part in msg.walk():
        name = part.get_filename()
        if name:
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            out[name] = payload
    return out


def test_one_round_files_with_ncmec_and_mails_the_hotline(db: Database, tmp_path: Path) -> None:
    keyring = uploads_with_context(db, tmp_path, [(ALICE, "A1"), (BOB, "A2")])
    with FakeCyberTip() as fake, SmtpServer(tmp_path) as smtp:
        config = parse_config(CONFIG.format(cybertip=fake.base))
        queue_confirmed(db, config, now=SETTLED)
        smtp_settings = SmtpSettings(port=smtp.port, ca_file=str(smtp.cert))
        delivered = asyncio.run(deliver_due(db, config, keyring, smtp_settings))
        assert delivered.filed == {"ncmec": 2, "hotline": 1} and not delivered.stopped
        again = asyncio.run(deliver_due(db, config, keyring, smtp_settings))
        assert again.filed == {"ncmec": 0, "hotline": 0}
        assert len(fake.filed()) == 2 and sorted(len(r.files) for r in fake.filed()) == [1, 1]
        assert len(smtp.mailbox.messages) == 1 and smtp.mailbox.encrypted == [True]
        msg = smtp.mailbox.messages[0]
    with db.session() as session:
        hotline = session.scalars(select(Report).where(Report.destination == "hotline")).one()
        evidence = session.scalars(select(Evidence).order_by(Evidence.id)).first()
        assert hotline.state == "done" and evidence is not None
        sha256 = evidence.details["media_sha256"]
    assert msg["To"] == "reports@hotline.test" and f"[CS-R{hotline.id}]" in msg["Subject"]
    files = _attachments(msg)
    assert json.loads(files[f"CS-R{hotline.id}.json"]) == json.loads(hotline.document)
    text = "".join(
        page.extract_text() for page in PdfReader(io.BytesIO(files[f"CS-R{hotline.id}.pdf"])).pages
    )
    assert sha256 in text.replace("\n", "") and f"CS-R{hotline.id}" in text
    plain = next(p for p in msg.walk() if p.get_content_type() == "text/plain" and not p.get_filename())
    body = plain.get_payload(decode=True)
    assert isinstance(body, bytes) and sha256.encode() in body and b"203.0.113.9" in body
    assert not any(name.startswith("evidence") for name in files)  # never the media


def test_a_mailed_report_killed_in_flight_is_resent_as_the_same_message(db: Database, tmp_path: Path) -> None:
    uploads_with_context(db, tmp_path, [(ALICE, "A1")])
    with SmtpServer(tmp_path) as smtp:
        config = parse_config(CONFIG.format(cybertip="https://exttest.cybertip.org/ispws"))
        queue_confirmed(db, config, now=SETTLED)
        hotline, reporter = config.destinations["hotline"], config.reporter
        smtp_settings = SmtpSettings(port=smtp.port, ca_file=str(smtp.cert))
        t0 = dt.datetime.now(dt.UTC)
        claimed = mailer._claim(db, "hotline", t0)  # the sender took it, then died before SMTP answered
        assert claimed is not None
        first = mailer.message(claimed, hotline, reporter)
        assert asyncio.run(mailer.send_due(db, hotline, reporter, smtp_settings, now=t0)) == 0  # leased
        later = t0 + mailer.LEASE + dt.timedelta(seconds=1)
        assert asyncio.run(mailer.send_due(db, hotline, reporter, smtp_settings, now=later)) == 1
        assert asyncio.run(mailer.send_due(db, hotline, reporter, smtp_settings, now=later)) == 0
        assert len(smtp.mailbox.messages) == 1
        assert smtp.mailbox.messages[0]["Message-ID"] == first["Message-ID"]
    with db.session() as session:
        report = session.scalars(select(Report).where(Report.destination == "hotline")).one()
        assert report.state == "done" and report.attempts == 2


def test_a_refused_recipient_fails_the_report_and_server_trouble_keeps_it(
    db: Database, tmp_path: Path
) -> None:
    uploads_with_context(db, tmp_path, [(ALICE, "A1")])
    config = parse_config(CONFIG.format(cybertip="https://exttest.cybertip.org/ispws"))
    queue_confirmed(db, config, now=SETTLED)
    hotline, reporter = config.destinations["hotline"], config.reporter
    away = SmtpSettings(port=1, timeout=2)  # nobody listens: ours to fix, the report waits
    t0 = dt.datetime.now(dt.UTC)
    assert asyncio.run(mailer.send_due(db, hotline, reporter, away, now=t0)) == 0
    with db.session() as session:
        report = session.scalars(select(Report).where(Report.destination == "hotline")).one()
        assert report.state == "queued" and report.last_error
    with SmtpServer(tmp_path) as smtp:
        smtp.mailbox.refuse_rcpt.add("reports@hotline.test")
        smtp_settings = SmtpSettings(port=smtp.port, ca_file=str(smtp.cert))
        later = t0 + dt.timedelta(hours=2)
        assert asyncio.run(mailer.send_due(db, hotline, reporter, smtp_settings, now=later)) == 0
    with db.session() as session:
        report = session.scalars(select(Report).where(Report.destination == "hotline")).one()
        assert report.state == "failed" and "refused" in report.last_error


def test_a_bundle_carries_the_report_and_catches_its_alteration(db: Database, tmp_path: Path) -> None:
    keyring = uploads_with_context(db, tmp_path, [(ALICE, "A1"), (ALICE, "A2")])
    with FakeCyberTip() as fake:
        config = parse_config(CONFIG.format(cybertip=fake.base))
        queue_confirmed(db, config, now=SETTLED)
        asyncio.run(deliver_due(db, config, keyring, SmtpSettings(port=1, timeout=1)))
        remote = fake.filed()[0].id
    with db.session() as session:
        report_id = session.scalars(select(Report.id).where(Report.destination == "ncmec")).one()
    generate_keys(tmp_path / "sign.key", tmp_path / "sign.pub")
    ids, bundled = for_bundle(db, report_id)
    assert len(ids) == 2
    out = tmp_path / "bundle.zip"
    export_bundle(db, keyring, ids, out, tmp_path / "sign.key", actor="custodian", purpose="case 9",
                  reports=[bundled])  # fmt: skip
    verified = verify_bundle(out, (tmp_path / "sign.pub").read_bytes())
    assert verified.reports == 1 and verified.evidence == 2
    with zipfile.ZipFile(out) as z:
        names = z.namelist()
        manifest = json.loads(z.read("manifest.json"))
        report_xml = z.read(f"reports/{report_id}/report.xml")
    assert manifest["reports"][0]["remote_id"] == remote and manifest["reports"][0]["state"] == "done"
    assert sum(n.startswith(f"reports/{report_id}/fileDetails-") for n in names) == 2
    assert b"u-17" in report_xml
    altered = tmp_path / "altered.zip"
    with zipfile.ZipFile(out) as src, zipfile.ZipFile(altered, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            dst.writestr(name, data.replace(b"u-17", b"u-18") if name.endswith("report.xml") else data)
    with pytest.raises(BundleError, match=r"report\.xml does not match"):
        verify_bundle(altered, (tmp_path / "sign.pub").read_bytes())


def test_custodians_and_only_they_handle_evidence_and_reports(db: Database, tmp_path: Path) -> None:
    uploads_with_context(db, tmp_path, [(ALICE, "A1")])
    for name, role in (("keeper", Role.CUSTODIAN), ("judge", Role.SENIOR), ("eve", Role.REVIEWER)):
        create_user(db, name, role, password="a long enough passphrase")
    keys = {name: create_api_key(db, name) for name in ("keeper", "judge", "eve", "platform")}
    reporting = tmp_path / "reporting.toml"
    reporting.write_text(CONFIG.format(cybertip="https://exttest.cybertip.org/ispws"))
    app = create_app(ServiceSettings(database_url=db.url, refresh_seconds=0, reporting_file=str(reporting)))
    client = browser(app)
    with db.session() as session:
        evidence_id = session.scalars(select(Evidence.id)).one()
    calls = [
        ("get", "/v1/evidence", None),
        ("put", f"/v1/evidence/{evidence_id}/hold", {"reason": "order 12/26"}),
        ("delete", f"/v1/evidence/{evidence_id}/hold", None),
        ("post", "/v1/reports", {"evidence_ids": [evidence_id], "destination": "hotline"}),
        ("get", "/v1/reports", None),
    ]
    for name in ("judge", "eve", "platform"):
        for method, url, body in calls:
            r = client.request(method, url, json=body, headers=auth(keys[name]))
            assert r.status_code == 403, (name, url, r.status_code)
    for method, url, body in calls:
        assert client.request(method, url, json=body).status_code == 401
    custodian = auth(keys["keeper"])
    listed = client.get("/v1/evidence", headers=custodian).json()
    assert listed[0]["id"] == evidence_id and "sealed" not in listed[0] and listed[0]["media"] is True
    assert (
        client.put(
            f"/v1/evidence/{evidence_id}/hold", json={"reason": "order 12/26"}, headers=custodian
        ).status_code
        == 204
    )
    assert client.get("/v1/evidence", headers=custodian).json()[0]["hold"] == "order 12/26"
    assert client.put("/v1/evidence/999/hold", json={"reason": "x"}, headers=custodian).status_code == 404
    body = {"evidence_ids": [evidence_id], "destination": "hotline", "urls": ["https://platform.test/p/9"]}
    queued = client.post("/v1/reports", json=body, headers=custodian)
    assert queued.status_code == 201 and queued.json()["files"] == 1
    bad = client.post(
        "/v1/reports", json={"evidence_ids": [evidence_id], "destination": "fax"}, headers=custodian
    )
    assert bad.status_code == 422 and "no destination 'fax'" in bad.text
    reports = client.get("/v1/reports", headers=custodian).json()
    assert [(r["destination"], r["state"]) for r in reports] == [("hotline", "queued")]
    with db.session() as session:
        letter = json.loads(session.scalars(select(Report.document)).one())
    assert letter["incident"]["urls"] == ["https://platform.test/p/9"]


def test_the_service_reports_confirmed_material_by_itself(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``serve`` with [auto] enabled: scan with context → review confirms → the purge round preserves
    it → the reporting round queues it by the routes and files it with NCMEC and the hotline.

    The test waits on the service's own rounds, not on a clock: each reporting round it completes is
    observed (the real round, counted), and the test goes on when the report is filed and the letter
    delivered, however long a loaded machine takes.  It fails when the service says it failed (a
    destination stopped, a report failed) or when rounds that ran after the evidence was preserved
    queued nothing."""
    from fastapi.testclient import TestClient

    from childshield.reporting import deliver

    keys = people(db)
    key_file = tmp_path / "media.keys"
    progress = threading.Condition()
    rounds: list[tuple[bool, object]] = []  # (evidence preserved when the round ended, what it delivered)
    real_round = deliver.deliver_due

    async def observed(*args: object, **kwargs: object) -> deliver.Delivered:
        out = await real_round(*args, **kwargs)  # type: ignore[arg-type]
        with db.session() as session:
            preserved = session.scalars(select(Evidence.id)).first() is not None
        with progress:
            rounds.append((preserved, out))
            progress.notify_all()
        return out

    monkeypatch.setattr(deliver, "deliver_due", observed)  # the service's loop takes it when it starts

    def trouble() -> str:
        for _, out in rounds:
            if isinstance(out, deliver.Delivered) and out.stopped:
                return f"a destination stopped: {out.stopped}"
        with db.session() as session:
            reports = session.scalars(select(Report)).all()
            failed = [(r.destination, r.last_error) for r in reports if r.state == "failed"]
        if failed:
            return f"reports failed: {failed}"
        if not reports and sum(preserved for preserved, _ in rounds) > 20:
            return "20 reporting rounds after the evidence was preserved queued nothing"
        return ""

    with FakeCyberTip() as fake, SmtpServer(tmp_path) as smtp:
        reporting = tmp_path / "reporting.toml"
        reporting.write_text(
            CONFIG.format(cybertip=fake.base).replace("settle_minutes = 10", "settle_minutes = 0")
        )
        env = {"CHILDSHIELD_SMTP_PORT": str(smtp.port), "CHILDSHIELD_SMTP_CA_FILE": str(smtp.cert)}
        with pytest.MonkeyPatch.context() as mp:
            for k, v in env.items():
                mp.setenv(k, v)
            app = create_app(
                ServiceSettings(
                    database_url=db.url, refresh_seconds=0, consensus=1, media_key_file=str(key_file),
                    reporting_file=str(reporting), purge_every_seconds=0.2, report_every_seconds=0.2,
                )
            )  # fmt: skip
            with TestClient(app, base_url="https://testserver") as client:
                known = generated_photo(4244, 320, 240)
                bank_with(client, keys["admin"], known)
                r = client.post("/v1/scan", params=ALICE, content=png(known), headers=auth(keys["service"]))
                assert r.json()["decision"] == "review"
                with db.session() as session:
                    item_id = session.scalars(select(ReviewItem.id)).one()
                decide(db, Principal(1, "r1", Role.REVIEWER), item_id, "confirm", classification="A1",
                       config=ReviewConfig())  # fmt: skip
                with progress:
                    while not (fake.filed() and smtp.mailbox.messages):
                        why = trouble()
                        assert not why, why
                        progress.wait()  # woken by the end of each of the service's reporting rounds
    assert len(fake.filed()) == 1 and len(fake.filed()[0].files) == 1
    assert len(smtp.mailbox.messages) == 1
    with db.session() as session:
        states = sorted((r.destination, r.state) for r in session.scalars(select(Report)).all())
    assert states == [("hotline", "done"), ("ncmec", "done")]


def test_report_and_vault_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The commands on the embedded store (their code paths are the ones tested above on both)."""
    from childshield.store.db import open_database
    from cli_runner import cli_for

    db = open_database(f"sqlite:///{tmp_path / 'cli.db'}")
    uploads_with_context(db, tmp_path, [(ALICE, "A1")])
    reporting = tmp_path / "reporting.toml"
    reporting.write_text(
        CONFIG.format(cybertip="https://exttest.cybertip.org/ispws").replace(
            "settle_minutes = 10", "settle_minutes = 0"
        )
    )
    monkeypatch.setenv("CHILDSHIELD_REPORTING_FILE", str(reporting))
    monkeypatch.setenv("CHILDSHIELD_MEDIA_KEY_FILE", str(tmp_path / "media.keys"))
    report, vault = cli_for(db, "report"), cli_for(db, "vault")
    auto = report("auto")
    assert auto.returncode == 0 and "queued 2 reports" in auto.stderr, auto.stderr
    assert "queued 0 reports" in report("auto").stderr
    listed = [json.loads(line) for line in report("list").stdout.splitlines()]
    assert sorted(r["destination"] for r in listed) == ["hotline", "ncmec"]
    hotline = next(r["id"] for r in listed if r["destination"] == "hotline")
    shown = report("show", str(hotline))
    assert shown.returncode == 0 and f"Reference: CS-R{hotline}" in shown.stdout and "u-17" in shown.stdout
    assert report("show", "999").returncode == 1
    assert vault("keygen", str(tmp_path / "s.key"), str(tmp_path / "s.pub")).returncode == 0
    out = tmp_path / "b.zip"
    signing = ("--signing-key", str(tmp_path / "s.key"), "--actor", "keeper", "--purpose", "request 4")
    exported = vault("export", "--report", str(hotline), "--out", str(out), *signing)
    assert exported.returncode == 0, exported.stderr
    verified = vault("verify", str(out), "--public-key", str(tmp_path / "s.pub"))
    assert verified.returncode == 0 and "1 pieces of evidence, 1 reports" in verified.stdout
    with zipfile.ZipFile(out) as z:
        assert f"reports/{hotline}/CS-R{hotline}.pdf" in z.namelist()
    bad = tmp_path / "bad.toml"
    bad.write_text("[[route]]\ndestination = 'nowhere'\n")
    monkeypatch.setenv("CHILDSHIELD_REPORTING_FILE", str(bad))
    refused = cli_for(db, "report")("auto")
    said = " ".join(refused.stderr.split())
    assert refused.returncode == 1 and "[[route]] #1: no destination named 'nowhere'" in said
    db.close()


def test_two_senders_at_once_file_each_report_once(db: Database, tmp_path: Path) -> None:
    """Two workers (or serve and a cron job) sending at the same moment: each report is claimed by one."""
    keyring = uploads_with_context(db, tmp_path, [(ALICE, "A2"), (BOB, "A2"), ({"user_id": "u-3"}, "A2")])
    with FakeCyberTip() as fake:
        config = parse_config(CONFIG.format(cybertip=fake.base))
        assert len(queue_confirmed(db, config, now=SETTLED).reports) == 3
        rounds: list[object] = []

        def send() -> None:
            rounds.append(asyncio.run(deliver_due(db, config, keyring, SmtpSettings(port=1, timeout=1))))

        threads = [threading.Thread(target=send) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(fake.filed()) == 3 and len(fake.reports) == 3  # nothing submitted twice
    with db.session() as session:
        assert [r.state for r in session.scalars(select(Report)).all()] == ["done"] * 3


def test_evidence_gone_before_sending_fails_that_report_only(db: Database, tmp_path: Path) -> None:
    keyring = uploads_with_context(db, tmp_path, [(ALICE, "A1"), (BOB, "A2")])
    with FakeCyberTip() as fake, SmtpServer(tmp_path) as smtp:
        config = parse_config(CONFIG.format(cybertip=fake.base))
        queue_confirmed(db, config, now=SETTLED)
        with db.session() as session:
            first = session.scalars(select(Evidence).order_by(Evidence.id)).first()
            assert first is not None
            first.sealed = first.nonce = first.key_id = None  # its media went (deleted, expired)
        smtp_settings = SmtpSettings(port=smtp.port, ca_file=str(smtp.cert))
        delivered = asyncio.run(deliver_due(db, config, keyring, smtp_settings))
        assert delivered.filed == {"ncmec": 1, "hotline": 1} and not delivered.stopped
        assert len(fake.filed()) == 1
    with db.session() as session:
        states = sorted((r.destination, r.state) for r in session.scalars(select(Report)).all())
    assert states == [("hotline", "done"), ("ncmec", "done"), ("ncmec", "failed")]


def test_odd_names_and_partial_refusals_in_mail(db: Database, tmp_path: Path) -> None:
    uploads_with_context(db, tmp_path, [(ALICE, "A1")])
    text = CONFIG.format(cybertip="https://exttest.cybertip.org/ispws")
    text = text.replace('organisation = "Platform Trust & Safety"', 'organisation = "Platform, Inc. <T&S>"')
    text = text.replace('to = ["reports@hotline.test"]', 'to = ["reports@hotline.test", "gone@police.test"]')
    config = parse_config(text)
    queue_confirmed(db, config, now=SETTLED)
    hotline, reporter = config.destinations["hotline"], config.reporter
    with SmtpServer(tmp_path) as smtp:
        smtp.mailbox.refuse_rcpt.add("gone@police.test")
        smtp_settings = SmtpSettings(port=smtp.port, ca_file=str(smtp.cert))
        later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
        assert asyncio.run(mailer.send_due(db, hotline, reporter, smtp_settings, now=later)) == 0
        msg = smtp.mailbox.messages[0]  # one recipient took it
    from email.utils import getaddresses

    assert getaddresses([msg["From"]]) == [("Platform, Inc. <T&S>", "safety@platform.test")]
    with db.session() as session:
        report = session.scalars(select(Report).where(Report.destination == "hotline")).one()
    assert report.state == "failed" and "gone@police.test" in report.last_error  # not reported as done
    with pytest.raises(ConfigError, match="not a plain e-mail"):
        parse_config("[reporter]\nemail = 'a@b.test, c@d.test'\n")
    with pytest.raises(ConfigError, match="1 to 32 letters"):
        parse_config("[[destination]]\nname = '" + "x" * 33 + "'\nkind = 'email'\nto = ['a@b.test']\n")


def test_control_characters_in_the_context_are_refused(db: Database, tmp_path: Path) -> None:
    keys = people(db)
    app = create_app(ServiceSettings(database_url=db.url, refresh_seconds=0, consensus=1))
    known = generated_photo(4245, 200, 150)
    bank_with(browser(app), keys["admin"], known)
    r = browser(app).post("/v1/scan", params={"screen_name": "al\x01ice"}, content=png(known),
                          headers=auth(keys["service"]))  # fmt: skip
    assert r.status_code == 422 and "control characters" in r.text


def test_letters_of_evidence_without_media_export_as_bundles(db: Database, tmp_path: Path) -> None:
    keyring = uploads_with_context(db, tmp_path, [(ALICE, "A1")])
    with db.session() as session:
        row = session.scalars(select(Evidence)).one()
        row.sealed = row.nonce = row.key_id = None
    config = parse_config(CONFIG.format(cybertip="https://exttest.cybertip.org/ispws"))
    queue_confirmed(db, config, now=SETTLED)
    with db.session() as session:
        letter_id = session.scalars(select(Report.id).where(Report.destination == "hotline")).one()
    generate_keys(tmp_path / "k", tmp_path / "k.pub")
    ids, bundled = for_bundle(db, letter_id)
    out = tmp_path / "letter.zip"
    export_bundle(db, keyring, ids, out, tmp_path / "k", actor="keeper", purpose="request", reports=[bundled])
    verified = verify_bundle(out, (tmp_path / "k.pub").read_bytes())
    assert verified.evidence == 1 and verified.reports == 1
    with zipfile.ZipFile(out) as z:
        manifest = json.loads(z.read("manifest.json"))
        assert manifest["evidence"][0]["file"] is None and not any(
            n.startswith("media/") for n in z.namelist()
        )
        parts = {n: z.read(n) for n in z.namelist()}
    doubled = tmp_path / "doubled.zip"
    with zipfile.ZipFile(doubled, "w") as z, pytest.warns(UserWarning, match="Duplicate name"):
        for name, data in parts.items():
            z.writestr(name, data)
        z.writestr("manifest.sig", parts["manifest.sig"])
    with pytest.raises(BundleError, match="appears twice"):
        verify_bundle(doubled, (tmp_path / "k.pub").read_bytes())


def test_access_logs_carry_no_query_strings() -> None:
    import logging

    from childshield.web.app import _NoQueryStrings

    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d', (
        "127.0.0.1:5000", "POST", "/v1/scan?user_id=u-17&ip=203.0.113.9", "1.1", 200), None)  # fmt: skip
    assert _NoQueryStrings().filter(record)
    assert "u-17" not in record.getMessage() and "/v1/scan" in record.getMessage()
