"""Putting content in the review queue: with its decision, and its media sealed when media is kept (once
per item: a repeat of the same content is a sighting of the open item, whose media is the same bytes)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import update
from sqlalchemy.orm import Session

from childshield.review.keys import Keyring
from childshield.review.media import keep
from childshield.review.queue import enqueue
from childshield.store.models import Decision, ReviewItem


@dataclass(frozen=True)
class Intake:
    consensus: int = 2
    keep_media: bool = True
    retention: dt.timedelta = dt.timedelta(hours=336)
    keyring: Keyring | None = None


def review_intake(intake: Intake, data: bytes) -> Callable[[Session, Decision], None]:
    """What ``record_decision`` runs in its transaction to queue the decision's content for review."""

    def queue(session: Session, decision: Decision) -> None:
        item_id, new = enqueue(session, decision, intake.consensus)
        if new and intake.keep_media and intake.keyring is not None:  # a repeat: the same bytes are kept
            media_id = keep(session, intake.keyring, decision.content_id, data, intake.retention)
            session.execute(update(ReviewItem).where(ReviewItem.id == item_id).values(media_id=media_id))

    return queue
