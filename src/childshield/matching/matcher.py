"""Match signals against every enabled bank's active entries.

* MD5, SHA-1, SHA-256: exact, looked up in the database's signal index.
* PDQ: every entry within its bank's threshold (default 31), never missing one, through the persisted
  multi-index (``bank_index``); hashes of quality below ``min_quality`` (default 50) are not matched unless
  asked.
* Entry details are read from the database at match time, for active entries of enabled banks only: an
  entry disabled anywhere stops matching at once.  :meth:`Matcher.refresh` catches up with everything else
  (new entries, bank thresholds) without a rebuild.
* Negative banks are allow-lists: when a signal matches one, its matches in other banks that the entry
  outweighs are suppressed (reported as such, with the entry that cleared each, never dropped silently):
  never an exact cryptographic match, a closer PDQ match, or a match of another kind than the entry was
  made for (see ``matching.allowlist`` and ``matching.kinds``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from childshield.banks.formats import normalize_signal
from childshield.banks.policy import Policy
from childshield.index.pdq_flat import pack_hex
from childshield.matching.allowlist import allow_listed
from childshield.matching.bank_index import BankIndex, StaleSnapshot, default_index_dir, open_bank_index
from childshield.store.db import Database
from childshield.store.models import Bank, BankKind, Entry, EntryState, LocalFeatures, SignalType
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
    bank_id: int = 0
    item_id: int = 0
    """The item matched: the entry itself, or for a variant the item's own PDQ entry."""
    variant: str = ""
    """The stored variant that matched (``crop6@0.25,0.5``, ``rotate+3``); empty for the item's own hash."""
    query_variant: str = ""
    """The query's variant that matched (``flipx``, ``trimmed``); empty for the query's own hash."""
    check: str = ""
    """``orb`` when the second check decided the match (near in PDQ, confirmed by local features; see
    ``matching.second_check``); empty when the signal itself matched (``as_dict`` names the signal)."""
    inliers: int = 0
    """For ``check == "orb"``: the local-feature matches that agreed on one transform."""
    labels: tuple[str, ...] = ()
    """The matched entry's labels (classifications from the hash list, e.g. ``A1``; on an allow-list
    entry made in review, the kinds of match it was made for: ``rejected:pdq/query_variant=flipx``)."""
    cleared_by: Match | None = None
    """For a suppressed match: the allow-list entry (a negative bank's match) that cleared it."""

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "bank": self.bank,
            "entry_id": self.entry_id,
            "item_id": self.item_id,
            "signal_type": self.signal_type,
            "distance": self.distance,
            "variant": self.variant or None,
            "query_variant": self.query_variant or None,
            "external_id": self.external_id,
            "source": self.source,
            "source_name": self.source_name,
            "check": self.check or self.signal_type,
            "labels": list(self.labels),
        }
        if self.check == "orb":
            out["inliers"] = self.inliers
        if self.cleared_by is not None:
            out["allowed_by"] = self.cleared_by.as_dict()
        return out


@dataclass(frozen=True, slots=True)
class MatchResult:
    matches: tuple[Match, ...] = ()
    """Matches in normal banks that stand."""
    suppressed: tuple[Match, ...] = ()
    """Matches in normal banks suppressed because a negative bank matched too (each with its
    ``cleared_by``)."""
    allowed_by: tuple[Match, ...] = ()
    """The negative-bank (allow-list) matches: those that suppressed, and those that outweighed nothing."""
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
        with self.db.engine.connect() as connection:
            state = read_state(connection)
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
            rows = session.execute(select(Bank.id, Bank.enabled, Bank.thresholds, Bank.policy)).all()
            self._read_policies(session, rows)

    def _read_policies(self, session: Session, rows: Sequence[Any]) -> None:
        own: dict[int, int] = {}
        edits: dict[int, int] = {}
        gates: dict[int, int] = {}
        self.query_variant_thresholds: dict[int, int] = {}
        self.policies: dict[int, Policy] = {}
        for bank_id, enabled, thresholds, stored in rows:
            if not enabled:
                continue
            policy = self.policies[int(bank_id)] = Policy.of(stored)
            pdq = int((thresholds or {}).get("pdq", 31))
            variant = min(policy.variant_threshold, pdq)  # a variant never matches looser than the item
            own[int(bank_id)] = pdq
            if policy.bank_variants:
                edits[int(bank_id)] = variant
            if policy.query_variants:
                self.query_variant_thresholds[int(bank_id)] = variant
            if policy.orb_check and policy.orb_gate > pdq and _has_features(session, int(bank_id)):
                gates[int(bank_id)] = policy.orb_gate
        self.index.apply_banks(own, edits, gates)

    @property
    def wants_query_variants(self) -> bool:
        """Whether any enabled bank matches query-side variants (so scans should compute them)."""
        return bool(self.query_variant_thresholds)

    def match(self, signal_type: str, value: str, *, quality: int | None = None) -> MatchResult:
        """Match one signal.  Raises ValueError for a malformed signal."""
        return self.match_many([(signal_type, value, quality)])[0]

    def match_many(
        self, queries: Sequence[Query], *, query_variants: Sequence[str] | None = None
    ) -> list[MatchResult]:
        """Match many signals in one pass (one index search, a few database reads); results in order.

        ``query_variants`` names, for each query, the query-side variant it is (``flipx``, ``trimmed``;
        empty for a plain hash): those match only banks whose policy takes them, within the bank's
        variant threshold.  Raises ValueError for a malformed signal (check them first with
        ``normalize_signal`` to report each on its own)."""
        names = list(query_variants) if query_variants is not None else [""] * len(queries)
        if len(names) != len(queries):
            raise ValueError("one query variant name per query")
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
        limits = self.query_variant_thresholds
        for (kind, signal), found, note, name in zip(normalized, hits, notes, names, strict=True):
            matches = sorted(
                (
                    replace(by_id[e], distance=d, query_variant=name)
                    for e, d in found
                    if e in by_id
                    and _confirmed(kind, signal, by_id[e], d)
                    and (not name or d <= limits.get(by_id[e].bank_id, -1))
                ),
                key=lambda m: (m.distance, m.bank, m.entry_id),
            )
            allowed = tuple(m for m in matches if m.negative)
            normal = {(m.bank, m.entry_id): m for m in matches if not m.negative}
            if allowed:
                standing, cleared = allow_listed(normal, allowed)
                results.append(MatchResult(tuple(standing.values()), tuple(cleared.values()), allowed, note))
            else:
                results.append(MatchResult(tuple(normal.values()), note=note))
        return results

    def entry_details(self, entry_ids: Iterable[int]) -> dict[int, Match]:
        """Active entries of enabled banks by id (distance 0)."""
        return {m.entry_id: m for ms in self._details(entry_ids, ()).values() for m in ms}

    def _details(
        self, entry_ids: Iterable[int], exact: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], list[Match]]:
        """Active entries of enabled banks, by id or by exact signal, grouped by (signal type, signal)."""
        ids = sorted(entry_ids)
        wanted = set(exact)
        signals = sorted({signal for _, signal in wanted})
        out: dict[tuple[str, str], list[Match]] = defaultdict(list)
        if not ids and not signals:
            return out
        with self.db.engine.connect() as connection:
            found = [
                row
                for i in range(0, len(ids), IN_CHUNK)
                for row in connection.execute(_BY_ID, {"ids": ids[i : i + IN_CHUNK]})
            ]
            found += [
                row
                for i in range(0, len(signals), IN_CHUNK)
                for row in connection.execute(_BY_SIGNAL, {"signals": signals[i : i + IN_CHUNK]})
                if (SignalType(row.signal_type).value, row.signal) in wanted
            ]
        for row in found:
            key = (SignalType(row.signal_type).value, row.signal)
            negative = BankKind(row.kind) is BankKind.NEGATIVE
            match = Match(
                row.name,
                row.id,
                key[0],
                row.signal,
                0,
                row.external_id,
                row.source,
                row.source_name,
                negative,
                bank_id=row.bank_id,
                item_id=row.parent_id or row.id,
                variant=row.variant or "",
                labels=tuple(str(x) for x in (row.labels or ()) if isinstance(x, str)),
            )
            out[key].append(match)
        return out


def _has_features(session: Session, bank_id: int) -> bool:
    found = session.scalar(select(LocalFeatures.entry_id).where(LocalFeatures.bank_id == bank_id).limit(1))
    return found is not None


def _confirmed(kind: SignalType, signal: str, match: Match, distance: int) -> bool:
    """The database row agrees with the index: a stale item (its entry gone, the id given to another
    entry since) is never reported as a match."""
    if kind is not SignalType.PDQ:
        return match.signal_type == kind.value and match.signal == signal
    return match.signal_type == "pdq" and (int(match.signal, 16) ^ int(signal, 16)).bit_count() == distance


_ENTRIES = Entry.__table__.c
_BANKS = Bank.__table__.c
_LIVE = (
    select(
        _ENTRIES.id,
        _ENTRIES.signal_type,
        _ENTRIES.signal,
        _ENTRIES.external_id,
        _ENTRIES.source,
        _ENTRIES.source_name,
        _ENTRIES.parent_id,
        _ENTRIES.variant,
        _ENTRIES.labels,
        _ENTRIES.bank_id,
        _BANKS.name,
        _BANKS.kind,
    )
    .join_from(Entry.__table__, Bank.__table__, _BANKS.id == _ENTRIES.bank_id)
    .where(_BANKS.enabled.is_(True), _ENTRIES.state == EntryState.ACTIVE)
)
# Built once, so SQLAlchemy compiles each once: matching runs them for every file scanned.
_BY_ID = _LIVE.where(_ENTRIES.id.in_(bindparam("ids", expanding=True)))
_BY_SIGNAL = _LIVE.where(
    _ENTRIES.signal_type.in_([SignalType.MD5, SignalType.SHA1, SignalType.SHA256]),
    _ENTRIES.signal.in_(bindparam("signals", expanding=True)),
)
