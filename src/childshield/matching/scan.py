"""Scan media: hash it and match every signal against the banks in one pass."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from childshield.hashing.result import HashOutcome, HashResult
from childshield.hashing.service import HashOptions, first_picture, hash_bytes, read_file
from childshield.matching.allowlist import allow_listed
from childshield.matching.matcher import Match, Matcher, MatchResult
from childshield.matching.second_check import PictureSource, second_check
from childshield.matching.video import VideoMatch, match_video
from childshield.media.decode import Picture
from childshield.media.errors import MediaError


@dataclass(frozen=True, slots=True)
class ScanResult:
    path: str | None
    hashes: HashResult | None
    matches: tuple[Match, ...]
    suppressed: tuple[Match, ...] = ()
    error: str | None = None
    video: tuple[VideoMatch, ...] = ()
    """For a video: per match, what matched and when (frame times)."""
    near: tuple[VideoMatch, ...] = ()
    """For a video: banked videos with frames in common that reach neither share (not matches)."""

    @property
    def matched(self) -> bool:
        return bool(self.matches)


def match_hashes(matcher: Matcher, result: HashResult, picture: PictureSource | None = None) -> MatchResult:
    """Every signal of a hashed file (each frame's PDQ and its query-side variants too) against the banks;
    each (bank, item) reported once, at its smallest distance (the plain hash first on a tie).

    With ``picture`` (the file's first picture, on demand), a file that matched nothing but came near items
    of banks built from media goes through the second check (``matching.second_check``)."""
    found: dict[tuple[str, int], Match] = {}
    suppressed: dict[tuple[str, int], Match] = {}
    allowed: list[Match] = []
    queries: list[tuple[str, str, int | None]] = [
        ("md5", result.md5, None),
        ("sha1", result.sha1, None),
        ("sha256", result.sha256, None),
    ]
    names = ["", "", ""]
    for f in result.frames:
        if f.pdq is None:
            continue
        queries.append(("pdq", f.pdq, f.pdq_quality))
        names.append("")
        for name, value in (f.pdq_variants or {}).items():
            queries.append(("pdq", value, f.pdq_quality))
            names.append(name)
    notes = []
    for one in matcher.match_many(queries, query_variants=names):
        # what a signal's allow-list match suppressed is weighed again below, for the whole file
        for m in (*one.matches, *one.suppressed):
            key = (m.bank, m.item_id)
            if key not in found or _rank(m) < _rank(found[key]):
                found[key] = m
        allowed += one.allowed_by
        if one.note and one.note not in notes:
            notes.append(one.note)
    if not found and picture is not None and result.frames and result.frames[0].pdq is not None:
        # The plain hash only: the gate search costs about 60x a normal one (see matching.second_check),
        # and the edits it is for (overlays, larger crops) keep the picture's orientation.
        for m in second_check(matcher, [("", result.frames[0].pdq)], picture):
            found[(m.bank, m.item_id)] = m
    if allowed:  # weighed for the whole file: an entry clears only the kinds of match it was made for
        found, suppressed = allow_listed(found, allowed)
    return MatchResult(
        tuple(found.values()), tuple(suppressed.values()), tuple(allowed), "; ".join(notes) or None
    )


def _rank(match: Match) -> tuple[int, int, int]:
    return (match.distance, bool(match.variant), bool(match.query_variant))


def scan_outcome(matcher: Matcher, outcome: HashOutcome, options: HashOptions | None = None) -> ScanResult:
    """Match a hashed file; the second check, when it needs the picture, reads the file again."""
    if outcome.result is None:
        return ScanResult(outcome.path, None, (), error=outcome.error)
    opts = options or HashOptions()

    def picture() -> Picture | None:
        try:
            return first_picture(read_file(outcome.path, opts.max_bytes), opts)
        except (MediaError, OSError):  # changed or gone since it was hashed: no second check
            return None

    if outcome.result.is_video:
        return _video_scan(matcher, outcome.result, outcome.path)
    matched = match_hashes(matcher, outcome.result, picture)
    return ScanResult(outcome.path, outcome.result, matched.matches, matched.suppressed)


def _video_scan(matcher: Matcher, result: HashResult, path: str | None) -> ScanResult:
    found = match_video(matcher, result)
    return ScanResult(
        path, result, found.result.matches, found.result.suppressed, video=found.details, near=found.near
    )


def scan_bytes(matcher: Matcher, data: bytes, options: HashOptions | None = None) -> ScanResult:
    """Hash bytes and match them.  Raises ``MediaError`` when they cannot be hashed."""
    opts = options or HashOptions(variants=matcher.wants_query_variants)
    return scan_hashed(matcher, hash_bytes(data, opts), data, opts)


def scan_hashed(matcher: Matcher, result: HashResult, data: bytes, opts: HashOptions) -> ScanResult:
    """Match what ``hash_bytes`` made of ``data`` (which the second check may decode again): hashing can
    then happen outside whatever guards the matcher (a long video must not hold it)."""
    if result.is_video:
        return _video_scan(matcher, result, None)
    matched = match_hashes(matcher, result, lambda: first_picture(data, opts))
    return ScanResult(None, result, matched.matches, matched.suppressed)


def scan_outcomes(
    matcher: Matcher, outcomes: Iterable[HashOutcome], options: HashOptions | None = None
) -> Iterator[ScanResult]:
    for outcome in outcomes:
        yield scan_outcome(matcher, outcome, options)
