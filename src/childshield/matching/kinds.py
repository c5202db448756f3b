"""Kinds of match: what a review rejection rejected, so that its allow-list entry clears only that kind.

A reviewer who rejects an item rejects the matches it was queued for, each of one *kind*: its signal
type (``pdq``), the query's variant it came through (``flipx``: a mirrored copy), the bank's variant
(``crop6@0.25,0.5``) and the check that decided it (``orb``, the second check; empty when the signal
itself matched).  The allow-list entries made from the rejection carry those kinds as labels
(``rejected:pdq/query_variant=flipx``), which travel with the bank's export and import like any label.

An entry with kinds clears a match only when one of them covers it: the same signal type and check, and
the same variant, or any variant when the rejected match had none (a match through a variant is weaker
than the plain one); and when a file matched the entry itself through one of its own variants (a mirror of
the rejected file), only its matches through that same variant, of a kind rejected plainly.  So rejecting
a mirrored copy never clears a plain match of the original or of a near copy.  An entry without kinds
(an imported allow-list, a rejection made before kinds were recorded) covers every kind, as allow-lists
always did.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from childshield.matching.matcher import Match

PREFIX = "rejected:"
_FIELDS = ("query_variant", "variant", "check")
_SIGNAL = re.compile(r"[a-z0-9_]{1,32}")


@dataclass(frozen=True, slots=True)
class MatchKind:
    signal_type: str
    query_variant: str = ""
    variant: str = ""
    """The bank-side edit (a frame's mark stripped: every frame of a video is the same kind)."""
    check: str = ""

    @classmethod
    def of(cls, signal_type: str, query_variant: str = "", variant: str = "", check: str = "") -> MatchKind:
        return cls(
            signal_type,
            query_variant or "",
            edit_of(variant or ""),
            "" if check in (None, "", signal_type) else check,
        )

    @classmethod
    def of_match(cls, match: Match) -> MatchKind:
        return cls.of(match.signal_type, match.query_variant, match.variant, match.check)

    @classmethod
    def of_record(cls, record: Mapping[str, Any]) -> MatchKind | None:
        """The kind of a decision's stored match (``actions.decisions``); None when it names no signal."""
        signal = record.get("signal_type")
        if not isinstance(signal, str) or not signal:
            return None
        text = {k: record.get(k) for k in _FIELDS}
        return cls.of(signal, *(v if isinstance(v, str) else "" for v in text.values()))

    def label(self) -> str:
        """``rejected:pdq``, ``rejected:pdq/query_variant=flipx``, ``rejected:pdq/check=orb``."""
        parts = [self.signal_type] + [f"{k}={getattr(self, k)}" for k in _FIELDS if getattr(self, k)]
        return PREFIX + "/".join(parts)

    def covers(self, match: Match, through: str = "") -> bool:
        """Whether an allow-list entry that rejected this kind may clear ``match`` of a file that matched
        the entry itself ``through`` one of its own variants (empty: through its plain hash).

        A file matching the entry plainly looks like the rejected file: its matches are of the same kinds.
        A file matching it through its own variant ``v`` (a mirror of the rejected file) corresponds to the
        rejected file's plain matches through ``v``; the other compositions of edits are not followed (an
        allow-list clears only what it is sure of)."""
        other = MatchKind.of_match(match)
        if through:
            if self.query_variant or other.query_variant != through:
                return False
        elif self.query_variant and self.query_variant != other.query_variant:
            return False
        return (
            self.signal_type == other.signal_type
            and self.check == other.check
            and (not self.variant or self.variant == other.variant)
        )

    def describe(self) -> str:
        """In words, for people: ``pdq through the query's flipx``."""
        out = self.signal_type
        if self.query_variant:
            out += f" through the query's {self.query_variant}"
        if self.variant:
            out += f" through the bank's {self.variant}"
        if self.check:
            out += f" by the {self.check} check"
        return out


NOTHING = MatchKind("")
"""What a malformed ``rejected:`` label covers: nothing (an allow-list clears only what it is sure of)."""


def edit_of(variant: str) -> str:
    """A bank variant without a video frame's mark: ``frame@12.000|crop6@0,0.5`` -> ``crop6@0,0.5``."""
    if not variant:
        return ""
    # here, not at the top: banks.entries costs `match` tens of milliseconds of imports at start
    from childshield.banks.entries import EDIT_MARK, FRAME_PREFIX

    if variant.startswith(FRAME_PREFIX):
        return variant.split(EDIT_MARK, 1)[1] if EDIT_MARK in variant else ""
    return variant


def parse(label: str) -> MatchKind | None:
    """The kind a label names; None for a label that is not a ``rejected:`` one."""
    if not label.startswith(PREFIX):
        return None
    signal, *rest = label[len(PREFIX) :].split("/")
    if not _SIGNAL.fullmatch(signal):
        return NOTHING
    values: dict[str, str] = {}
    for part in rest:
        key, sep, value = part.partition("=")
        if not sep or key not in _FIELDS or key in values or not value:
            return NOTHING
        values[key] = value
    return MatchKind.of(signal, **values)


def kinds_of(labels: Iterable[str]) -> tuple[MatchKind, ...] | None:
    """The kinds an allow-list entry's labels name; None when they name none (it covers every kind)."""
    found = tuple(k for k in (parse(label) for label in labels) if k is not None)
    return found or None


def covers(entry: Match, match: Match) -> bool:
    """Whether the allow-list entry ``entry`` (a negative bank's match) may clear ``match``."""
    kinds = kinds_of(entry.labels)
    return kinds is None or any(k.covers(match, entry.query_variant) for k in kinds)
