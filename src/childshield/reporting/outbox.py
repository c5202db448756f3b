"""Reliable delivery of reports: an outbox in the database, each step recorded, so that a crash at any
point resumes with no report filed twice and no file lost.

The steps of a report: ``submit`` (its id is stored at once), each file ``upload`` (marked *uploading*
before it is sent, *uploaded* with its file id after) and ``fileinfo``, then ``finish`` (marked
*finishing* before it is sent).  On resuming:

* a file left *uploading* may or may not be in the open report: the report is retracted and built again
  from the start (a duplicate file is never sent inside one report);
* a report left *finishing* is finished again: NCMEC answers "already finished" (5102) if it was, and
  either way it is done, filed once;
* a report whose submit answer was lost (crash before its id was stored) is submitted again; the lost
  one stays unfinished and NCMEC deletes it (unfinished reports expire), so nothing is filed twice;
* a report NCMEC deleted before we finished it (24 hours after it was opened, or 1 hour after its last
  change: "report does not exist" on any step) is opened again as a new report, from the start.

``finish`` is checked against NCMEC's answer: its ``reportDoneResponse`` lists the files it holds, and a
list that is not the files we uploaded fails the report (filed, but not as we sent it: a person must
look), never counts as done.  Each report keeps the ``Request-ID`` of NCMEC's latest answer about it
(their support desk finds the call by it); error messages quote it too.

Server-side failures are retried with backoff; a document refused (4xxx) fails the report, which is
then retracted; credentials refused stop the round (nothing will work until a person fixes them).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from childshield.audit.log import record
from childshield.errors import NotFound, Unavailable
from childshield.reporting.client import (
    ALREADY_FINISHED,
    ALREADY_RETRACTED,
    NO_SUCH_REPORT,
    RETRYABLE,
    STOP,
    ApiError,
    CyberTipClient,
    Response,
)
from childshield.reporting.cybertip import ReportedFile, file_details_xml
from childshield.review.keys import KeyFileError, Keyring
from childshield.store.claims import retry_delay
from childshield.store.db import Database
from childshield.store.models import Report, ReportFile, utcnow
from childshield.vault.store import VaultError, open_evidence

log = logging.getLogger("childshield.reporting")
LEASE = dt.timedelta(minutes=15)
"""How long a sender holds a report it works on: another sender (a second worker, a cron job) leaves it
alone meanwhile, and takes it over after a crash once the lease has run out."""
WORKING = ("queued", "open", "finishing")


class Stop(Unavailable):
    """Credentials or permissions refused: the round stops."""


def queue_report(
    db: Database,
    document: bytes,
    files: Sequence[tuple[int, str, dict[str, Any]]],
    *,
    actor: str,
    destination: str = "cybertipline",
) -> int:
    """A report (its validated document) and its files (evidence id, file name, fileDetails fields) in
    the outbox, in one transaction; returns its id."""
    with db.session() as session:
        return add_report(session, document, files, actor=actor, destination=destination)


def add_report(
    session: Session,
    document: bytes,
    files: Sequence[tuple[int, str, dict[str, Any]]],
    *,
    actor: str,
    destination: str,
) -> int:
    """``queue_report`` inside the caller's transaction."""
    report = Report(document=document.decode(), destination=destination)
    session.add(report)
    session.flush()
    for evidence_id, name, details in files:
        session.add(ReportFile(report_id=report.id, evidence_id=evidence_id, file_name=name, details=details))
    record(
        session,
        actor,
        "report.queued",
        f"report:{report.id}",
        {"files": len(files), "destination": destination},
    )
    return report.id


def _set(db: Database, report_id: int, **values: Any) -> None:
    with db.session() as session:
        session.execute(update(Report).where(Report.id == report_id).values(**values))


def _set_file(db: Database, file_id: int, **values: Any) -> None:
    with db.session() as session:
        session.execute(update(ReportFile).where(ReportFile.id == file_id).values(**values))


def send_due(
    db: Database,
    client: CyberTipClient,
    keyring: Keyring,
    *,
    hash_sharing_mou: bool = False,
    now: dt.datetime | None = None,
    step: Callable[[str], None] | None = None,
    destination: str = "cybertipline",
) -> int:
    """Work every due report of ``destination``; returns how many were filed.  ``step`` is called before
    each remote call (``submit``, ``upload``, ``fileinfo``, ``finish``, ``retract``): tests crash there."""
    now = now or utcnow()
    with db.session() as session:
        due = session.scalars(
            select(Report.id).where(
                Report.destination == destination,
                Report.state.in_(["queued", "open", "finishing"]),
                Report.next_at <= now,
            )
        ).all()
    filed = 0
    for report_id in due:
        if not _claim(db, report_id, now, destination):
            continue  # another sender has it
        try:
            filed += _send(db, client, keyring, report_id, hash_sharing_mou, step or (lambda _: None))
        except Gone as gone:
            _reset(
                db, report_id, f"{gone}: NCMEC no longer has the open report (unfinished reports expire)", now
            )
        except ApiError as exc:
            _later(db, report_id, str(exc), now, exc.request_id)
            if not exc.retry:
                raise Stop(str(exc)) from None
    return filed


def _claim(db: Database, report_id: int, now: dt.datetime, destination: str) -> bool:
    """Take the report for ``LEASE`` by a conditional UPDATE: of two senders, one gets it."""
    with db.session() as session:
        taken = session.execute(
            update(Report)
            .where(
                Report.id == report_id,
                Report.destination == destination,
                Report.state.in_(WORKING),
                Report.next_at <= now,
            )
            .values(next_at=now + LEASE)
        )
        return bool(taken.rowcount)  # type: ignore[attr-defined]


def _later(db: Database, report_id: int, error: str, now: dt.datetime, request_id: str | None = None) -> None:
    with db.session() as session:
        report = session.get_one(Report, report_id)
        report.attempts += 1
        report.last_error = error[:2000]
        report.next_at = now + retry_delay(report.attempts)
        if request_id:
            report.request_id = request_id


def _answered(db: Database, report_id: int, answer: Response) -> None:
    """Keep the Request-ID of NCMEC's answer with the report."""
    if answer.request_id:
        _set(db, report_id, request_id=answer.request_id)


class Gone(NotFound):
    """NCMEC no longer has the open report (it expired): it is opened again from the start."""


def _check(db: Database, report_id: int, answer: Response, what: str) -> bool:
    """True when the call succeeded; a retryable failure raises (the round moves on), so does a report
    NCMEC no longer has (:class:`Gone`: it is opened again); a refusal answers False (it fails)."""
    _answered(db, report_id, answer)
    if answer.ok:
        return True
    if answer.code in STOP:
        raise ApiError(
            f"{what}: {answer.code} {answer.description}", retry=False, request_id=answer.request_id
        )
    if answer.code in RETRYABLE:
        raise ApiError(
            f"{what}: {answer.code} {answer.description}", retry=True, request_id=answer.request_id
        )
    if answer.code == NO_SUCH_REPORT and what != "submit":
        raise Gone(what)
    return False


def _load(db: Database, report_id: int) -> tuple[Report, Sequence[ReportFile]]:
    """A report and its files as stored now, detached."""
    with db.session() as session:
        report = session.get_one(Report, report_id)
        files = session.scalars(
            select(ReportFile).where(ReportFile.report_id == report_id).order_by(ReportFile.id)
        ).all()
        session.expunge_all()
    return report, files


def _send(
    db: Database,
    client: CyberTipClient,
    keyring: Keyring,
    report_id: int,
    mou: bool,
    step: Callable[[str], None],
) -> int:
    report, files = _load(db, report_id)
    if report.state == "finishing":
        return _finish(db, client, report, step)
    if report.remote_id is not None and any(f.state == "uploading" for f in files):
        _restart(db, client, report, step)  # a file's fate is unknown: start the report again
        report, files = _load(db, report_id)
        if report.state == "done":
            return 0
    remote = report.remote_id
    if remote is None:
        step("submit")
        answer = client.submit(report.document.encode())
        if not _check(db, report_id, answer, "submit") or answer.report_id is None:
            _fail(db, report, f"submit refused: {answer.said()}")
            return 0
        remote = answer.report_id
        _set(db, report_id, remote_id=remote, state="open")
    for f in files:
        if f.state == "described":
            continue
        file_id = f.remote_file_id
        if f.state == "pending":
            try:
                data = open_evidence(
                    db, keyring, f.evidence_id, actor="reporting", purpose=f"report {report_id}"
                ).data
            except (VaultError, KeyFileError) as exc:  # deleted, no media, key gone: it cannot be sent
                _fail(db, report, f"evidence {f.evidence_id}: {exc}", client, remote, step)
                return 0
            _set_file(db, f.id, state="uploading")
            step("upload")
            answer = client.upload(remote, f.file_name, data)
            if not answer.ok or not answer.file_id:
                _set_file(db, f.id, state="pending")  # the server answered: it kept no file from us
                if not _check(db, report_id, answer, "upload") or not answer.file_id:
                    _fail(
                        db,
                        report,
                        f"upload refused: {answer.said()}",
                        client,
                        remote,
                        step,
                    )
                    return 0
            else:
                _answered(db, report_id, answer)
            if answer.hash and answer.hash.lower() != hashlib.md5(data).hexdigest():
                raise ApiError(  # restarted next round
                    "the upload arrived damaged (MD5 differs)", retry=True, request_id=answer.request_id
                )
            file_id = answer.file_id
            _set_file(db, f.id, state="uploaded", remote_file_id=file_id)
        assert file_id is not None
        step("fileinfo")
        answer = client.file_info(
            file_details_xml(remote, file_id, ReportedFile(**f.details), hash_sharing_mou=mou)
        )
        if not _check(db, report_id, answer, "fileinfo"):
            _fail(db, report, f"file details refused: {answer.said()}", client, remote, step)
            return 0
        _set_file(db, f.id, state="described")
    _set(db, report_id, state="finishing")
    report.remote_id = remote
    return _finish(db, client, report, step)


def _finish(db: Database, client: CyberTipClient, report: Report, step: Callable[[str], None]) -> int:
    assert report.remote_id is not None
    step("finish")
    answer = client.finish(report.remote_id)
    _answered(db, report.id, answer)
    if answer.ok:
        mismatch = _unlike_uploads(db, report.id, answer.files)
        if mismatch:
            _fail(db, report, f"finished, but {mismatch} (Request-ID {answer.request_id or 'none'})")
            return 0
    if answer.ok or answer.code == ALREADY_FINISHED:  # already: a finish whose answer we lost
        with db.session() as session:
            session.execute(
                update(Report)
                .where(Report.id == report.id)
                .values(state="done", done_at=utcnow(), last_error="")
            )
            record(
                session,
                "reporting",
                "report.filed",
                f"report:{report.id}",
                {"remote_id": report.remote_id, "request_id": answer.request_id},
            )
        return 1
    if answer.code == NO_SUCH_REPORT:  # it expired before we finished: start again
        raise Gone("finish")
    _check(db, report.id, answer, "finish")
    _fail(db, report, f"finish refused: {answer.said()}")
    return 0


def _unlike_uploads(db: Database, report_id: int, listed: tuple[str, ...] | None) -> str:
    """What differs between the files NCMEC finished the report with and those we uploaded ('' if
    nothing)."""
    with db.session() as session:
        ours = set(
            session.scalars(select(ReportFile.remote_file_id).where(ReportFile.report_id == report_id)).all()
        )
    if listed is None:
        return "NCMEC's answer lists no files"
    missing, unknown = ours - set(listed), set(listed) - ours
    said = []
    if missing:
        ids = ", ".join(sorted(map(str, missing)))
        said.append(f"NCMEC does not list {len(missing)} of the {len(ours)} files uploaded ({ids})")
    if unknown:
        said.append(f"NCMEC lists files we did not upload ({', '.join(sorted(unknown))})")
    return "; ".join(said)


def _restart(db: Database, client: CyberTipClient, report: Report, step: Callable[[str], None]) -> None:
    assert report.remote_id is not None
    step("retract")
    answer = client.retract(report.remote_id)
    _answered(db, report.id, answer)
    if answer.code == ALREADY_FINISHED:  # it was filed after all
        _set(db, report.id, state="done", done_at=utcnow())
        return
    if not (answer.ok or answer.code in (ALREADY_RETRACTED, NO_SUCH_REPORT)):
        _check(db, report.id, answer, "retract")
    _reset(db, report.id)


def _reset(db: Database, report_id: int, why: str = "", now: dt.datetime | None = None) -> None:
    """Start the report again from its submit (a new report at NCMEC).  With ``why`` (NCMEC lost the
    open one), after the backoff of one more attempt: a service that keeps losing reports is not sent
    a new one every round."""
    with db.session() as session:
        values: dict[str, Any] = {"remote_id": None, "state": "queued"}
        if why:
            attempts = (session.scalar(select(Report.attempts).where(Report.id == report_id)) or 0) + 1
            values.update(
                last_error=why, attempts=attempts, next_at=(now or utcnow()) + retry_delay(attempts)
            )
        old = session.scalar(select(Report.remote_id).where(Report.id == report_id))
        session.execute(update(Report).where(Report.id == report_id).values(**values))
        session.execute(
            update(ReportFile)
            .where(ReportFile.report_id == report_id)
            .values(state="pending", remote_file_id=None)
        )
        record(
            session,
            "reporting",
            "report.restarted",
            f"report:{report_id}",
            {"old_remote_id": old, "why": why},
        )


def _fail(
    db: Database,
    report: Report,
    error: str,
    client: CyberTipClient | None = None,
    remote: int | None = None,
    step: Callable[[str], None] | None = None,
) -> None:
    if client is not None and remote is not None:  # an open report we will not finish: retract it
        if step is not None:
            step("retract")
        _answered(db, report.id, client.retract(remote))
    with db.session() as session:
        session.execute(
            update(Report).where(Report.id == report.id).values(state="failed", last_error=error[:2000])
        )
        record(session, "reporting", "report.failed", f"report:{report.id}", {"error": error[:500]})


def listing(db: Database) -> list[dict[str, Any]]:
    """Every report: destination, state, the clearinghouse's report id and the Request-ID of its latest
    answer, attempts, last error."""
    with db.session() as session:
        return [
            {
                "id": r.id,
                "destination": r.destination,
                "state": r.state,
                "remote_id": r.remote_id,
                "request_id": r.request_id,
                "attempts": r.attempts,
                "last_error": r.last_error,
                "created_at": r.created_at.isoformat(),
                "done_at": r.done_at.isoformat() if r.done_at else None,
            }
            for r in session.scalars(select(Report).order_by(Report.id)).all()
        ]
