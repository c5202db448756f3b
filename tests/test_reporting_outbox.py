"""Reports through the CyberTipline flow against a local server that implements it: filed once with all
their files, whatever step a crash interrupts (before or after the remote call), retried on server
errors, failed and retracted when refused, stopped on bad credentials."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from childshield.reporting.client import NO_SUCH_REPORT, ApiError, CyberTipClient
from childshield.reporting.cybertip import Incident, Person, ReporterInfo, report_xml
from childshield.reporting.outbox import LEASE, Stop, listing, queue_report, send_due
from childshield.review.keys import Keyring
from childshield.store.db import Database, open_database
from childshield.store.models import Evidence, Report
from childshield.testing.cybertip import FakeCyberTip
from childshield.vault.store import preserve_confirmed
from test_vault import confirmed

NOW = dt.datetime.now(dt.UTC)
LATER = NOW + dt.timedelta(days=1)
HOUR = dt.timedelta(hours=1)


class Crash(Exception):
    """The process died here."""


class CrashingClient(CyberTipClient):
    """Dies once, before or after the n-th call of one endpoint."""

    def __init__(self, *args: Any, at: str, when: str, nth: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.at, self.when, self.left = at, when, nth

    def __getattribute__(self, name: str) -> Any:
        attr = super().__getattribute__(name)
        if name != object.__getattribute__(self, "at") or not callable(attr):
            return attr

        def wrapped(*a: Any, **k: Any) -> Any:
            self.left -= 1
            if self.left == 0 and self.when == "before":
                raise Crash(name)
            result = attr(*a, **k)
            if self.left == 0 and self.when == "after":
                raise Crash(name)
            return result

        return wrapped


@pytest.fixture
def outbox(db: Database, tmp_path: Path) -> tuple[Keyring, list[bytes], int]:
    return prepared(db, tmp_path)


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    """The crash matrix runs on SQLite (the outbox's steps are the same on PostgreSQL, where
    ``test_crashes_on_both_stores`` covers the riskiest two)."""
    database = open_database(f"sqlite:///{tmp_path / 'outbox.db'}")
    yield database
    database.close()


def prepared(db: Database, tmp_path: Path) -> tuple[Keyring, list[bytes], int]:
    keyring, uploads = confirmed(db, tmp_path)
    preserve_confirmed(db, keyring)
    with db.session() as session:
        evidence = session.scalars(select(Evidence.id).order_by(Evidence.id)).all()
    document = report_xml(
        Incident(
            at=NOW - dt.timedelta(hours=1), urls=["https://platform.test/u/17/posts/3"], user_id="user-17"
        ),
        ReporterInfo(Person("reports@platform.test", "Trust", "Safety")),
    )
    files = [
        (
            evidence_id,
            f"upload-{k}.bin",
            {
                "file_name": f"upload-{k}.bin",
                "md5": hashlib.md5(data).hexdigest(),
                "sha256": hashlib.sha256(data).hexdigest(),
                "viewed_by_esp": True,
                "classification": "A2",
            },
        )
        for k, (evidence_id, data) in enumerate(zip(evidence, uploads, strict=True))
    ]
    return keyring, uploads, queue_report(db, document, files, actor="analyst")


def _state(db: Database, report_id: int) -> Report:
    with db.session() as session:
        report = session.get_one(Report, report_id)
        session.expunge(report)
        return report


def test_a_report_is_filed_with_all_its_files(db: Database, outbox: tuple[Keyring, list[bytes], int]) -> None:
    keyring, uploads, report_id = outbox
    with FakeCyberTip() as fake:
        client = CyberTipClient(fake.base, "esp", "secret")
        assert send_due(db, client, keyring, hash_sharing_mou=True, now=LATER) == 1
        assert send_due(db, client, keyring, now=LATER) == 0  # done: never again
        [filed] = fake.filed()
        assert sorted(filed.files.values()) == sorted(uploads) and len(filed.details) == 2
        assert b"<industryClassification>A2</industryClassification>" in next(iter(filed.details.values()))
        report = _state(db, report_id)
        assert report.state == "done" and report.remote_id == filed.id and report.done_at is not None
        assert fake.calls == ["submit", "upload", "fileinfo", "upload", "fileinfo", "finish"]


@pytest.mark.parametrize(
    ("at", "when", "nth"),
    [(step, when, 1) for step in ("submit", "upload", "file_info", "finish") for when in ("before", "after")]
    + [("upload", "after", 2), ("file_info", "after", 2)],
)
def test_a_crash_at_any_step_files_the_report_once(
    sqlite_db: Database, tmp_path: Path, at: str, when: str, nth: int
) -> None:
    crash_and_resume(sqlite_db, prepared(sqlite_db, tmp_path), at, when, nth)


def test_crashes_on_both_stores(db: Database, tmp_path: Path) -> None:
    crash_and_resume(db, prepared(db, tmp_path), "upload", "after", 2)


def crash_and_resume(
    db: Database, outbox: tuple[Keyring, list[bytes], int], at: str, when: str, nth: int
) -> None:
    keyring, uploads, report_id = outbox
    with FakeCyberTip() as fake:
        dying = CrashingClient(fake.base, "esp", "secret", at=at, when=when, nth=nth)
        with pytest.raises(Crash):
            send_due(db, dying, keyring, now=LATER)
        client = CyberTipClient(fake.base, "esp", "secret")
        for n in range(1, 4):  # resume once the dead sender's lease is over (as often as it takes)
            send_due(db, client, keyring, now=LATER + n * LEASE)
        filed = fake.filed()
        assert len(filed) == 1, (at, when, [r.state for r in fake.reports.values()])
        assert sorted(filed[0].files.values()) == sorted(uploads)  # each file once, none lost
        assert set(filed[0].details) == set(filed[0].files)
        assert all(r.state in ("retracted", "open") for r in fake.reports.values() if r is not filed[0])
        assert _state(db, report_id).state == "done"


def test_server_errors_are_retried_and_refusals_fail(
    db: Database, outbox: tuple[Keyring, list[bytes], int]
) -> None:
    keyring, _, report_id = outbox
    with FakeCyberTip() as fake:
        client = CyberTipClient(fake.base, "esp", "secret")
        fake.fail_next["upload"] = [1110]
        assert send_due(db, client, keyring, now=LATER) == 0
        report = _state(db, report_id)
        assert report.state == "open" and report.attempts == 1 and "1110" in report.last_error
        assert send_due(db, client, keyring, now=LATER) == 0  # not due yet (backoff)
        assert send_due(db, client, keyring, now=LATER + dt.timedelta(hours=1)) == 1
        assert len(fake.filed()) == 1


def test_a_refused_report_fails_and_is_retracted(
    db: Database, outbox: tuple[Keyring, list[bytes], int]
) -> None:
    keyring, _, report_id = outbox
    with FakeCyberTip() as fake:
        with pytest.raises(Stop, match="401"):  # credentials refused: the round stops, nothing fails
            send_due(db, CyberTipClient(fake.base, "esp", "wrong"), keyring, now=LATER)
        assert _state(db, report_id).state == "queued" and not fake.reports
        fake.fail_next["fileinfo"] = [4100]
        assert send_due(db, CyberTipClient(fake.base, "esp", "secret"), keyring, now=LATER + HOUR) == 0
        assert _state(db, report_id).state == "failed" and not fake.filed()
        assert [r.state for r in fake.reports.values()] == ["retracted"]


def test_report_commands(sqlite_db: Database, tmp_path: Path) -> None:
    import os

    from cli_runner import cli_for

    db = sqlite_db
    keyring, _ = confirmed(db, tmp_path)
    preserve_confirmed(db, keyring)
    with db.session() as session:
        ids = [str(i) for i in session.scalars(select(Evidence.id)).all()]
    env_before = dict(os.environ)
    with FakeCyberTip() as fake:
        os.environ.update(
            CHILDSHIELD_MEDIA_KEY_FILE=str(tmp_path / "media.keys"), CHILDSHIELD_CYBERTIP_URL=fake.base,
            CHILDSHIELD_CYBERTIP_USER="esp", CHILDSHIELD_CYBERTIP_PASSWORD="secret",
        )  # fmt: skip
        try:
            report = cli_for(db, "report")
            bad = report("queue", *ids, "--url", "https://platform.test/p/1", "--reporter-email", "r@p.test",
                         "--incident-time", "2999-01-01T00:00:00+00:00")  # fmt: skip
            assert bad.returncode == 1 and "future" in bad.stderr
            queued = report(
                "queue", *ids, "--url", "https://platform.test/p/1", "--reporter-email", "r@p.test"
            )
            assert queued.returncode == 0, queued.stderr
            sent = report("send")
            assert sent.returncode == 0 and "filed 1 reports" in sent.stderr, sent.stderr
            listed = [json.loads(line) for line in report("list").stdout.splitlines()]
            assert listed[0]["state"] == "done" and listed[0]["remote_id"] == fake.filed()[0].id
            assert len(fake.filed()[0].files) == 2
            finish_id = dict(fake.request_ids)["finish"]
            assert listed[0]["request_id"] == finish_id
            one = report("status", str(listed[0]["id"]))
            assert one.returncode == 0 and f"Request-ID of the latest answer: {finish_id}" in one.stdout
            assert f"NCMEC report id: {fake.filed()[0].id}" in one.stdout
            overall = report("status")
            assert overall.returncode == 0, overall.stderr
            assert (
                "cybertipline: 1 done" in overall.stdout and "answers: 0 Remote User : esp" in overall.stdout
            )
            schema = report("schema", "--out", str(tmp_path / "ncmec.xsd"))
            assert schema.returncode == 0 and (tmp_path / "ncmec.xsd").read_bytes().startswith(b"<?xml")
            os.environ["CHILDSHIELD_CYBERTIP_PASSWORD"] = "wrong"
            refused = cli_for(db, "report")("status")
            assert refused.returncode == 1 and "401" in refused.stderr
        finally:
            os.environ.clear()
            os.environ.update(env_before)


def test_finish_is_checked_against_the_files_ncmec_lists(
    db: Database, outbox: tuple[Keyring, list[bytes], int]
) -> None:
    """NCMEC's ``reportDoneResponse`` lists the files it holds: the list we uploaded is done (with the
    Request-ID kept); a shorter one is an error, never a report filed as we sent it."""
    keyring, _, report_id = outbox
    with FakeCyberTip() as fake:
        client = CyberTipClient(fake.base, "esp", "secret")
        fake.lose_files = 1
        assert send_due(db, client, keyring, now=LATER) == 0
        report = _state(db, report_id)
        assert (
            report.state == "failed" and "NCMEC does not list 1 of the 2 files uploaded" in report.last_error
        )
        [(endpoint, finish_id)] = fake.request_ids[-1:]
        assert endpoint == "finish" and report.request_id == finish_id and finish_id in report.last_error
        assert report.remote_id == fake.filed()[0].id  # finished there: we say what, not that it is done
        assert send_due(db, client, keyring, now=LATER + HOUR) == 0  # a person looks at it, not a loop


def test_a_report_filed_keeps_ncmecs_request_id(
    db: Database, outbox: tuple[Keyring, list[bytes], int]
) -> None:
    keyring, _, report_id = outbox
    with FakeCyberTip() as fake:
        client = CyberTipClient(fake.base, "esp", "secret")
        status = client.status()
        assert status.ok and "Remote User : esp" in status.description and status.request_id
        with pytest.raises(ApiError, match=r"401.*Request-ID [0-9a-f]{32}"):
            CyberTipClient(fake.base, "esp", "wrong").status()
        assert send_due(db, client, keyring, now=LATER) == 1
        answer_ids = dict(fake.request_ids)
        report = _state(db, report_id)
        assert report.state == "done" and report.request_id == answer_ids["finish"]
        [row] = listing(db)
        assert row["request_id"] == answer_ids["finish"]


def test_an_expired_report_is_opened_again_as_a_new_one(sqlite_db: Database, tmp_path: Path) -> None:
    """NCMEC deletes an unfinished report 1 hour after its last change (or 24 hours after it was opened):
    a sender that resumes after that opens a new report and files it once, with every file."""
    db = sqlite_db
    keyring, uploads, report_id = prepared(db, tmp_path)
    clock = [NOW]
    with FakeCyberTip(clock=lambda: clock[0]) as fake:
        dying = CrashingClient(fake.base, "esp", "secret", at="file_info", when="after", nth=1)
        with pytest.raises(Crash):
            send_due(db, dying, keyring, now=LATER)  # one file up and described, then the sender died
        [lost] = fake.reports.values()
        assert lost.state == "open" and len(lost.files) == 1
        clock[0] = NOW + dt.timedelta(minutes=61)
        client = CyberTipClient(fake.base, "esp", "secret")
        for n in range(1, 4):  # resume once the dead sender's lease is over (as often as it takes)
            send_due(db, client, keyring, now=LATER + n * LEASE)
        assert [r.id for r in fake.expired] == [lost.id] and lost.id not in fake.reports
        [filed] = fake.filed()
        assert filed.id != lost.id and sorted(filed.files.values()) == sorted(uploads)
        report = _state(db, report_id)
        assert report.state == "done" and report.remote_id == filed.id


def test_the_local_service_expires_reports_as_ncmec_does(tmp_path: Path) -> None:
    clock = [NOW]
    with FakeCyberTip(clock=lambda: clock[0]) as fake:
        client = CyberTipClient(fake.base, "esp", "secret")
        document = report_xml(
            Incident(at=NOW - HOUR, urls=["https://p.test/1"]), ReporterInfo(Person("r@p.test"))
        )
        busy = client.submit(document).report_id
        idle = client.submit(document).report_id
        assert busy is not None and idle is not None
        for minutes in range(50, 24 * 60, 50):  # a change every 50 minutes keeps it for a day at most
            clock[0] = NOW + dt.timedelta(minutes=minutes)
            assert client.upload(busy, "f.bin", b"data").ok, minutes
        assert client.upload(idle, "f.bin", b"x").code == NO_SUCH_REPORT  # an hour without a change
        clock[0] = NOW + dt.timedelta(hours=24)
        assert client.upload(busy, "f.bin", b"data").code == NO_SUCH_REPORT
        assert [r.id for r in fake.expired] == [idle, busy]


def test_the_local_service_validates_with_ncmecs_schema_file_when_it_has_one(tmp_path: Path) -> None:
    """Given NCMEC's schema file (``CHILDSHIELD_CYBERTIP_XSD``) it validates with that, not ours: here a
    stand-in schema that takes only reports with an ``additionalInfo``, which ours does not require."""
    strict = tmp_path / "ncmec.xsd"
    strict.write_text(
        '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"><xs:complexType name="any">'
        '<xs:sequence><xs:any processContents="skip" maxOccurs="unbounded"/></xs:sequence>'
        '<xs:anyAttribute/></xs:complexType><xs:element name="report"><xs:complexType><xs:sequence>'
        '<xs:element name="incidentSummary" type="any"/><xs:element name="internetDetails" type="any"/>'
        '<xs:element name="reporter" type="any"/>'
        '<xs:element name="additionalInfo" type="xs:string"/></xs:sequence></xs:complexType></xs:element>'
        "</xs:schema>"
    )
    incident = Incident(at=NOW - HOUR, urls=["https://p.test/1"])
    plain = report_xml(incident, ReporterInfo(Person("r@p.test")))
    with FakeCyberTip(schema_file=strict) as fake:
        client = CyberTipClient(fake.base, "esp", "secret")
        refused = client.submit(plain)
        assert refused.code == 4100 and "additionalInfo" in refused.description
        noted = report_xml(
            dataclasses.replace(incident, additional_info="noted"), ReporterInfo(Person("r@p.test"))
        )
        assert client.submit(noted).ok
        assert client.schema() == strict.read_bytes()  # GET /xsd: the file it validates with
