"""Decisions: the strongest action of the banks a piece of content matched, recorded with the exact policy
that made it.

A policy version is the SHA-256 of the enabled banks' policies and thresholds (canonical JSON); the
snapshot itself is stored once per version, so any past decision can be explained exactly as it was
made, whatever was changed since.  Decisions are recorded for content that matched something (clean
content is only counted in the metrics: recording every upload of a platform would be a log of its users'
activity, which a hash-matching service has no business keeping).

A decision is never dropped for a busy database (a long bank import holding SQLite's write lock): its
transaction is tried again with backoff for ``patience`` seconds, and only then is
``DecisionNotRecorded`` raised, for the caller to say so (the content matched; nothing was recorded).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from childshield.actions.webhooks import enqueue
from childshield.banks.policy import ACTIONS
from childshield.errors import Busy
from childshield.matching.matcher import Match, Matcher
from childshield.store.db import Database, is_busy, retry_busy, upsert_insert
from childshield.store.models import Bank, Decision, PolicyVersion, utcnow

PATIENCE = 60.0
"""Seconds a decision waits for a busy database (a 1M-row SQLite import holds the lock about a minute)."""


class DecisionNotRecorded(Busy):
    """The database stayed busy past the patience: the decision (content id, action) was not stored."""

    retry_after = 10.0

    def __init__(self, content_id: str, decision: str, reason: str) -> None:
        self.content_id = content_id
        self.decision = decision
        super().__init__(f"decision {decision!r} on content {content_id} was not recorded: {reason}")


@dataclass(frozen=True, slots=True)
class PolicySnapshot:
    version: str
    banks: dict[str, Any]


def snapshot(matcher: Matcher) -> PolicySnapshot:
    """The policy in force for ``matcher``: every enabled bank's action, thresholds and matching policy."""
    banks = {
        str(bank_id): {
            "action": p.action,
            **p.as_dict(),
            "thresholds": matcher.index.bank_thresholds.get(bank_id),
        }
        for bank_id, p in sorted(matcher.policies.items())
    }
    body = json.dumps(banks, sort_keys=True, separators=(",", ":"))
    return PolicySnapshot(hashlib.sha256(body.encode()).hexdigest(), banks)


def decide(matches: Sequence[Match], matcher: Matcher) -> str:
    """The strongest action among the banks matched; ``allow`` when nothing matched."""
    strongest = 0
    for match in matches:
        policy = matcher.policies.get(match.bank_id)
        action = policy.action if policy is not None else "review"
        for label in match.labels:  # per classification: at least what the bank says for this label
            if policy is not None and label in policy.label_actions:
                action = max(action, policy.label_actions[label], key=ACTIONS.index)
        strongest = max(strongest, ACTIONS.index(action))
    return ACTIONS[strongest] if matches else "allow"


def record_decision(
    db: Database,
    *,
    content_id: str,
    decision: str,
    policy: PolicySnapshot,
    matches: Sequence[Match],
    actor: str,
    sha256: str | None,
    pdq: str | None,
    source: str = "api",
    webhook_url: str | None = None,
    then: Callable[[Session, Decision], None] | None = None,
    context: dict[str, Any] | None = None,
    patience: float = PATIENCE,
    suppressed: Sequence[Match] = (),
) -> int:
    """Store a decision (and its policy version, once) and, with ``webhook_url``, its webhook delivery in
    the same transaction; returns its id.  A busy database is waited for (the whole transaction tried
    again) up to ``patience`` seconds, then ``DecisionNotRecorded`` is raised.  ``suppressed``: the
    matches an allow-list cleared, kept for reviewers to see (they take no part in the decision)."""

    def write() -> int:  # one whole transaction: tried again from the start while the database is busy
        with db.session() as session:
            session.execute(
                upsert_insert(session)(PolicyVersion)
                .values(version=policy.version, banks=policy.banks)
                .on_conflict_do_nothing(index_elements=["version"])
            )
            row = Decision(
                content_id=content_id,
                at=utcnow(),
                decision=decision,
                policy_version=policy.version,
                actor=actor,
                source=source,
                sha256=sha256,
                pdq=pdq,
                matches=[_match(m) for m in matches],
                context=context,
                suppressed=[_match(m) for m in suppressed] or None,
            )
            session.add(row)
            session.flush()
            if webhook_url:
                enqueue(session, row.id, webhook_url, payload(row))
            if then is not None:  # e.g. queue it for review: in the same transaction, so both or neither
                then(session, row)
            return row.id

    try:
        return retry_busy(write, patience=patience)
    except DBAPIError as exc:
        if not is_busy(exc):
            raise
        raise DecisionNotRecorded(content_id, decision, "the database stayed busy") from exc


def payload(row: Decision) -> dict[str, Any]:
    """What a webhook tells the platform."""
    return {
        "event": "decision",
        "decision_id": row.id,
        "content_id": row.content_id,
        "decision": row.decision,
        "policy_version": row.policy_version,
        "at": row.at.isoformat() if row.at else None,
        "sha256": row.sha256,
        "pdq": row.pdq,
        "matches": row.matches,
        **({"context": row.context} if row.context else {}),
    }


def _match(m: Match) -> dict[str, Any]:
    """A match as a decision keeps it: what matched, how (the kind a review rejection records), and the
    entry's provenance as it was then."""
    out: dict[str, Any] = {
        "bank": m.bank,
        "bank_id": m.bank_id,
        "entry_id": m.entry_id,
        "item_id": m.item_id,
        "signal_type": m.signal_type,
        "distance": m.distance,
        "check": m.check or m.signal_type,
        "variant": m.variant or None,
        "query_variant": m.query_variant or None,
        "labels": list(m.labels),
        "external_id": m.external_id,
        "source": m.source,
        "source_name": m.source_name,
    }
    if m.check == "orb":
        out["inliers"] = m.inliers
    if m.cleared_by is not None:
        out["allowed_by"] = _match(m.cleared_by)
    return out


def policy_of(db: Database, version: str) -> dict[str, Any] | None:
    with db.session() as session:
        banks = session.scalar(select(PolicyVersion.banks).where(PolicyVersion.version == version))
        names = {row[0]: row[1] for row in session.execute(select(Bank.id, Bank.name))}
    if banks is None:
        return None
    return {names.get(int(k), k): v for k, v in banks.items()}
