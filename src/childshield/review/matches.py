"""A decision's matches as a reviewer reads them: one row per banked item, its signals folded together.

A file matched exactly is one item found four ways (MD5, SHA-1, SHA-256 and PDQ); the reviewer needs to
see one item, how it matched (the signals, the closest distance, the variants on either side, the check)
and where the entry came from (its external id, labels and source), not four rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from childshield.matching.allowlist import CRYPTOGRAPHIC
from childshield.store.models import Entry

_PROVENANCE = ("external_id", "labels", "source", "source_name")


@dataclass(frozen=True)
class MatchRow:
    bank: str
    item_id: int
    entry_ids: tuple[int, ...]
    signals: tuple[str, ...]
    """How it matched, strongest first: ``sha256``, ``pdq 4``, ``orb (pdq 40, 25 inliers)``."""
    distance: int
    """The closest perceptual distance (0 when it matched only exactly)."""
    check: str
    """What decided the closest match: its signal type, or ``orb`` (the second check)."""
    variant: str
    """The bank's variant that matched (a crop, a turn, a video's frame); empty for the item's own hash."""
    query_variant: str
    """The query's variant that matched (``flipx``: a mirrored copy); empty for the file's own hash."""
    external_ids: tuple[str, ...]
    labels: tuple[str, ...]
    sources: tuple[str, ...]
    """Where the entries came from: ``import: list.csv``, ``file: photo.jpg``."""
    allowed_by: str = ""
    """For a suppressed match: the allow-list entry that cleared it."""

    @property
    def exact(self) -> bool:
        return any(s in CRYPTOGRAPHIC for s in self.signals)


def fold(session: Session, matches: Sequence[Any] | None) -> list[MatchRow]:
    """One row per (bank, item), closest first.  An item's entries are one row: its variants and frames
    (they point to it), the exact digests of the file in a bank (the same bytes), and a PDQ entry from the
    same source as those (``bank add`` stores a file's MD5, SHA-1, SHA-256 and PDQ as entries side by
    side).  Provenance the decision did not keep (decisions made before it was kept) is read from the
    entries as they are now."""
    records = [m for m in matches or () if isinstance(m, dict)]
    missing = [m["entry_id"] for m in records if "source" not in m and isinstance(m.get("entry_id"), int)]
    now = _provenance(session, missing)
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for m in records:
        entry = m.get("entry_id")
        if "source" not in m and isinstance(entry, int) and entry in now:
            m = {**now[entry], **m}
        item = m.get("item_id") or entry or 0
        groups.setdefault((str(m.get("bank", "")), int(item)), []).append(m)
    exact: dict[str, tuple[str, int]] = {}  # bank -> the group holding the file's exact digests there
    for key in list(groups):
        bank = key[0]
        if any(m.get("signal_type") in CRYPTOGRAPHIC for m in groups[key]):
            if bank in exact:
                groups[exact[bank]] += groups.pop(key)
            else:
                exact[bank] = key
    for key in list(groups):
        into = exact.get(key[0])
        if into is None or into == key:
            continue
        same = {_origin(m) for m in groups[into]}
        if all(_origin(m) in same for m in groups[key]):
            groups[into] += groups.pop(key)
    rows = [_row(bank, item, group) for (bank, item), group in groups.items()]
    rows.sort(key=lambda r: (not r.exact, r.distance, r.bank, r.item_id))
    return rows


def _origin(m: dict[str, Any]) -> tuple[str, str, str]:
    return (_text(m.get("source")), _text(m.get("source_name")), _text(m.get("external_id")))


def _row(bank: str, item: int, group: list[dict[str, Any]]) -> MatchRow:
    group = sorted(group, key=_strength)
    perceptual = [m for m in group if m.get("signal_type") not in CRYPTOGRAPHIC]
    best = perceptual[0] if perceptual else group[0]
    allowed = next((m["allowed_by"] for m in group if isinstance(m.get("allowed_by"), dict)), None)
    return MatchRow(
        bank=bank,
        item_id=item,
        entry_ids=tuple(_unique(m.get("entry_id") for m in group)),
        signals=tuple(_unique(_signal(m) for m in group)),
        distance=int(best.get("distance") or 0),
        check=str(best.get("check") or best.get("signal_type") or ""),
        variant=_text(best.get("variant")),
        query_variant=_text(best.get("query_variant")),
        external_ids=tuple(_unique(_text(m.get("external_id")) for m in group)),
        labels=tuple(_unique(str(x) for m in group for x in (m.get("labels") or ()))),
        sources=tuple(_unique(_source(m) for m in group)),
        allowed_by=_allowed(allowed) if allowed else "",
    )


def _strength(m: dict[str, Any]) -> tuple[bool, int, bool, bool]:
    return (
        m.get("signal_type") not in CRYPTOGRAPHIC,
        int(m.get("distance") or 0),
        bool(m.get("variant")),
        bool(m.get("query_variant")),
    )


def _signal(m: dict[str, Any]) -> str:
    kind = _text(m.get("signal_type"))
    if kind in CRYPTOGRAPHIC:
        return kind
    if m.get("check") == "orb":
        return f"orb ({kind} {m.get('distance')}, {m.get('inliers', '?')} inliers)"
    return f"{kind} {m.get('distance')}"


def _source(m: dict[str, Any]) -> str:
    source, name = _text(m.get("source")), _text(m.get("source_name"))
    return f"{source}: {name}" if source and name else source or name


def _allowed(a: dict[str, Any]) -> str:
    labels = [str(x) for x in a.get("labels") or ()]
    how = f" ({', '.join(labels)})" if labels else ""
    return f"{a.get('bank')} entry {a.get('entry_id')}, {a.get('signal_type')} {a.get('distance')}{how}"


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _unique(values: Iterable[Any]) -> list[Any]:
    return [v for v in dict.fromkeys(values) if v not in (None, "")]


def _provenance(session: Session, entry_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    ids = sorted(set(entry_ids))
    out: dict[int, dict[str, Any]] = {}
    for i in range(0, len(ids), 500):
        for row in session.execute(
            select(Entry.id, Entry.external_id, Entry.labels, Entry.source, Entry.source_name).where(
                Entry.id.in_(ids[i : i + 500])
            )
        ):
            out[row.id] = {"external_id": row.external_id, "labels": list(row.labels or []),
                           "source": row.source, "source_name": row.source_name}  # fmt: skip
    return out
