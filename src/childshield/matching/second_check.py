"""The second check: a file that matched nothing, but whose PDQ came near items of banks built from media,
is compared with those items by local features (``signals.orb``).

Why: edits that move PDQ far (a watermark over a fifth of the picture moves it by about 56 bits, a 10%
crop by 60 or more) leave most of the picture's local structure in place.  Verifying only candidates
within a PDQ gate (default 63) keeps the check cheap (it runs for a few files in a thousand, for at most
:data:`MAX_CANDIDATES` items each) and independent: a false match needs both a near PDQ **and** a
geometrically consistent set of feature matches spread over the item's picture.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
from sqlalchemy import select

from childshield.index.pdq_flat import pack_hex
from childshield.matching.matcher import Match, Matcher
from childshield.media.decode import Picture
from childshield.signals import orb
from childshield.store.models import LocalFeatures

MAX_CANDIDATES = 16
"""Items verified per file, nearest in PDQ first (each costs a few milliseconds)."""

PictureSource = Callable[[], "Picture | None"]
"""Gives the scanned file's first picture (decoded again only when a candidate needs checking)."""


@dataclass(frozen=True, slots=True)
class _Candidate:
    item_id: int
    distance: int
    variant: str
    query_variant: str


def second_check(
    matcher: Matcher,
    queries: Sequence[tuple[str, str]],
    picture: PictureSource,
    *,
    exclude: set[int] = frozenset(),  # type: ignore[assignment]
) -> list[Match]:
    """Matches confirmed by local features, for PDQ ``queries`` ((query variant name, hex) of the file's
    first picture) that came within the gate of items not in ``exclude`` (item ids already matched)."""
    if not matcher.index.gates or not queries or not orb.available():
        return []
    candidates = _candidates(matcher, queries, exclude)
    if not candidates:
        return []
    with matcher.db.engine.connect() as connection:
        rows = connection.execute(
            select(LocalFeatures.entry_id, LocalFeatures.data).where(
                LocalFeatures.entry_id.in_([c.item_id for c in candidates]), LocalFeatures.kind == orb.KIND
            )
        )
        stored: dict[int, bytes] = {row[0]: row[1] for row in rows}
    candidates = [c for c in candidates if c.item_id in stored]
    if not candidates:
        return []
    pic = picture()
    if pic is None:
        return []
    plain, mirrored = orb.query_features(pic)
    items = matcher.entry_details([c.item_id for c in candidates])
    found = []
    for c in candidates:
        item = items.get(c.item_id)
        if item is None:
            continue
        policy = matcher.policies.get(item.bank_id)
        if policy is None or not policy.orb_check:
            continue
        try:
            bank_features = orb.unpack(stored[c.item_id])
        except ValueError:
            continue  # damaged row: no match through it (the PDQ matches are unaffected)
        best = max((orb.verify(q, bank_features) for q in (plain, mirrored)), key=lambda v: v.inliers)
        if (
            best.inliers >= policy.orb_inliers
            and 100 * best.area >= policy.orb_area
            and 100 * best.agreement >= policy.orb_agreement
        ):
            found.append(
                replace(
                    item,
                    distance=c.distance,
                    variant=c.variant,
                    query_variant=c.query_variant,
                    check="orb",
                    inliers=best.inliers,
                )
            )
    return found


def _candidates(matcher: Matcher, queries: Sequence[tuple[str, str]], exclude: set[int]) -> list[_Candidate]:
    """The nearest items within their bank's gate, at most MAX_CANDIDATES, each at its smallest distance
    (query variants only for banks that take them)."""
    q, entry_ids, distances = matcher.index.search_gate(pack_hex(value for _, value in queries))
    if not len(q):
        return []
    details = matcher.entry_details(np.unique(entry_ids).tolist())
    best: dict[int, _Candidate] = {}
    for k, entry_id, d in zip(q.tolist(), entry_ids.tolist(), distances.tolist(), strict=True):
        m = details.get(entry_id)
        name = queries[k][0]
        if m is None or m.negative or m.item_id in exclude:
            continue
        if (int(m.signal, 16) ^ int(queries[k][1], 16)).bit_count() != d:
            continue  # a stale index item: the row says otherwise
        if name and m.bank_id not in matcher.query_variant_thresholds:
            continue
        if m.variant and m.bank_id not in matcher.index.variant_thresholds:
            continue
        c = _Candidate(m.item_id, int(d), m.variant, name)
        held = best.get(m.item_id)
        if held is None or (c.distance, bool(c.variant)) < (held.distance, bool(held.variant)):
            best[m.item_id] = c
    return sorted(best.values(), key=lambda c: (c.distance, c.item_id))[:MAX_CANDIDATES]
