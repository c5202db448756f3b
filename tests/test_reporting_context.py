"""What a platform says with a scan reaches the CyberTipline report as NCMEC defines it: the name the user
uploaded the file under (and ours beside it), each IP address with the event and time the platform gave,
and what reporters add (annotations, escalation, the account's details and fate, file annotations, upload
time, EXIF, how the material went); and what a person adds when queuing a report by hand."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from sqlalchemy import select

from childshield.accounts.service import Principal, create_api_key, create_user
from childshield.reporting.config import parse_config
from childshield.reporting.cybertip import ReportedFile, file_details_xml
from childshield.reporting.manual import CannotQueue, queue_incident
from childshield.review.keys import Keyring
from childshield.review.queue import ReviewConfig, decide
from childshield.store.db import Database
from childshield.store.models import Evidence, Report, ReportFile, ReviewItem, Role
from childshield.testing.corpus import encode, generated_photo
from childshield.testing.web import LocalWeb, image
from childshield.vault.store import preserve_confirmed
from childshield.web.app import create_app
from childshield.web.settings import ServiceSettings
from review_helpers import auth, bank_with, browser, people

CONFIG = parse_config("""
[reporter]
email = "safety@platform.test"
platform = "Platform"
default_url = "https://platform.test/upload"

[[destination]]
name = "ncmec"
kind = "cybertipline"
url = "https://exttest.cybertip.org/ispws"

[[route]]
destination = "ncmec"

[auto]
settle_minutes = 0
""")
T = dt.datetime(2026, 11, 2, 8, 30, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _own_data_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))


def preserved(db: Database, tmp_path: Path, scans: list[dict[str, Any]], *, fetch_allow: str = "") -> Keyring:
    """Copies of a known picture scanned as given (``params``, and ``name`` for a multipart upload or
    ``url`` for /v1/scan/url), each confirmed and preserved as evidence."""
    keys = people(db)
    key_file = tmp_path / "media.keys"
    app = create_app(
        ServiceSettings(
            database_url=db.url, refresh_seconds=0, consensus=1, media_key_file=str(key_file),
            fetch_allow=fetch_allow,
        )
    )  # fmt: skip
    known = generated_photo(4311, 320, 240)
    bank_with(browser(app), keys["admin"], known)
    client, service = browser(app), auth(keys["service"])
    for n, scan in enumerate(scans):
        data = encode(known, "JPEG", quality=90 - n)  # a different file each time
        if "url" in scan:
            r = client.post(
                "/v1/scan/url", json={"url": scan["url"], "context": scan.get("params")}, headers=service
            )
        elif "name" in scan:
            files = {"file": (scan["name"], data, "image/jpeg")}
            r = client.post("/v1/scan", params=scan.get("params", {}), files=files, headers=service)
        else:
            r = client.post("/v1/scan", params=scan.get("params", {}), content=data, headers=service)
        assert r.status_code == 200 and r.json()["decision"] == "review", r.text
    with db.session() as session:
        items = session.scalars(select(ReviewItem.id).order_by(ReviewItem.id)).all()
    for item_id in items:
        decide(
            db,
            Principal(1, "r1", Role.REVIEWER),
            item_id,
            "confirm",
            classification="A2",
            config=ReviewConfig(),
        )
    keyring = Keyring.load(key_file)
    assert preserve_confirmed(db, keyring) == len(scans)
    return keyring


def queued_reports(db: Database) -> list[tuple[etree._Element, list[etree._Element]]]:
    """Each queued report's document, with the fileDetails of its files (as the outbox will send them)."""
    from childshield.reporting.auto import queue_confirmed

    queued = queue_confirmed(db, CONFIG, now=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1))
    assert not queued.problems, queued.problems
    out = []
    with db.session() as session:
        for report in session.scalars(select(Report).order_by(Report.id)):
            files = session.scalars(select(ReportFile).where(ReportFile.report_id == report.id)).all()
            details = [
                etree.fromstring(file_details_xml(1, f"f{f.id}", ReportedFile(**f.details))) for f in files
            ]
            out.append((etree.fromstring(report.document.encode()), details))
    return out


def test_the_uploaded_name_is_the_original_and_ours_is_the_file_name(db: Database, tmp_path: Path) -> None:
    """``originalFileName`` is the name the user uploaded (a multipart form's, or the platform's
    ``file_name``; else the last segment of the URL the file came from); ``fileName`` is ours."""
    photo = encode(generated_photo(4311, 320, 240), "JPEG", quality=70)
    with LocalWeb({"cdn": {"/u/17/beach%20day.jpg": image(photo)}}) as web:
        url = f"http://{web.addresses['cdn']}:{web.ports['cdn']}/u/17/beach%20day.jpg"
        preserved(
            db,
            tmp_path,
            [
                {"name": r"C:\Users\al\holiday photo.jpg", "params": {"incident": "a"}},
                {
                    "name": "ignored.jpg",
                    "params": {"incident": "b", "file_name": "given by the platform.png"},
                },
                {"params": {"incident": "c"}},  # a raw body, nothing known
                {"url": url, "params": {"incident": "d"}},
            ],
            fetch_allow="127.0.0.0/8",
        )
    reports = queued_reports(db)
    names = [
        (d.findtext("fileName"), d.findtext("originalFileName")) for _, details in reports for d in details
    ]
    with db.session() as session:
        ids = session.scalars(select(Evidence.id).order_by(Evidence.id)).all()
    assert names == [
        (f"evidence-{ids[0]}", "holiday photo.jpg"),
        (f"evidence-{ids[1]}", "given by the platform.png"),
        (f"evidence-{ids[2]}", None),
        (f"evidence-{ids[3]}", "beach day.jpg"),
    ]
    fetched = reports[3][1][0]
    assert fetched.findtext("locationOfFile") == url  # /v1/scan/url: where the file itself was


def test_ip_addresses_carry_the_platforms_event_and_time(db: Database, tmp_path: Path) -> None:
    """An IP is sent with the event the platform named (else Unknown) and the event's own time (else
    none): never as an Upload at the time of our scan."""
    preserved(
        db,
        tmp_path,
        [
            {"params": {"user_id": "u-1", "ip": "203.0.113.9", "ip_event": "Login", "ip_at": T.isoformat()}},
            {"params": {"user_id": "u-1", "ip": "198.51.100.4"}},
            {
                "params": {
                    "user_id": "u-1",
                    "ip": "2001:db8::7",
                    "ip_event": "Upload",
                    "ip_at": "2026-11-02T09:00:00+01:00",
                }
            },
        ],
    )
    app = create_app(ServiceSettings(database_url=db.url, refresh_seconds=0))
    service = auth(create_api_key(db, "platform"))
    for bad in ({"ip": "203.0.113.9", "ip_event": "Uplaod"}, {"ip_at": "2026-11-02T08:30:00"}):
        r = browser(app).post("/v1/scan", params=bad, content=b"x", headers=service)
        assert r.status_code == 422, bad  # not an event NCMEC knows; a time without its zone
    [(report, details)] = queued_reports(db)
    events = [
        (e.findtext("ipAddress"), e.findtext("eventName"), e.findtext("dateTime"))
        for e in report.iterfind("personOrUserReported/ipCaptureEvent")
    ]
    assert events == [
        ("203.0.113.9", "Login", "2026-11-02T08:30:00Z"),
        ("198.51.100.4", "Unknown", None),
        ("2001:db8::7", "Upload", "2026-11-02T08:00:00Z"),
    ]
    uploads = [d.findtext("ipCaptureEvent/ipAddress") for d in details]
    assert uploads == [None, None, "2001:db8::7"]  # a file's own ipCaptureEvent: its upload only


def test_what_reporters_add_reaches_the_report(db: Database, tmp_path: Path) -> None:
    context = {
        "user_id": "u-5", "screen_name": "al", "display_name": "Al B.", "profile_url": "https://platform.test/al",
        "service": "Platform Messenger", "report_annotations": "sextortion,minorToMinorInteraction",
        "escalate": "the user threatens to meet the child today", "account_disabled": "permanently",
        "account_disabled_at": "2026-11-02T09:00:00+00:00", "user_notified": "true",
        "user_notified_at": "2026-11-02T09:05:00+00:00", "file_annotations": "generativeAi",
        "uploaded_at": T.isoformat(), "exif_viewed": "false", "incident_kind": "chat_im",
        "chat_client": "Platform Messenger", "chat_room": "group 77",
    }  # fmt: skip
    second = {
        "user_id": "u-5",
        "report_annotations": ["sadisticOnlineExploitation"],
        "file_annotations": "physicalHarm,liveStreaming",
    }
    preserved(db, tmp_path, [{"params": context}, {"params": second}])
    [(report, details)] = queued_reports(db)
    summary = report.find("incidentSummary")
    assert [c.tag for c in summary] == [
        "incidentType", "platform", "escalateToHighPriority", "reportAnnotations", "incidentDateTime",
    ]  # fmt: skip
    assert summary.findtext("escalateToHighPriority") == context["escalate"]
    assert [a.tag for a in summary.find("reportAnnotations")] == [
        "sextortion", "minorToMinorInteraction", "sadisticOnlineExploitation",
    ]  # fmt: skip
    chat = report.find("internetDetails/chatImIncident")
    assert chat.findtext("chatClient") == "Platform Messenger" and chat.findtext("chatRoomName") == "group 77"
    assert report.find("internetDetails/webPageIncident") is None  # no page: no default URL invented
    user = report.find("personOrUserReported")
    assert [c.tag for c in user] == [
        "espIdentifier", "espService", "screenName", "displayName", "profileUrl",
        "accountPermanentlyDisabled",
    ]  # fmt: skip
    disabled = user.find("accountPermanentlyDisabled")
    assert disabled.text == "true" and disabled.attrib == {
        "disabledDate": "2026-11-02T09:00:00Z", "userNotified": "true",
        "userNotifiedDate": "2026-11-02T09:05:00Z",
    }  # fmt: skip
    first, other = details
    assert first.findtext("uploadedToEspTimestamp") == "2026-11-02T08:30:00Z"
    assert first.findtext("exifViewedByEsp") == "false" and other.find("exifViewedByEsp") is None
    assert [a.tag for a in first.find("fileAnnotations")] == ["generativeAi"]
    assert [a.tag for a in other.find("fileAnnotations")] == ["physicalHarm", "liveStreaming"]  # schema order
    tags = [c.tag for c in first]
    assert tags.index("fileRelevance") < tags.index("fileAnnotations") < tags.index("originalFileHash")


def test_a_person_adds_to_the_report_by_hand(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``report queue``'s options and ``POST /v1/reports``'s context: annotations added to the
    evidence's, the account's fate, file annotations for all files or one; refused when unreadable."""
    from cli_runner import cli_for

    preserved(
        db,
        tmp_path,
        [{"params": {"user_id": "u-9", "report_annotations": "spam"}}, {"params": {"user_id": "u-9"}}],
    )
    with db.session() as session:
        first, second = session.scalars(select(Evidence.id).order_by(Evidence.id)).all()
    reporting = tmp_path / "reporting.toml"
    reporting.write_text(
        '[reporter]\nemail = "r@p.test"\ndefault_url = "https://p.test/u"\n'
        '[[destination]]\nname = "ncmec"\nkind = "cybertipline"\n[[route]]\ndestination = "ncmec"\n'
    )
    monkeypatch.setenv("CHILDSHIELD_REPORTING_FILE", str(reporting))
    report = cli_for(db, "report")
    queued = report(
        "queue", str(first), str(second), "--destination", "ncmec", "--annotation", "csamSolicitation",
        "--file-annotation", "viral", "--file-annotation", f"{second}:infant", "--escalate", "ongoing abuse",
        "--account-disabled", "temporarily", "--disabled-at", "2026-11-03T10:00:00+00:00",
        "--user-not-notified",
        "--exif-viewed", "--incident-type", "Online Enticement of Children for Sexual Acts",
    )  # fmt: skip
    assert queued.returncode == 0, queued.stderr
    with db.session() as session:
        row = session.scalars(select(Report)).one()
        files = session.scalars(select(ReportFile).order_by(ReportFile.evidence_id)).all()
        doc = etree.fromstring(row.document.encode())
    assert doc.findtext("incidentSummary/incidentType") == "Online Enticement of Children for Sexual Acts"
    assert [a.tag for a in doc.find("incidentSummary/reportAnnotations")] == ["csamSolicitation", "spam"]
    assert doc.findtext("incidentSummary/escalateToHighPriority") == "ongoing abuse"
    suspended = doc.find("personOrUserReported/accountTemporarilyDisabled")
    assert suspended.attrib == {"disabledDate": "2026-11-03T10:00:00Z", "userNotified": "false"}
    assert [f.details["annotations"] for f in files] == [["viral"], ["viral", "infant"]]
    assert all(f.details["exif_viewed"] is True for f in files)
    refused = report("queue", str(first), "--destination", "ncmec", "--disabled-at", "2026-11-03 10:00")
    assert refused.returncode != 0 and "needs a time zone" in " ".join(refused.stderr.split())
    for context, file_context, says in [
        ({"report_annotations": "sextortion,sextortions"}, {}, "unknown sextortions"),
        ({"ip_event": "Uplaod"}, {}, "ip_event"),
        ({"account_disabled": "forever"}, {}, "not one of temporarily, permanently"),
        ({"incident_kind": "fax"}, {}, "incident_kind"),
        ({}, {99: {"file_annotations": "viral"}}, "not in the report: 99"),
    ]:
        with pytest.raises(CannotQueue, match=says):
            queue_incident(
                db,
                CONFIG,
                [first],
                destination="ncmec",
                actor="t",
                context=context,
                file_context=file_context,
            )

    create_user(db, "keeper", Role.CUSTODIAN, password="a long enough passphrase")
    app = create_app(ServiceSettings(database_url=db.url, refresh_seconds=0, reporting_file=str(reporting)))
    given = {
        "report_annotations": ["sextortion"], "account_disabled": "permanently", "incident_kind": "email",
        "email_address": "sender@mail.test",
    }  # fmt: skip
    body = {"evidence_ids": [first], "destination": "ncmec", "context": given}
    keeper = auth(create_api_key(db, "keeper"))
    r = browser(app).post("/v1/reports", json=body, headers=keeper)
    assert r.status_code == 201, r.text
    with db.session() as session:
        newest = session.scalars(select(Report).order_by(Report.id.desc())).first()
        assert newest is not None
        doc = etree.fromstring(newest.document.encode())
    assert [a.tag for a in doc.find("incidentSummary/reportAnnotations")] == ["sextortion", "spam"]
    assert doc.findtext("internetDetails/emailIncident/emailAddress") == "sender@mail.test"
    assert doc.find("personOrUserReported/accountPermanentlyDisabled") is not None
    bad = browser(app).post(
        "/v1/reports", json={**body, "context": {"report_annotations": ["x"]}}, headers=keeper
    )
    assert bad.status_code == 422
    listed = browser(app).get("/v1/reports", headers=keeper).json()
    assert all("request_id" in r for r in listed)
    assert json.loads(json.dumps(listed))  # plain JSON
