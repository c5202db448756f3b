"""The review queue: what reviewers see, reveal and decide; the one code path behind the web UI.

Matched content whose decision calls for review becomes an item (with its media sealed, when kept).
Repeats of the same content (the same SHA-256) while its item is open fold into that item as sightings,
each with its decision and context, so a reviewer never sees the same material twice and a client
cannot flood the queue.  Reviewers decide independently (they do not see each other's verdicts); a
settled item, with the names and verdicts of its reviewers, is open only to the roles the service allows
(``review_settled_roles``: admins by default).  The consensus rules are in ``consensus``.
Settled items move on: confirmed ones to reporting (a webhook event now, the clearinghouse later),
rejected ones add their hashes to the negative bank so the same false match is not queued again.
Every reveal and every review is an audit record.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import case, exists, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from childshield.accounts.service import Principal
from childshield.actions.webhooks import enqueue as enqueue_webhook
from childshield.audit.log import record
from childshield.banks.entries import add_signals_in, set_state_in
from childshield.banks.errors import BankError
from childshield.banks.formats import MAX_LABELS
from childshield.errors import NotFound, Refused
from childshield.matching.allowlist import CRYPTOGRAPHIC
from childshield.matching.kinds import MatchKind, kinds_of
from childshield.review.consensus import VERDICTS, Outcome, Vote, settle
from childshield.review.matches import MatchRow, fold
from childshield.review.media import expire_now
from childshield.store.db import Database, upsert_insert
from childshield.store.models import (
    Bank,
    Decision,
    Entry,
    EntryState,
    Reveal,
    Review,
    ReviewItem,
    ReviewSighting,
    ReviewState,
    Role,
    SignalType,
    User,
    utcnow,
)
from childshield.store.revision import bump

DEFAULT_CLASSIFICATIONS = ("A1", "A2", "B1", "B2")
"""NCMEC's industry categorisation (A: prepubescent, B: pubescent; 1: sex act, 2: lascivious exhibition)."""
REVIEWERS = (Role.REVIEWER, Role.SENIOR)
OPEN = (ReviewState.PENDING, ReviewState.ESCALATED)
SETTLED_ROLES = (Role.ADMIN.value,)
"""Who may open settled items and see their reviewers' verdicts, unless the service says otherwise."""
SIGHTINGS_SHOWN = 200


class ReviewError(Refused):
    """A review that cannot be made (with a reason to show the reviewer)."""


class NoReviewItem(NotFound, ReviewError):
    """No review item of that id open to this reviewer (one that is not open reads as absent)."""


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
class SightingView:
    at: dt.datetime
    content_id: str
    submitted_by: str
    source: str
    context: dict[str, Any]


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
    """Other reviewers' verdicts: shown only to a senior ruling on an escalation, or on a settled item to
    the roles allowed to see settled items."""
    sightings: int = 1
    """How many times the content was seen while the item was open."""
    seen: list[SightingView] = field(default_factory=list)
    """The sightings (the latest ``SIGHTINGS_SHOWN``), each with its context."""
    rows: list[MatchRow] = field(default_factory=list)
    """``matches`` as reviewers read them: one row per banked item, its signals folded."""
    suppressed: list[MatchRow] = field(default_factory=list)
    """Matches an allow-list cleared (shown, marked, with the entry that cleared each)."""


def enqueue(session: Session, decision: Decision, required: int) -> tuple[int, bool]:
    """Queue ``decision``'s content, or fold it into the open item of the same content (SHA-256) as one
    more sighting; returns the item's id and whether it is new.  One statement (insert, or on the open
    key's conflict update), so concurrent sightings of the same content make one item on SQLite and
    PostgreSQL alike."""
    now = utcnow()
    values = {
        "decision_id": decision.id,
        "content_id": decision.content_id,
        "created_at": now,
        "state": ReviewState.PENDING,
        "required": max(1, required),
        "open_key": decision.sha256,
        "sightings": 1,
        "last_seen_at": now,
    }
    stmt = upsert_insert(session)(ReviewItem).values(values)
    if decision.sha256:
        stmt = stmt.on_conflict_do_update(
            index_elements=["open_key"],
            set_={"sightings": ReviewItem.sightings + 1, "last_seen_at": now},
        )
    item_id, first = session.execute(stmt.returning(ReviewItem.id, ReviewItem.decision_id)).one()
    session.add(ReviewSighting(item_id=item_id, decision_id=decision.id, at=now))
    session.flush()
    return int(item_id), first == decision.id


def may_see_settled(who: Principal, roles: Iterable[str] = SETTLED_ROLES) -> bool:
    """Admins always; otherwise only the roles named (e.g. ``senior``)."""
    return who.role is Role.ADMIN or who.role.value in set(roles)


def _is_reviewer(who: Principal) -> None:
    if not who.can(*REVIEWERS):
        raise ReviewError(f"the {who.role.value} role does not review")


def _is_senior(who: Principal) -> bool:
    return who.can(Role.SENIOR)


def queue(db: Database, who: Principal, *, limit: int = 50) -> list[ItemView]:
    """Items the viewer can act on, oldest first: pending ones they have not reviewed, and (seniors)
    escalated ones they took no part in."""
    _is_reviewer(who)
    with db.session() as session:
        ids = _queue_ids(session, who, limit)
        return [_view(session, who, session.get_one(ReviewItem, i)) for i in ids]


def _queue_ids(session: Session, who: Principal, limit: int) -> Sequence[int]:
    states = [ReviewState.PENDING] + ([ReviewState.ESCALATED] if _is_senior(who) else [])
    mine = exists().where(Review.item_id == ReviewItem.id, Review.user_id == who.user_id)
    return session.scalars(
        select(ReviewItem.id)
        .where(ReviewItem.state.in_(states), ~mine)
        .order_by(case((ReviewItem.state == ReviewState.ESCALATED, 0), else_=1), ReviewItem.id)
        .limit(limit)
    ).all()


def next_item(db: Database, who: Principal, after: int | None = None, *, limit: int = 500) -> int | None:
    """The item the viewer should open next: the one after ``after`` in their queue's order (round to
    the first), or the first; None when nothing waits for them."""
    _is_reviewer(who)
    with db.session() as session:
        ids = list(_queue_ids(session, who, limit))
    if after is not None:
        # after itself, if still queued (skipped); else where it was (it has just been decided)
        at = ids.index(after) + 1 if after in ids else next((k for k, i in enumerate(ids) if i > after), 0)
        ids = [i for i in ids[at:] + ids[:at] if i != after]
    return ids[0] if ids else None


def counts(db: Database) -> dict[str, int]:
    with db.session() as session:
        rows = session.execute(select(ReviewItem.state, func.count()).group_by(ReviewItem.state)).all()
    out = {s.value: 0 for s in ReviewState}
    out.update({ReviewState(s).value: n for s, n in rows})
    return out


def item(
    db: Database,
    who: Principal,
    item_id: int,
    *,
    settled_roles: Iterable[str] = SETTLED_ROLES,
    as_participant: bool = False,
) -> ItemView:
    """One item as the viewer may see it.  A settled item opens only to ``settled_roles`` (admins always);
    with ``as_participant`` also to a reviewer who took part, to learn the outcome, without the others'
    names and verdicts."""
    _is_reviewer(who)
    allowed = may_see_settled(who, settled_roles)
    with db.session() as session:
        row = session.get(ReviewItem, item_id)
        if row is None:
            raise NoReviewItem(f"no review item {item_id}")
        if row.state not in OPEN and not allowed:
            took_part = session.scalar(
                select(Review.id).where(Review.item_id == item_id, Review.user_id == who.user_id)
            )
            if not (as_participant and took_part is not None):
                raise NoReviewItem(f"no review item {item_id}")  # as if absent: its existence is no hint
        return _view(session, who, row, show_settled=allowed)


def _view(session: Session, who: Principal, row: ReviewItem, *, show_settled: bool = False) -> ItemView:
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
    show = (settled and show_settled) or ruling
    seen = session.execute(
        select(ReviewSighting.at, Decision)
        .join(Decision, Decision.id == ReviewSighting.decision_id)
        .where(ReviewSighting.item_id == row.id)
        .order_by(ReviewSighting.id.desc())
        .limit(SIGHTINGS_SHOWN)
    ).all()
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
        sightings=row.sightings,
        seen=[SightingView(at, d.content_id, d.actor, d.source, dict(d.context or {})) for at, d in seen],
        rows=fold(session, decision.matches),
        suppressed=fold(session, decision.suppressed),
    )


def record_reveal(db: Database, who: Principal, item_id: int, session_id: str) -> None:
    """The viewer chose to see the media unblurred: recorded (and audited) before it is shown."""
    _is_reviewer(who)
    with db.session() as session:
        row = session.get(ReviewItem, item_id)
        if row is None:
            raise NoReviewItem(f"no review item {item_id}")
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
                raise NoReviewItem(f"no review item {item_id}")
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
    row.open_key = None  # settled: a later sighting of the content is a new item
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
        disputed = _dispute_exact(session, decision, row.id)
        if disputed:
            details["disputed_entries"] = disputed
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


def _dispute_exact(session: Session, decision: Decision, item_id: int) -> list[int]:
    """Entries that matched the rejected file by an exact digest are disputed (they stop matching): an
    allow-list never outweighs an exact match of known material, so a list entry that reviewers found
    wrong is itself taken out of matching, with the reason, for its bank's operator to look at."""
    disputed: list[int] = []
    for m in decision.matches or ():
        if not isinstance(m, dict) or m.get("signal_type") not in CRYPTOGRAPHIC:
            continue
        if m.get("check") not in (None, m.get("signal_type")) or not isinstance(m.get("entry_id"), int):
            continue
        if set_state_in(session, m["entry_id"], EntryState.DISPUTED, f"rejected in review item {item_id}"):
            disputed.append(m["entry_id"])
    return disputed


def rejected_kinds(matches: Iterable[Any] | None) -> list[MatchKind]:
    """The kinds of match a rejection rejects (``matching.kinds``): those of its perceptual matches.  Its
    exact digest matches are disputed instead (``_dispute_exact``): an allow-list never outweighs them."""
    kinds: dict[MatchKind, None] = {}
    for m in matches or ():
        kind = MatchKind.of_record(m) if isinstance(m, dict) else None
        if kind is not None and not (kind.signal_type in CRYPTOGRAPHIC and not kind.check):
            kinds[kind] = None
    return list(kinds)


def _to_negative_bank(session: Session, bank: str, decision: Decision, item_id: int) -> int:
    """The rejected file's PDQ and SHA-256 as allow-list entries, labelled with the kinds of match they
    clear (only those: never a plain match of the original when a mirrored copy was rejected).  An entry
    there already gains the new kinds (unless it has none, and so clears every kind already)."""
    kinds = rejected_kinds(decision.matches)
    if not kinds:
        return 0
    labels = [k.label() for k in kinds]
    rows = [(SignalType.PDQ, decision.pdq), (SignalType.SHA256, decision.sha256)]
    signals = [(kind, value) for kind, value in rows if value]
    added = add_signals_in(
        session,
        bank,
        signals,
        source="review",
        source_name=f"review:{item_id}",
        create_negative=True,
        labels=labels,
    )
    _add_kinds(session, bank, signals, labels)
    return added


def _add_kinds(
    session: Session, bank: str, signals: Sequence[tuple[SignalType, str]], labels: list[str]
) -> None:
    entries = session.scalars(
        select(Entry)
        .join(Bank, Bank.id == Entry.bank_id)
        .where(Bank.name == bank, Entry.signal.in_([value for _, value in signals]))
    ).all()
    wanted = {(kind.value, value) for kind, value in signals}
    for entry in entries:
        have = list(entry.labels or [])
        if (SignalType(entry.signal_type).value, entry.signal) not in wanted or kinds_of(have) is None:
            continue  # not one of these, or an entry without kinds (it clears every kind already)
        new = [label for label in labels if label not in have][: max(0, MAX_LABELS - len(have))]
        if new:
            entry.labels = have + new
            entry.revision = bump(session)


def settled_items(
    db: Database, state: ReviewState, *, since: int = 0, batch: int = 500
) -> Iterator[dict[str, Any]]:
    """Items in ``state`` after id ``since``, with their hashes and matches (and those an allow-list
    cleared, each with the entry that did; never media), in id order."""
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
                "suppressed": decision.suppressed or [],
            }
        last = rows[-1][0].id
