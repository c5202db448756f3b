"""Consensus: when independent reviews settle an item.

* ``required`` reviewers (default 2; hotlines often use 3) must give the same verdict (and, to confirm,
  the same classification) for the item to be confirmed or rejected;
* any disagreement, or any reviewer choosing to escalate, sends it to a senior reviewer;
* a senior reviewer's ruling on an escalated item settles it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from childshield.store.models import ReviewState

VERDICTS = ("confirm", "reject", "escalate")


@dataclass(frozen=True, slots=True)
class Vote:
    verdict: str
    classification: str | None = None
    ruling: bool = False


@dataclass(frozen=True, slots=True)
class Outcome:
    state: ReviewState
    classification: str | None = None


def settle(votes: Sequence[Vote], required: int) -> Outcome:
    """The item's state given its reviews (in the order they were made)."""
    for vote in votes:
        if vote.ruling:
            return _final(vote)
    if any(v.verdict == "escalate" for v in votes):
        return Outcome(ReviewState.ESCALATED)
    opinions = {(v.verdict, v.classification if v.verdict == "confirm" else None) for v in votes}
    if len(opinions) > 1:
        return Outcome(ReviewState.ESCALATED)
    if votes and len(votes) >= max(1, required):
        return _final(votes[0])
    return Outcome(ReviewState.PENDING)


def _final(vote: Vote) -> Outcome:
    if vote.verdict == "confirm":
        return Outcome(ReviewState.CONFIRMED, vote.classification)
    return Outcome(ReviewState.REJECTED)
