"""Removal notices: planned once per provider and round, rendered from an editable template, sent once.

Planning (``plan``) and sending (``send_due``) are separate steps joined by the ``notices`` table:

* ``plan`` picks, per provider with a contact, the online items due a notice (never noticed, or last
  noticed ``renotify_every`` ago) and, in one transaction, counts the notice on each item and writes the
  notice (rendered, with its reference and Message-ID).  An item is counted by a conditional UPDATE, so
  two planners can never put it in two notices of the same round.
* ``send_due`` marks a notice ``sending`` (committed) before handing it to SMTP and ``sent`` after the
  server accepted it.  A sender killed in between leaves it ``sending``; it is sent again after its lease
  with the same Message-ID and reference, so the provider's systems see the same message.  That window
  (between the server's acceptance and our commit) is the only way a notice can arrive twice, and no
  notice is ever lost.
* Items noticed ``escalate_after`` times and still online are escalated: a notice goes to
  ``escalation_to`` (a partner hotline, the registrar, law enforcement liaison) as well.
"""

from __future__ import annotations

import datetime as dt
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from pathlib import Path
from typing import Any

from sqlalchemy import and_, func, or_, select, update

from childshield import mail
from childshield.audit.log import record
from childshield.mail import SmtpSettings
from childshield.store.claims import claim_next, retry_delay
from childshield.store.db import Database
from childshield.store.models import Notice, Provider, TakedownItem, TakedownState, utcnow
from childshield.takedown.template import NoticeTemplate, item_views, load_template, provider_view
from childshield.timefmt import aware, utc

DEFAULT_TEMPLATE = Path(__file__).parent / "templates" / "notice.txt"
LEASE = dt.timedelta(minutes=10)


@dataclass(frozen=True)
class NoticeSettings:
    sender: str = "childshield hotline"
    from_addr: str = "notices@childshield.invalid"
    reply_to: str = ""
    legal_basis: str = (
        "the distribution of child sexual abuse material is illegal in your jurisdiction and ours; hosting "
        "providers must remove it promptly once they know of it"
    )
    renotify_every: dt.timedelta = dt.timedelta(hours=24)
    escalate_after: int = 3
    escalation_to: str = ""
    reference_prefix: str = "CS"
    template: Path = DEFAULT_TEMPLATE


def plan(db: Database, settings: NoticeSettings, *, now: dt.datetime | None = None) -> list[int]:
    """Write the notices due now (one per provider, plus escalations); returns their ids."""
    now = now or utcnow()
    template = load_template(settings.template)  # a bad template stops here, before any item is counted
    cutoff = now - settings.renotify_every
    due = and_(
        TakedownItem.state == TakedownState.ONLINE,
        TakedownItem.provider_id.is_not(None),
        or_(
            TakedownItem.last_notice_at.is_(None),
            # a reminder says "still online at our last check": only after a check has seen it so
            and_(
                TakedownItem.last_notice_at <= cutoff,
                or_(TakedownItem.notices == 0, TakedownItem.last_checked_at > TakedownItem.last_notice_at),
            ),
        ),
    )
    made: list[int] = []
    with db.session() as session:
        providers = session.scalars(
            select(Provider).where(Provider.id.in_(select(TakedownItem.provider_id).where(due)))
        ).all()
    for provider in providers:
        if not provider.contact:
            continue  # no abuse contact: shown by `takedown providers`, for an analyst to set one
        with db.session() as session:
            counted = session.scalars(
                update(TakedownItem)
                .where(due, TakedownItem.provider_id == provider.id)
                .values(
                    notices=TakedownItem.notices + 1,
                    last_notice_at=now,
                    first_notice_at=func.coalesce(TakedownItem.first_notice_at, now),
                )
                .returning(TakedownItem.id)
            ).all()
            if not counted:
                continue
            items = session.scalars(
                select(TakedownItem).where(TakedownItem.id.in_(counted)).order_by(TakedownItem.id)
            ).all()
            rounds = max(i.notices for i in items)
            made.append(
                _write(session, template, settings, provider, items, rounds, provider.contact, False, now)
            )
            stale = [i for i in items if i.notices > settings.escalate_after and i.escalated_at is None]
            if stale and settings.escalation_to:
                for i in stale:
                    i.escalated_at = now
                made.append(
                    _write(
                        session,
                        template,
                        settings,
                        provider,
                        stale,
                        rounds,
                        settings.escalation_to,
                        True,
                        now,
                    )
                )
    return made


def _write(
    session: Any,
    template: NoticeTemplate,
    settings: NoticeSettings,
    provider: Provider,
    items: Sequence[TakedownItem],
    round_: int,
    to_addr: str,
    escalation: bool,
    now: dt.datetime,
) -> int:
    notice = Notice(
        reference=f"pending-{id(items)}-{now.timestamp()}-{escalation}",
        provider_id=provider.id,
        round=round_,
        escalation=escalation,
        to_addr=to_addr,
        subject="",
        body="",
        message_id=f"pending-{id(items)}-{now.timestamp()}-{escalation}",
        items=[i.id for i in items],
        created_at=now,
        next_at=now,
    )
    session.add(notice)
    session.flush()
    reference = f"{settings.reference_prefix}-{now:%Y%m%d}-{notice.id:06d}"
    domain = settings.from_addr.rpartition("@")[2] or "childshield.invalid"
    notice.reference = reference
    notice.message_id = f"<{reference.lower()}@{domain}>"
    views = item_views(items)
    notice.subject, notice.body = template.render(
        {
            "sender": settings.sender,
            "reference": reference,
            "provider": provider_view(provider.key, provider.name, provider.country),
            "items": views,
            "round": round_,
            "escalation": escalation,
            "legal_basis": settings.legal_basis,
            "checked_at": utc(max(v.checked_at for v in views)),  # the latest time one was seen online
            "renotify_hours": hours(settings.renotify_every),
        },
    )
    record(
        session,
        "takedown",
        "notice.planned",
        f"notice:{reference}",
        {"provider": provider.key, "items": len(items), "round": round_, "escalation": escalation},
    )
    return notice.id


def hours(every: dt.timedelta) -> int | float:
    """24 for a day, 0.5 for half an hour: never "every 0 hours"."""
    value = every.total_seconds() / 3600
    return int(value) if value.is_integer() else round(value, 2)


def message(notice: Notice, settings: NoticeSettings) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = formataddr((settings.sender, settings.from_addr))
    msg["To"] = notice.to_addr
    if settings.reply_to:
        msg["Reply-To"] = settings.reply_to
    msg["Subject"] = f"[{notice.reference}] {notice.subject}"
    msg["Message-ID"] = notice.message_id
    msg["Date"] = format_datetime(aware(notice.created_at))
    msg["X-Childshield-Reference"] = notice.reference
    msg.set_content(notice.body)
    return msg


def _claim(db: Database, now: dt.datetime) -> Notice | None:
    """The next notice to send, marked ``sending`` (committed before any byte goes to SMTP)."""
    ready = and_(
        or_(Notice.state == "queued", Notice.state == "sending"),  # sending: a sender died holding it
        Notice.next_at <= now,
    )
    return claim_next(db, Notice, ready, state="sending", attempts=Notice.attempts + 1, next_at=now + LEASE)


@dataclass(frozen=True)
class NotSent:
    reference: str
    to_addr: str
    cause: str
    error: str
    final: bool
    """Failed for good (taken back from its items); else queued to be tried again."""


@dataclass
class SendResult:
    sent: int = 0
    """Notices the SMTP server accepted."""
    failures: list[NotSent] = field(default_factory=list)
    stopped: bool = False
    """The round stopped at a problem of ours or the server's; the notices left wait for the next."""

    @property
    def failed(self) -> int:
        return len(self.failures)


async def send_due(
    db: Database,
    settings: NoticeSettings,
    smtp: SmtpSettings,
    *,
    now: dt.datetime | None = None,
    max_attempts: int = 8,
) -> SendResult:
    """Send every notice that is due; the result counts those the SMTP server accepted, and names
    each one that was not, with the cause.

    A refused recipient fails that notice alone (for good on a 5xx or after ``max_attempts``, else to be
    tried again); anything else (the server away or refusing, STARTTLS missing when required, TLS,
    authentication, our sender address refused) puts the notice back, to be tried again with backoff
    however often it happens, and ends the run: one problem of ours never marks a notice failed."""
    import asyncio

    out = SendResult()
    context = ssl.create_default_context(cafile=smtp.ca_file or None) if smtp.starttls else None
    while True:
        when = now or utcnow()
        notice = await asyncio.to_thread(_claim, db, when)
        if notice is None:
            return out
        try:
            msg = message(notice, settings)
        except (ValueError, TypeError) as exc:  # an address or header that cannot be sent at all
            error = f"cannot build the message: {exc}"[:500]
            await asyncio.to_thread(_failed, db, notice, error, "bad-message", True, when)
            out.failures.append(NotSent(notice.reference, notice.to_addr, "bad-message", error, True))
            continue
        outcome = await mail.send(msg, smtp, context)
        if outcome.status == "refused":
            final = outcome.permanent or notice.attempts >= max_attempts
            await asyncio.to_thread(_failed, db, notice, outcome.error, outcome.cause, final, when)
            out.failures.append(
                NotSent(notice.reference, notice.to_addr, outcome.cause, outcome.error, final)
            )
            continue
        if outcome.status == "error":
            await asyncio.to_thread(_failed, db, notice, outcome.error, outcome.cause, False, when)
            out.failures.append(
                NotSent(notice.reference, notice.to_addr, outcome.cause, outcome.error, False)
            )
            out.stopped = True
            return out  # the server, the connection or our own setup: try the rest later
        await asyncio.to_thread(_sent, db, notice, when)
        out.sent += 1


def _sent(db: Database, notice: Notice, now: dt.datetime) -> None:
    with db.session() as session:
        session.execute(
            update(Notice)
            .where(Notice.id == notice.id)
            .values(state="sent", sent_at=now, last_error="", cause="")
        )
        record(
            session,
            "takedown",
            "notice.sent",
            f"notice:{notice.reference}",
            {"to": notice.to_addr, "attempt": notice.attempts},
        )


def _failed(db: Database, notice: Notice, error: str, cause: str, final: bool, now: dt.datetime) -> None:
    """Back in the queue with backoff, or (final) failed: then the notice is taken back from its items,
    which are due again a round later (with whatever contact is right by then)."""
    backoff = retry_delay(notice.attempts)
    with db.session() as session:
        session.execute(
            update(Notice)
            .where(Notice.id == notice.id)
            .values(
                state="failed" if final else "queued",
                last_error=error,
                cause=cause[:32],
                next_at=now + backoff,
            )
        )
        if not final:
            return
        if not notice.escalation:
            items = session.scalars(select(TakedownItem).where(TakedownItem.id.in_(notice.items))).all()
            for item in items:
                item.notices = max(0, item.notices - 1)
                item.last_notice_at = now  # due again a full round later, not at once (no churn)
                if item.notices == 0:
                    item.first_notice_at = None
        record(
            session,
            "takedown",
            "notice.failed",
            f"notice:{notice.reference}",
            {"error": error, "cause": cause},
        )
