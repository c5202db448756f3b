"""The review queue: what reviewers see, reveal and decide; the one code path behind the web UI.

Matched content whose decision calls for review becomes an item (with its media sealed, when kept).
Reviewers decide independently (they do not see each other's verdicts until the item is settled); the
consensus rules are in ``consensus``.  Settled items move on: confirmed ones to reporting (a webhook
event now, the clearinghouse later), rejected ones add their hashes to the negative bank so the same
false match is not queued again.  Every reveal and every review is an audit record.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import case, exists, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from childshield.accounts.service import Principal
from childshield.actions.webhooks import enqueue as enqueue_webhook
from childshield.audit.log import record
from childshield.banks.entries import add_signals_in
from childshield.banks.errors import BankError
from childshield.review.consensus import VERDICTS, Outcome, Vote, settle
from childshield.review.media import expire_now
from childshield.store.db import Database
from childshield.store.models import (
    Decision,
    Reveal,
    Review,
    ReviewItem,
    ReviewState,
    Role,
    SignalType,
    User,
    utcnow,
)

DEFAULT_CLASSIFICATIONS = ("A1", "A2", "B1", "B2")
"""NCMEC's industry categorisation (A: prepubescent, B: pubescent; 1: sex act, 2: lascivious exhibition)."""
REVIEWERS = (Role.REVIEWER, Role.SENIOR)


class ReviewError(Exception):
    """A review that cannot be made (with a reason to show the reviewer)."""


@dataclass(frozen=True)
class ReviewConfig:
    classifications: tuple[str, ...] = DEFAULT_CLASSIFICATIONS
    negative_bank: str = "false-matches"
    """Where rejected items' hashes go ("" for nowhere)."""
    webhook_url: str | None = None


@dataclass(frozen=True)
class VoteView:
    reviewer: str
    verdict: str
    classification: str | None
    note: str
    ruling: bool
    at: dt.datetime


@dataclass(frozen=True)
class ItemView:
    id: int
    content_id: str
    state: ReviewState
    created_at: dt.datetime
    required: int
    classification: str | None
    has_media: bool
    media_id: int | None
    decision: str
    source: str
    submitted_by: str
    sha256: str | None
    pdq: str | None
    policy_version: str
    matches: list[dict[str, Any]]
    reviews_done: int
    may_review: bool
    """The viewer may give a verdict now."""
    ruling: bool
    """The viewer's verdict would be a senior ruling."""
    context: dict[str, Any] = field(default_factory=dict)
    """Where it came from when not an upload (the crawler: page and media URLs, and why it is here)."""
    votes: list[VoteView] = field(default_factory=list)
    """Other reviewers' verdicts: shown only once settled, or to a senior ruling on an escalation."""


def enqueue(session: Session, decision_id: int, content_id: str, required: int, media_id: int | None) -> int:
    item = ReviewItem(
        decision_id=decision_id,
        content_id=content_id,
        required=max(1, required),
        media_id=media_id,
        state=ReviewState.PENDING,
    )
    session.add(item)
    session.flush()
    return item.id


def _is_reviewer(who: Principal) -> None:
    if not who.can(*REVIEWERS):
        raise ReviewError(f"the {who.role.value} role does not review")


def _is_senior(who: Principal) -> bool:
    return who.can(Role.SENIOR)


def queue(db: Database, who: Principal, *, limit: int = 50) -> list[ItemView]:
    """Items the viewer can act on, oldest first: pending ones they have not reviewed, and (seniors)
    escalated ones they took no part in."""
    _is_reviewer(who)
    states = [ReviewState.PENDING] + ([ReviewState.ESCALATED] if _is_senior(who) else [])
    mine = exists().where(Review.item_id == ReviewItem.id, Review.user_id == who.user_id)
    with db.session() as session:
        ids = session.scalars(
            select(ReviewItem.id)
            .where(ReviewItem.state.in_(states), ~mine)
            .order_by(case((ReviewItem.state == ReviewState.ESCALATED, 0), else_=1), ReviewItem.id)
            .limit(limit)
        ).all()
        return [_view(session, who, session.get_one(ReviewItem, i)) for i in ids]


def counts(db: Database) -> dict[str, int]:
    with db.session() as session:
        rows = session.execute(select(ReviewItem.state, func.count()).group_by(ReviewItem.state)).all()
    out = {s.value: 0 for s in ReviewState}
    out.update({ReviewState(s).value: n for s, n in rows})
    return out


def item(db: Database, who: Principal, item_id: int) -> ItemView:
    _is_reviewer(who)
    with db.session() as session:
        row = session.get(ReviewItem, item_id)
        if row is None:
            raise ReviewError(f"no review item {item_id}")
        return _view(session, who, row)


def _view(session: Session, who: Principal, row: ReviewItem) -> ItemView:
    decision = session.get_one(Decision, row.decision_id)
    votes = session.execute(
        select(Review, User.name)
        .join(User, User.id == Review.user_id)
        .where(Review.item_id == row.id)
        .order_by(Review.id)
    ).all()
    reviewed = any(r.user_id == who.user_id for r, _ in votes)
    ruling = row.state is ReviewState.ESCALATED and _is_senior(who)
    may = not reviewed and (row.state is ReviewState.PENDING or ruling)
    settled = row.state in (ReviewState.CONFIRMED, ReviewState.REJECTED)
    show = settled or ruling
    return ItemView(
        id=row.id,
        content_id=row.content_id,
        state=row.state,
        created_at=row.created_at,
        required=row.required,
        classification=row.classification,
        has_media=row.media_id is not None,
        media_id=row.media_id,
        decision=decision.decision,
        source=decision.source,
        submitted_by=decision.actor,
        sha256=decision.sha256,
        pdq=decision.pdq,
        policy_version=decision.policy_version,
        matches=list(decision.matches or []),
        context=dict(decision.context or {}),
        reviews_done=len(votes),
        may_review=may,
        ruling=ruling and may,
        votes=[VoteView(name, r.verdict, r.classification, r.note, r.ruling, r.at) for r, name in votes]
        if show
        else [],
    )


def record_reveal(db: Database, who: Principal, item_id: int, session_id: str) -> None:
    """The viewer chose to see the media unblurred: recorded (and audited) before it is shown."""
    _is_reviewer(who)
    with db.session() as session:
        row = session.get(ReviewItem, item_id)
        if row is None:
            raise ReviewError(f"no review item {item_id}")
        session.add(Reveal(item_id=item_id, user_id=who.user_id, session_id=session_id))
        record(session, who.name, "review.reveal", f"review:{item_id}", {"content_id": row.content_id})


def revealed(db: Database, item_id: int, session_id: str) -> bool:
    with db.session() as session:
        return (
            session.scalar(
                select(Reveal.id).where(Reveal.item_id == item_id, Reveal.session_id == session_id).limit(1)
            )
            is not None
        )


def decide(
    db: Database,
    who: Principal,
    item_id: int,
    verdict: str,
    *,
    classification: str | None = None,
    note: str = "",
    config: ReviewConfig,
) -> Outcome:
    """Record the viewer's verdict and settle the item if the reviews now agree (or this is a ruling)."""
    _is_reviewer(who)
    if verdict not in VERDICTS:
        raise ReviewError(f"unknown verdict {verdict!r}: one of {', '.join(VERDICTS)}")
    if verdict == "confirm":
        if classification not in config.classifications:
            raise ReviewError(
                f"confirming needs a classification: one of {', '.join(config.classifications)}"
            )
    else:
        classification = None
    try:
        with db.session() as session:
            # Take the item's row lock first: concurrent reviews of one item are settled one at a time.
            locked = session.execute(
                update(ReviewItem).where(ReviewItem.id == item_id).values(state=ReviewItem.state)
            )
            row = session.get(ReviewItem, item_id) if locked.rowcount else None  # type: ignore[attr-defined]
            if row is None:
                raise ReviewError(f"no review item {item_id}")
            session.refresh(row)
            ruling = row.state is ReviewState.ESCALATED
            if row.state not in (ReviewState.PENDING, ReviewState.ESCALATED):
                raise ReviewError(f"item {item_id} is settled already ({row.state.value})")
            if ruling and not _is_senior(who):
                raise ReviewError("an escalated item is settled by a senior reviewer")
            if ruling and verdict == "escalate":
                raise ReviewError("a senior ruling confirms or rejects")
            session.add(
                Review(
                    item_id=item_id,
                    user_id=who.user_id,
                    verdict=verdict,
                    classification=classification,
                    note=note[:2000],
                    ruling=ruling,
                )
            )
            session.flush()
            votes = session.scalars(select(Review).where(Review.item_id == item_id).order_by(Review.id)).all()
            outcome = settle([Vote(v.verdict, v.classification, v.ruling) for v in votes], row.required)
            record(
                session,
                who.name,
                "review.ruling" if ruling else "review.verdict",
                f"review:{item_id}",
                {"verdict": verdict, "classification": classification, "state": outcome.state.value},
            )
            if outcome.state is not row.state:
                _apply(session, row, outcome, votes, config)
            return outcome
    except IntegrityError:
        raise ReviewError(f"you have reviewed item {item_id} already") from None


def _apply(
    session: Session, row: ReviewItem, outcome: Outcome, votes: Sequence[Review], config: ReviewConfig
) -> None:
    row.state = outcome.state
    if outcome.state is ReviewState.ESCALATED:
        return
    row.classification = outcome.classification
    row.settled_at = utcnow()
    decision = session.get_one(Decision, row.decision_id)
    details: dict[str, Any] = {"classification": outcome.classification, "reviews": len(votes)}
    if outcome.state is ReviewState.REJECTED:
        expire_now(session, row.media_id)
        # Only a false *match* feeds the negative bank: an item queued without one (the crawler's unmatched
        # media) rejected as "not material" must not become an allow-list entry.
        if config.negative_bank and decision.matches:
            details["negative_bank"] = config.negative_bank
            try:
                details["added"] = _to_negative_bank(session, config.negative_bank, decision, row.id)
            except BankError as exc:  # misconfigured (a normal bank named): the verdict still stands
                details["negative_bank_error"] = str(exc)
    record(session, "review", f"review.{outcome.state.value}", f"review:{row.id}", details)
    if config.webhook_url:
        enqueue_webhook(
            session,
            decision.id,
            config.webhook_url,
            {
                "event": "review",
                "decision_id": decision.id,
                "content_id": row.content_id,
                "outcome": outcome.state.value,
                "classification": outcome.classification,
                "sha256": decision.sha256,
                "pdq": decision.pdq,
                "at": row.settled_at.isoformat(),
            },
        )


def _to_negative_bank(session: Session, bank: str, decision: Decision, item_id: int) -> int:
    rows = [(SignalType.PDQ, decision.pdq), (SignalType.SHA256, decision.sha256)]
    return add_signals_in(
        session,
        bank,
        [(kind, value) for kind, value in rows if value],
        source="review",
        source_name=f"review:{item_id}",
        create_negative=True,
    )


def settled_items(
    db: Database, state: ReviewState, *, since: int = 0, batch: int = 500
) -> Iterator[dict[str, Any]]:
    """Items in ``state`` after id ``since``, with their hashes and matches (never media), in id order."""
    last = since
    while True:
        with db.session() as session:
            rows = session.execute(
                select(ReviewItem, Decision)
                .join(Decision, Decision.id == ReviewItem.decision_id)
                .where(ReviewItem.state == state, ReviewItem.id > last)
                .order_by(ReviewItem.id)
                .limit(batch)
            ).all()
        if not rows:
            return
        for row, decision in rows:
            yield {
                "item": row.id,
                "content_id": row.content_id,
                "state": row.state.value,
                "classification": row.classification,
                "queued_at": row.created_at.isoformat(),
                "settled_at": row.settled_at.isoformat() if row.settled_at else None,
                "sha256": decision.sha256,
                "pdq": decision.pdq,
                "matches": decision.matches,
            }
        last = rows[-1][0].id
