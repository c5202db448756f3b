"""Match signals against every enabled bank's active entries.

* MD5, SHA-1, SHA-256: exact, looked up in the database's signal index.
* PDQ: every entry within its bank's threshold (default 31), never missing one, through the persisted
  multi-index (``bank_index``); hashes of quality below ``min_quality`` (default 50) are not matched unless
  asked.
* Entry details are read from the database at match time, for active entries of enabled banks only: an
  entry disabled anywhere stops matching at once.  :meth:`Matcher.refresh` catches up with everything else
  (new entries, bank thresholds) without a rebuild.
* Negative banks are allow-lists: when a signal matches one, its matches in other banks are suppressed
  (reported as such, not dropped silently).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy import and_, or_, select

from childshield.banks.formats import normalize_signal
from childshield.index.pdq_flat import pack_hex
from childshield.matching.bank_index import BankIndex, StaleSnapshot, default_index_dir, open_bank_index
from childshield.store.db import Database
from childshield.store.models import Bank, BankKind, Entry, EntryState, SignalType
from childshield.store.revision import read_state

DEFAULT_MIN_QUALITY = 50
IN_CHUNK = 500  # values per IN (...) list: well inside every database's parameter limit

Query = tuple[str, str, "int | None"]
"""(signal type, signal, PDQ quality or None)."""


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


class Matcher:
    """Matches signals against the banks of an open database (which must stay open while it is used)."""

    def __init__(self, db: Database, index: BankIndex, *, min_quality: int, index_dir: Path | None) -> None:
        self.db = db
        self.index = index
        self.min_quality = min_quality
        self.index_dir = index_dir
        self._read_banks()

    @classmethod
    def load(
        cls,
        db: Database,
        *,
        min_quality: int = DEFAULT_MIN_QUALITY,
        index_dir: Path | str | bool = True,
    ) -> Matcher:
        """Open the PDQ index: the saved one caught up (seconds), or built and saved when there is none.

        ``index_dir``: True for the default place (see ``bank_index.default_index_dir``), False to keep it
        in memory only, or a folder.
        """
        folder = (
            default_index_dir(db) if index_dir is True else None if index_dir is False else Path(index_dir)
        )
        return cls(db, open_bank_index(db, folder), min_quality=min_quality, index_dir=folder)

    def refresh(self) -> bool:
        """Catch up with changes made since loading, by this process or any other; True if there were."""
        with self.db.session() as session:
            state = read_state(session)
        if state.instance == self.index.instance and state.revision == self.index.revision:
            return False
        try:
            self.index.catch_up(self.db)
        except StaleSnapshot:
            self.index = open_bank_index(self.db, self.index_dir)
        self._read_banks()
        return True

    def _read_banks(self) -> None:
        with self.db.session() as session:
            rows = session.execute(select(Bank.id, Bank.enabled, Bank.thresholds)).all()
        self.index.apply_banks(
            {int(bank_id): int((t or {}).get("pdq", 31)) for bank_id, enabled, t in rows if enabled}
        )

    def match(self, signal_type: str, value: str, *, quality: int | None = None) -> MatchResult:
        """Match one signal.  Raises ValueError for a malformed signal."""
        return self.match_many([(signal_type, value, quality)])[0]

    def match_many(self, queries: Sequence[Query]) -> list[MatchResult]:
        """Match many signals in one pass (one index search, a few database reads); results in order.

        Raises ValueError for a malformed signal (check them first with ``normalize_signal`` to report
        each on its own)."""
        normalized = [normalize_signal(kind, value) for kind, value, _ in queries]
        hits: list[list[tuple[int, int]]] = [[] for _ in queries]  # (entry id, distance)
        notes: list[str | None] = [None] * len(queries)
        pdq: list[int] = []
        exact: dict[tuple[str, str], list[int]] = defaultdict(list)
        for k, ((kind, signal), (_, _, quality)) in enumerate(zip(normalized, queries, strict=True)):
            if kind is not SignalType.PDQ:
                exact[(kind.value, signal)].append(k)
            elif quality is not None and quality < self.min_quality:
                notes[k] = f"PDQ quality {quality} is under {self.min_quality}: not matched"
            else:
                pdq.append(k)
        if pdq and len(self.index):
            q, items, distances = self.index.mih.search_arrays(pack_hex(normalized[k][1] for k in pdq))
            entry_ids = self.index.entry_ids[items]
            for a, e, d in zip(q.tolist(), entry_ids.tolist(), distances.tolist(), strict=True):
                hits[pdq[a]].append((e, d))
        details = self._details({e for found in hits for e, _ in found}, exact.keys())
        for (kind_value, signal), ks in exact.items():
            for entry in details.get((kind_value, signal), []):
                for k in ks:
                    hits[k].append((entry.entry_id, 0))
        by_id = {m.entry_id: m for ms in details.values() for m in ms}
        results = []
        for found, note in zip(hits, notes, strict=True):
            matches = sorted(
                (replace(by_id[e], distance=d) for e, d in found if e in by_id),
                key=lambda m: (m.distance, m.bank, m.entry_id),
            )
            allowed = tuple(m for m in matches if m.negative)
            normal = tuple(m for m in matches if not m.negative)
            if allowed:
                results.append(MatchResult((), normal, allowed, note))
            else:
                results.append(MatchResult(normal, note=note))
        return results

    def _details(
        self, entry_ids: Iterable[int], exact: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], list[Match]]:
        """Active entries of enabled banks, by id or by exact signal, grouped by (signal type, signal)."""
        conditions: list[Any] = []
        ids = sorted(entry_ids)
        conditions += [Entry.id.in_(ids[i : i + IN_CHUNK]) for i in range(0, len(ids), IN_CHUNK)]
        by_type: dict[str, list[str]] = defaultdict(list)
        for kind, signal in exact:
            by_type[kind].append(signal)
        for kind, signals in by_type.items():
            conditions += [
                and_(Entry.signal_type == SignalType(kind), Entry.signal.in_(signals[i : i + IN_CHUNK]))
                for i in range(0, len(signals), IN_CHUNK)
            ]
        out: dict[tuple[str, str], list[Match]] = defaultdict(list)
        if not conditions:
            return out
        base = (
            select(Entry, Bank.name, Bank.kind)
            .join(Bank, Bank.id == Entry.bank_id)
            .where(Bank.enabled.is_(True), Entry.state == EntryState.ACTIVE)
        )
        with self.db.session() as session:
            for i in range(0, len(conditions), 8):
                for entry, bank_name, kind in session.execute(base.where(or_(*conditions[i : i + 8]))):
                    key = (SignalType(entry.signal_type).value, entry.signal)
                    out[key].append(
                        Match(
                            bank_name,
                            entry.id,
                            key[0],
                            entry.signal,
                            0,
                            entry.external_id,
                            entry.source,
                            entry.source_name,
                            BankKind(kind) is BankKind.NEGATIVE,
                        )
                    )
        return out
