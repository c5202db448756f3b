"""Flood protection: an item that suddenly matches far more content than usual is flagged, and when its
bank's policy says so, quarantined (disputed) at once.

Shared hash lists carry the odd entry that matches common, harmless content (a logo, a blank frame, a
meme).  Such an entry shows itself by a surge: many matches within an hour, far above its own usual
rate.  The guard counts matches per item and hour in the database (``match_tallies``, so every process
and restart adds to the same counts), and after each flush compares the current hour with the item's
average over the past week.  A flood is reported; with ``flood_quarantine`` the item (and its variants)
is disputed with the figures as the reason, which stops it matching until someone reviews it.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from childshield.banks.entries import set_state_in
from childshield.banks.policy import Policy
from childshield.matching.matcher import Match
from childshield.store.db import Database, upsert_insert
from childshield.store.models import Bank, Entry, EntryState, MatchTally

log = logging.getLogger(__name__)

BASELINE_HOURS = 7 * 24


@dataclass(frozen=True, slots=True)
class Flood:
    bank: str
    item_id: int
    matches_this_hour: int
    usual_per_hour: float
    quarantined: bool

    def describe(self) -> str:
        action = "disputed (quarantined)" if self.quarantined else "flagged"
        return (
            f"item {self.item_id} of bank {self.bank!r} matched {self.matches_this_hour} times this hour"
            f" (usually {self.usual_per_hour:.1f}/h): {action}"
        )


class FloodGuard:
    """Counts matches per item; :meth:`flush` stores the counts and returns the floods it found."""

    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.clock = clock
        self.pending: Counter[int] = Counter()
        self.reported: set[tuple[int, int]] = set()  # (item, hour) already reported

    def record(self, matches: Iterable[Match]) -> None:
        """Count one match per item per call (a file matching an item through several signals is one)."""
        self.pending.update({m.item_id for m in matches})

    def flush(self) -> list[Flood]:
        if not self.pending:
            return []
        hour = int(self.clock() // 3600)
        counts, self.pending = self.pending, Counter()
        floods: list[Flood] = []
        with self.db.session() as session:
            table: Any = MatchTally.__table__
            rows = [{"entry_id": e, "hour": hour, "count": n} for e, n in sorted(counts.items())]
            stmt = upsert_insert(session)(table)
            stmt = stmt.on_conflict_do_update(
                index_elements=["entry_id", "hour"], set_={"count": table.c.count + stmt.excluded.count}
            )
            session.execute(stmt, rows)
            items = list(counts)
            for i in range(0, len(items), 500):
                floods += self._check(session, items[i : i + 500], hour)
        for flood in floods:
            log.warning("flood: %s", flood.describe())
        return floods

    def _check(self, session: Session, items: list[int], hour: int) -> list[Flood]:
        now = dict(
            session.execute(
                select(MatchTally.entry_id, MatchTally.count).where(
                    MatchTally.entry_id.in_(items), MatchTally.hour == hour
                )
            ).all()
        )
        before = dict(
            session.execute(
                select(MatchTally.entry_id, func.sum(MatchTally.count))
                .where(
                    MatchTally.entry_id.in_(items),
                    MatchTally.hour >= hour - BASELINE_HOURS,
                    MatchTally.hour < hour,
                )
                .group_by(MatchTally.entry_id)
            ).all()
        )
        banks = session.execute(
            select(Entry.id, Entry.state, Bank.name, Bank.policy)
            .join(Bank, Bank.id == Entry.bank_id)
            .where(Entry.id.in_(items))
        ).all()
        floods = []
        for entry_id, state, bank_name, stored in banks:
            policy = Policy.of(stored)
            count = int(now.get(entry_id, 0))
            usual = float(before.get(entry_id, 0) or 0) / BASELINE_HOURS
            if not policy.flood_limit or count < policy.flood_limit or count < policy.flood_factor * usual:
                continue
            if (entry_id, hour) in self.reported or EntryState(state) is not EntryState.ACTIVE:
                continue
            self.reported.add((entry_id, hour))
            if policy.flood_quarantine:
                set_state_in(
                    session,
                    entry_id,
                    EntryState.DISPUTED,
                    f"flood: {count} matches within the hour (usually {usual:.1f}/h); review before enabling",
                )
            floods.append(Flood(bank_name, entry_id, count, usual, policy.flood_quarantine))
        return floods
