"""E-mailed reports (destinations of kind ``email``): the letter as text, with the PDF and the JSON
attached, sent once through the same outbox table as CyberTipline reports.

A report is claimed (``sending``, committed, with a lease) before SMTP gets it and marked ``done`` after
the server accepted it.  A sender killed in between leaves it ``sending``; after the lease it is sent
again with the same Message-ID and reference, so the recipient's systems can tell it is the same
report.  That moment is the only way a report can arrive twice; none is lost."""

from __future__ import annotations

import asyncio
import datetime as dt
from email.message import EmailMessage
from email.utils import format_datetime, formataddr

from sqlalchemy import and_, or_, update

from childshield import mail
from childshield.audit.log import record
from childshield.mail import SmtpSettings
from childshield.reporting import letter
from childshield.reporting.config import Destination, Reporter
from childshield.store.claims import claim_next, retry_delay
from childshield.store.db import Database
from childshield.store.models import Report, utcnow
from childshield.timefmt import aware

LEASE = dt.timedelta(minutes=10)


def reference(report: Report, prefix: str = "CS") -> str:
    return f"{prefix}-R{report.id}"


def message(report: Report, destination: Destination, reporter: Reporter, prefix: str = "CS") -> EmailMessage:
    ref = reference(report, prefix)
    created = aware(report.created_at)
    domain = reporter.email.rpartition("@")[2] or "childshield.invalid"
    msg = EmailMessage()
    sender = reporter.organisation or "childshield"
    msg["From"] = formataddr((sender, reporter.email))
    msg["To"] = ", ".join(destination.to)
    msg["Subject"] = f"[{ref}] {letter.TITLE}"
    msg["Message-ID"] = f"<report-{report.id}.{int(created.timestamp())}@{domain}>"
    msg["Date"] = format_datetime(created)
    msg["X-Childshield-Reference"] = ref
    document = report.document.encode()
    msg.set_content(letter.text(document, ref))
    msg.add_attachment(
        letter.pdf(document, ref), maintype="application", subtype="pdf", filename=f"{ref}.pdf"
    )
    msg.add_attachment(document, maintype="application", subtype="json", filename=f"{ref}.json")
    return msg


def _claim(db: Database, destination: str, now: dt.datetime) -> Report | None:
    ready = and_(
        Report.destination == destination,
        or_(Report.state == "queued", Report.state == "sending"),  # sending: a sender died holding it
        Report.next_at <= now,
    )
    return claim_next(db, Report, ready, state="sending", attempts=Report.attempts + 1, next_at=now + LEASE)


def _done(db: Database, report: Report, msg: EmailMessage, now: dt.datetime) -> None:
    with db.session() as session:
        session.execute(
            update(Report).where(Report.id == report.id).values(state="done", done_at=now, last_error="")
        )
        record(
            session,
            "reporting",
            "report.filed",
            f"report:{report.id}",
            {"to": msg["To"], "message_id": msg["Message-ID"], "attempt": report.attempts},
        )


def _failed(db: Database, report: Report, error: str, final: bool, now: dt.datetime) -> None:
    backoff = retry_delay(report.attempts)
    with db.session() as session:
        session.execute(
            update(Report)
            .where(Report.id == report.id)
            .values(state="failed" if final else "queued", last_error=error[:2000], next_at=now + backoff)
        )
        if final:
            record(session, "reporting", "report.failed", f"report:{report.id}", {"error": error[:500]})


async def send_due(
    db: Database,
    destination: Destination,
    reporter: Reporter,
    smtp: SmtpSettings,
    *,
    prefix: str = "CS",
    now: dt.datetime | None = None,
    max_attempts: int = 8,
) -> int:
    """Send every due report of ``destination``; returns how many the SMTP server accepted.  A refused
    recipient fails that report (for good on a 5xx); any other trouble puts it back and ends the run."""
    sent = 0
    while True:
        when = now or utcnow()
        report = await asyncio.to_thread(_claim, db, destination.name, when)
        if report is None:
            return sent
        try:
            msg = message(report, destination, reporter, prefix)
        except (ValueError, TypeError, KeyError) as exc:  # a stored letter or header that cannot be sent
            await asyncio.to_thread(_failed, db, report, f"cannot build the message: {exc}", True, when)
            continue
        outcome = await mail.send(msg, smtp)
        if outcome.status == "sent":
            await asyncio.to_thread(_done, db, report, msg, when)
            sent += 1
            continue
        final = (outcome.status == "refused" and outcome.permanent) or report.attempts >= max_attempts
        await asyncio.to_thread(_failed, db, report, outcome.error, final, when)
        if outcome.status == "error":
            return sent
