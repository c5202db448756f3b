"""Per-bank policy for matching edited copies (see docs/matching-quality.md)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from childshield.banks.errors import InvalidBankSetting


@dataclass(frozen=True, slots=True)
class Policy:
    query_variants: bool = True
    """Match the query's own variants (turned back, borders trimmed) against this bank."""
    bank_variants: bool = True
    """``bank add`` stores hashes of standard edits (crops, small rotations) of each item."""
    variant_threshold: int = 31
    """PDQ distance for matches through any variant (never looser than the bank's PDQ threshold)."""

    @classmethod
    def of(cls, stored: Mapping[str, Any] | None) -> Policy:
        """The policy stored on a bank (missing keys take the defaults)."""
        return cls(**validate_policy(stored or {}))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def validate_policy(values: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key in ("query_variants", "bank_variants"):
            if not isinstance(value, bool):
                raise InvalidBankSetting(f"{key} must be true or false, got {value!r}")
        elif key == "variant_threshold":
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 256:
                raise InvalidBankSetting(f"variant_threshold must be an integer from 0 to 256, got {value!r}")
        else:
            raise InvalidBankSetting(
                f"unknown policy setting {key!r} (known: query_variants, bank_variants, variant_threshold)"
            )
        out[key] = value
    return out
