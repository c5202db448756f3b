"""Match signals against every enabled bank's active entries.

* MD5, SHA-1, SHA-256: exact.  PDQ: every entry within its bank's threshold (default 31), never missing
  one; hashes of quality below ``min_quality`` (default 50) are not matched unless asked.
* Negative banks are allow-lists: when a signal matches one, its matches in other banks are suppressed
  (reported as such, not dropped silently).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import select

from childshield.banks.formats import normalize_signal
from childshield.index.pdq_flat import pack_hex
from childshield.index.pdq_mih import PdqMihIndex
from childshield.store.db import Database
from childshield.store.models import Bank, BankKind, Entry, EntryState, SignalType

DEFAULT_MIN_QUALITY = 50


@dataclass(frozen=True, slots=True)
class Match:
    bank: str
    entry_id: int
    signal_type: str
    signal: str
    distance: int
    external_id: str | None
    source: str
    source_name: str
    negative: bool = False

    def as_dict(self) -> dict[str, object]:
        return {
            "bank": self.bank,
            "entry_id": self.entry_id,
            "signal_type": self.signal_type,
            "distance": self.distance,
            "external_id": self.external_id,
            "source": self.source,
            "source_name": self.source_name,
        }


@dataclass(frozen=True, slots=True)
class MatchResult:
    matches: tuple[Match, ...] = ()
    """Matches in normal banks that stand."""
    suppressed: tuple[Match, ...] = ()
    """Matches in normal banks suppressed because a negative bank matched too."""
    allowed_by: tuple[Match, ...] = ()
    """The negative-bank matches that did the suppressing."""
    note: str | None = None

    @property
    def matched(self) -> bool:
        return bool(self.matches)


@dataclass
class _Entry:
    id: int
    bank: str
    negative: bool
    signal_type: str
    signal: str
    external_id: str | None
    source: str
    source_name: str


@dataclass
class Matcher:
    """An in-memory snapshot of the banks, built by :meth:`load`."""

    exact: dict[tuple[str, str], list[_Entry]] = field(default_factory=dict)
    pdq_entries: list[_Entry] = field(default_factory=list)
    pdq_index: PdqMihIndex | None = None
    min_quality: int = DEFAULT_MIN_QUALITY

    @classmethod
    def load(cls, db: Database, *, min_quality: int = DEFAULT_MIN_QUALITY) -> Matcher:
        matcher = cls(min_quality=min_quality)
        exact: dict[tuple[str, str], list[_Entry]] = defaultdict(list)
        pdq_hex: list[str] = []
        thresholds: list[int] = []
        with db.session() as session:
            rows = session.execute(
                select(Entry, Bank.name, Bank.kind, Bank.thresholds)
                .join(Bank, Bank.id == Entry.bank_id)
                .where(Bank.enabled.is_(True), Entry.state == EntryState.ACTIVE)
                .order_by(Entry.id)
            ).all()
        for entry, bank_name, kind, bank_thresholds in rows:
            item = _Entry(
                entry.id,
                bank_name,
                BankKind(kind) is BankKind.NEGATIVE,
                SignalType(entry.signal_type).value,
                entry.signal,
                entry.external_id,
                entry.source,
                entry.source_name,
            )
            if item.signal_type == SignalType.PDQ.value:
                matcher.pdq_entries.append(item)
                pdq_hex.append(entry.signal)
                thresholds.append(int((bank_thresholds or {}).get("pdq", 31)))
            else:
                exact[(item.signal_type, item.signal)].append(item)
        matcher.exact = dict(exact)
        if pdq_hex:
            matcher.pdq_index = PdqMihIndex(pack_hex(pdq_hex), np.asarray(thresholds))
        return matcher

    def match(self, signal_type: str, value: str, *, quality: int | None = None) -> MatchResult:
        """Match one signal.  Raises ValueError for a malformed signal."""
        kind, signal = normalize_signal(signal_type, value)
        found: list[Match] = []
        if kind is SignalType.PDQ:
            if quality is not None and quality < self.min_quality:
                return MatchResult(note=f"PDQ quality {quality} is under {self.min_quality}: not matched")
            if self.pdq_index is not None:
                for hit in self.pdq_index.search(pack_hex([signal])):
                    found.append(self._as_match(self.pdq_entries[hit.item], hit.distance))
        else:
            found = [self._as_match(e, 0) for e in self.exact.get((kind.value, signal), [])]
        allowed = tuple(m for m in found if m.negative)
        normal = tuple(m for m in found if not m.negative)
        if allowed:
            return MatchResult((), normal, allowed)
        return MatchResult(normal)

    @staticmethod
    def _as_match(entry: _Entry, distance: int) -> Match:
        return Match(
            entry.bank,
            entry.id,
            entry.signal_type,
            entry.signal,
            distance,
            entry.external_id,
            entry.source,
            entry.source_name,
            entry.negative,
        )
