"""Per-bank policy for matching edited copies (see docs/matching-quality.md)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from childshield.banks.errors import InvalidBankSetting

ACTIONS = ("allow", "review", "quarantine", "block")
"""What a match in a bank leads to, weakest first: the strongest of the banks matched is the decision."""


@dataclass(frozen=True, slots=True)
class Policy:
    action: str = "review"
    """What a match in this bank leads to: allow, review (queue it for people), quarantine (hold it,
    queue it), or block (refuse it)."""
    query_variants: bool = True
    """Match the query's own variants (turned back, borders trimmed) against this bank."""
    bank_variants: bool = True
    """``bank add`` stores hashes of standard edits (crops, small rotations) of each item."""
    variant_threshold: int = 31
    """PDQ distance for matches through any variant (never looser than the bank's PDQ threshold)."""
    orb_check: bool = True
    """Second check: ``bank add`` stores ORB local features of each item, and a file whose PDQ comes
    within ``orb_gate`` of an item (but not within the threshold) matches when its features agree."""
    orb_gate: int = 80
    """PDQ distance within which an item is checked with local features (exact search up to 63; beyond,
    nearly all are found)."""
    orb_inliers: int = 12
    """Feature matches that must agree on one transform for the second check to pass."""
    orb_area: int = 8
    """...and the share of the item's picture (percent) they must spread over."""
    orb_agreement: int = 50
    """...and how well (correlation in percent) the file, brought into the item's frame, must look like
    the item outside the matched points' area: unrelated pictures that carry the same overlay (a logo, a
    watermark, a meme frame) agree on many points, but only within the overlay."""
    flood_limit: int = 100
    """Matches of one item within an hour from which a surge counts as a flood (0: never)."""
    flood_factor: int = 10
    """...when it is also this many times the item's usual hourly rate (over the past week)."""
    label_actions: dict[str, str] = field(default_factory=dict)
    """Actions by classification: a match of an entry labelled with a key (``{"A1": "block"}``) leads to
    at least that action (the strongest applies; ``action`` for entries without such a label)."""
    video_query_share: int = 80
    """A video matches a banked video when this percent of its own unique frame hashes match that
    video's frames (101: never by this side)..."""
    video_item_share: int = 80
    """...or when this percent of the banked video's unique frame hashes are matched (a known clip
    inside a longer video).  A frame matching a banked image is a match whatever these say."""
    flood_quarantine: bool = False
    """Dispute a flooding item at once (it stops matching until someone reviews it).  Off by default:
    whoever can upload copies of known material could otherwise switch its entry off."""

    @classmethod
    def of(cls, stored: Mapping[str, Any] | None) -> Policy:
        """The policy stored on a bank (missing keys take the defaults)."""
        return cls(**validate_policy(stored or {}))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_RANGES = {
    "variant_threshold": (0, 256),
    "orb_gate": (0, 128),
    "orb_inliers": (4, 10_000),
    "orb_area": (0, 100),
    "orb_agreement": (-100, 100),
    "flood_limit": (0, 10**9),
    "flood_factor": (1, 10**6),
    "video_query_share": (1, 101),
    "video_item_share": (1, 101),
}


def validate_policy(values: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key in ("query_variants", "bank_variants", "orb_check", "flood_quarantine"):
            if not isinstance(value, bool):
                raise InvalidBankSetting(f"{key} must be true or false, got {value!r}")
        elif key == "action":
            if value not in ACTIONS:
                raise InvalidBankSetting(f"action must be one of {', '.join(ACTIONS)}, got {value!r}")
        elif key == "label_actions":
            if not isinstance(value, Mapping) or len(value) > 100:
                raise InvalidBankSetting('label_actions must map labels to actions, e.g. {"A1": "block"}')
            for label, action in value.items():
                if not isinstance(label, str) or not 0 < len(label) <= 100 or action not in ACTIONS:
                    raise InvalidBankSetting(
                        f"label_actions: {str(label)[:40]!r} -> {str(action)[:40]!r}: "
                        f"actions are {', '.join(ACTIONS)}"
                    )
            value = dict(value)
        elif key in _RANGES:
            low, high = _RANGES[key]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise InvalidBankSetting(f"{key} must be an integer from {low} to {high}, got {value!r}")
        else:
            known = ", ".join(Policy.__dataclass_fields__)
            raise InvalidBankSetting(f"unknown policy setting {key!r} (known: {known})")
        out[key] = value
    return out
