"""How much an allow-list match outweighs: a reviewer's "this is not that" clears only what it is sure of."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, TypeVar

from childshield.matching.kinds import covers

if TYPE_CHECKING:
    from childshield.matching.matcher import Match

CRYPTOGRAPHIC = frozenset({"md5", "sha1", "sha256"})
K = TypeVar("K", bound=Hashable)


def allow_listed(found: Mapping[K, Match], allowed: Sequence[Match]) -> tuple[dict[K, Match], dict[K, Match]]:
    """(standing, cleared): which matches the allow-list entries that matched outweigh; each cleared match
    carries the entry that cleared it (``cleared_by``).

    An allow-list entry is a reviewer's "this is not that": it never outweighs an exact cryptographic match
    of known material (the very file is in a bank), nor a PDQ match closer than its own, nor a match of
    another kind than the one it was made for (``matching.kinds``: an entry made by rejecting a mirrored
    copy never clears a plain match).  The file's own bytes allow-listed (an exact cryptographic allow-list
    match) clear its perceptual matches of the kinds the entry names; an allow-listed PDQ at distance d
    clears them at distance d or more (at d itself, an allow-list match through a query variant clears only
    matches through a query variant)."""
    standing: dict[K, Match] = {}
    cleared: dict[K, Match] = {}
    for key, m in found.items():
        by = None if m.signal_type in CRYPTOGRAPHIC else _clearing(m, allowed)
        if by is None:
            standing[key] = m if m.cleared_by is None else replace(m, cleared_by=None)
        else:
            cleared[key] = replace(m, cleared_by=by)
    return standing, cleared


def _clearing(match: Match, allowed: Sequence[Match]) -> Match | None:
    """The allow-list entry that clears ``match`` (the file's own bytes first, then the nearest), if any."""
    best: Match | None = None
    for a in allowed:
        if not covers(a, match):
            continue
        exact = a.signal_type in CRYPTOGRAPHIC
        if not exact and _strength(a) > _strength(match):
            continue
        if best is None or _order(a) < _order(best):
            best = a
    return best


def _strength(match: Match) -> tuple[int, bool]:
    # at the same distance a match of the plain hash is stronger than one through a query variant
    return (match.distance, bool(match.query_variant))


def _order(match: Match) -> tuple[bool, int, bool, int]:
    return (match.signal_type not in CRYPTOGRAPHIC, *_strength(match), match.entry_id)
