"""Scan media: hash it and match every signal against the banks in one pass."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from childshield.hashing.result import HashOutcome, HashResult
from childshield.hashing.service import HashOptions, hash_bytes
from childshield.matching.matcher import Match, Matcher, MatchResult


@dataclass(frozen=True, slots=True)
class ScanResult:
    path: str | None
    hashes: HashResult | None
    matches: tuple[Match, ...]
    suppressed: tuple[Match, ...] = ()
    error: str | None = None

    @property
    def matched(self) -> bool:
        return bool(self.matches)


def match_hashes(matcher: Matcher, result: HashResult) -> MatchResult:
    """Every signal of a hashed file (each frame's PDQ too) against the banks, duplicates removed."""
    found: dict[tuple[str, int], Match] = {}
    suppressed: dict[tuple[str, int], Match] = {}
    allowed: list[Match] = []
    queries: list[tuple[str, str, int | None]] = [
        ("md5", result.md5, None),
        ("sha1", result.sha1, None),
        ("sha256", result.sha256, None),
    ]
    queries += [("pdq", f.pdq, f.pdq_quality) for f in result.frames if f.pdq is not None]
    notes = []
    for one in matcher.match_many(queries):
        for m in one.matches:
            key = (m.bank, m.entry_id)
            if key not in found or m.distance < found[key].distance:
                found[key] = m
        for m in one.suppressed:
            suppressed[(m.bank, m.entry_id)] = m
        allowed += one.allowed_by
        if one.note:
            notes.append(one.note)
    if allowed:  # an allow-listed signal anywhere in the file clears the file
        suppressed.update(found)
        found = {}
    return MatchResult(
        tuple(found.values()), tuple(suppressed.values()), tuple(allowed), "; ".join(notes) or None
    )


def scan_outcome(matcher: Matcher, outcome: HashOutcome) -> ScanResult:
    if outcome.result is None:
        return ScanResult(outcome.path, None, (), error=outcome.error)
    matched = match_hashes(matcher, outcome.result)
    return ScanResult(outcome.path, outcome.result, matched.matches, matched.suppressed)


def scan_bytes(matcher: Matcher, data: bytes, options: HashOptions | None = None) -> ScanResult:
    """Hash bytes and match them.  Raises ``MediaError`` when they cannot be hashed."""
    result = hash_bytes(data, options)
    matched = match_hashes(matcher, result)
    return ScanResult(None, result, matched.matches, matched.suppressed)


def scan_outcomes(matcher: Matcher, outcomes: Iterable[HashOutcome]) -> Iterator[ScanResult]:
    for outcome in outcomes:
        yield scan_outcome(matcher, outcome)
