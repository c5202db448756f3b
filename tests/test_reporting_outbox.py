"""Reports through the CyberTipline flow against a local server that implements it: filed once with all
their files, whatever step a crash interrupts (before or after the remote call), retried on server
errors, failed and retracted when refused, stopped on bad credentials."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from childshield.reporting.client import CyberTipClient
from childshield.reporting.cybertip import Incident, Person, ReporterInfo, report_xml
from childshield.reporting.outbox import LEASE, Stop, queue_report, send_due
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
        finally:
            os.environ.clear()
            os.environ.update(env_before)
