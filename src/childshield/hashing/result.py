"""Typed results of hashing a file, and their flat records for output."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class FrameHash:
    """PDQ of one picture of a file (the first, or each frame of an animation)."""

    index: int
    width: int
    height: int
    pdq: str | None
    """64 lowercase hex digits in threatexchange's order; None when a side is under 5 px."""
    pdq_quality: int
    pdq_dihedral: Mapping[str, str] | None = None
    pdq_variants: Mapping[str, str] | None = None
    """Query-side variants (``signals.pdq_variants``): turned back, borders trimmed; when asked for."""
    pdq_bank_variants: Mapping[str, str] | None = None
    """Bank-side variants (``signals.pdq_bank_variants``): crops and small rotations; when asked for."""
    local_features: bytes | None = None
    """Packed ORB features (``signals.orb``) to store with a known image; when asked for."""
    timestamp: float | None = None
    """For a video's frames: seconds from the start."""


@dataclass(frozen=True, slots=True)
class HashResult:
    """Every signal of one image file."""

    size_bytes: int
    md5: str
    sha1: str
    sha256: str
    format: str
    width: int
    height: int
    frames: tuple[FrameHash, ...]
    """The first picture, then (when frames were asked for) every further frame."""
    frame_count: int = 1
    path: str | None = None
    duration: float | None = None
    """For a video: its length in seconds (None for images)."""
    note: str = ""
    """Something the caller should know (a video damaged part way: the frames before it were hashed)."""

    @property
    def is_video(self) -> bool:
        return self.format.startswith("video/")

    @property
    def pdq(self) -> str | None:
        return self.frames[0].pdq

    @property
    def pdq_quality(self) -> int:
        return self.frames[0].pdq_quality

    @property
    def pdq_dihedral(self) -> Mapping[str, str] | None:
        return self.frames[0].pdq_dihedral


@dataclass(frozen=True, slots=True)
class HashOutcome:
    """A file's result or the reason it has none (what the batch and CLI report)."""

    path: str
    result: HashResult | None = None
    error: str | None = None
    size_bytes: int | None = None

    @property
    def ok(self) -> bool:
        return self.result is not None


def records(outcome: HashOutcome, *, frames: bool = False, dihedral: bool = False) -> list[dict[str, Any]]:
    """Flat output records: one per file, or one per frame when ``frames`` is set."""
    if outcome.result is None:
        return [{"path": outcome.path, "size_bytes": outcome.size_bytes, "error": outcome.error}]
    r = outcome.result
    rows: list[dict[str, Any]] = []
    for frame in r.frames if frames else r.frames[:1]:
        row: dict[str, Any] = {
            "path": outcome.path,
            "size_bytes": r.size_bytes,
            "md5": r.md5,
            "sha1": r.sha1,
            "sha256": r.sha256,
            "pdq": frame.pdq,
            "pdq_quality": frame.pdq_quality,
            "width": frame.width,
            "height": frame.height,
            "format": r.format,
        }
        if frames:
            row["frame"] = frame.index
        if frame.timestamp is not None:
            row["timestamp"] = round(frame.timestamp, 3)
        if r.is_video:
            row["frame_count"] = r.frame_count
            row["duration"] = None if r.duration is None else round(r.duration, 3)
            if r.note:
                row["note"] = r.note
        if dihedral:
            row["pdq_dihedral"] = dict(frame.pdq_dihedral) if frame.pdq_dihedral is not None else None
        if frame.pdq_variants is not None:
            row["pdq_variants"] = dict(frame.pdq_variants)
        rows.append(row)
    return rows
