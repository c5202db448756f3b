"""How much an allow-list match outweighs: a reviewer's "this is not that" clears only what it is sure of."""

from __future__ import annotations

from childshield.matching.matcher import Match

CRYPTOGRAPHIC = frozenset({"md5", "sha1", "sha256"})


def allow_listed(
    found: dict[tuple[str, int], Match], allowed: list[Match]
) -> tuple[dict[tuple[str, int], Match], dict[tuple[str, int], Match]]:
    """(standing, cleared): which matches the allow-list entries that matched outweigh.

    An allow-list entry is a reviewer's "this is not that": it never outweighs an exact cryptographic match
    of known material (the very file is in a bank), nor a PDQ match closer than its own.  The file's own
    bytes allow-listed (an exact cryptographic allow-list match) clear its perceptual matches; an
    allow-listed PDQ at distance d clears the perceptual matches at distance d or more (at d itself, an
    allow-list match through a query variant clears only matches through a query variant)."""
    exact_allowed = any(a.signal_type in CRYPTOGRAPHIC for a in allowed)
    # at the same distance a match of the plain hash is stronger than one through a query variant
    nearest = min((_strength(a) for a in allowed if a.signal_type not in CRYPTOGRAPHIC), default=None)
    standing: dict[tuple[str, int], Match] = {}
    cleared: dict[tuple[str, int], Match] = {}
    for key, m in found.items():
        if m.signal_type in CRYPTOGRAPHIC:
            standing[key] = m
        elif exact_allowed or (nearest is not None and nearest <= _strength(m)):
            cleared[key] = m
        else:
            standing[key] = m
    return standing, cleared


def _strength(match: Match) -> tuple[int, bool]:
    return (match.distance, bool(match.query_variant))
