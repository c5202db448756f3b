"""Putting content in the review queue: with its decision, and its media sealed when media is kept."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from childshield.review.keys import Keyring
from childshield.review.media import keep
from childshield.review.queue import enqueue
from childshield.store.models import Decision


@dataclass(frozen=True)
class Intake:
    consensus: int = 2
    keep_media: bool = True
    retention: dt.timedelta = dt.timedelta(hours=336)
    keyring: Keyring | None = None


def review_intake(intake: Intake, data: bytes) -> Callable[[Session, Decision], None]:
    """What ``record_decision`` runs in its transaction to queue the decision's content for review."""

    def queue(session: Session, decision: Decision) -> None:
        media_id = None
        if intake.keep_media and intake.keyring is not None:
            media_id = keep(session, intake.keyring, decision.content_id, data, intake.retention)
        enqueue(session, decision.id, decision.content_id, intake.consensus, media_id)

    return queue
