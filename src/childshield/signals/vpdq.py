"""Video signals compatible with vPDQ: a list of (frame PDQ, quality, timestamp), pruned and compared.

* ``prune``: frames of quality under ``min_quality`` (default 50) are dropped, and so is a frame within
  ``dedupe_distance`` bits of the frame kept before it (a still scene hashed again and again).
* The vPDQ text format, one frame per line: ``frame number,quality,64 hex digits,seconds`` (three
  decimals), as written and read by the reference tools.
* The ``threatexchange`` package's vPDQ signal string (``to_compact_json``): a JSON list of
  ``pdq,quality,seconds``, how a whole video travels as one row of a hash list (no frame numbers).
* ``compare``: the share of each side's unique frame hashes that have a match on the other side within
  ``distance`` bits (vPDQ's brute-force comparison; the matcher does the same through the index).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from childshield.errors import Invalid

DEFAULT_MIN_QUALITY = 50
DEFAULT_DEDUPE_DISTANCE = 4
_HEX = re.compile(r"[0-9a-f]{64}")


class VpdqFormatError(Invalid, ValueError):
    """A vPDQ text that cannot be read: the message names the line.

    A ``ValueError`` too, as callers catch it."""


@dataclass(frozen=True, slots=True)
class FrameSignal:
    pdq: str
    quality: int
    timestamp: float
    number: int = 0


def _distance(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


class Pruner:
    """``prune`` one frame at a time (so a frame's picture can be dropped, or used, at once)."""

    def __init__(
        self, *, min_quality: int = DEFAULT_MIN_QUALITY, dedupe_distance: int = DEFAULT_DEDUPE_DISTANCE
    ) -> None:
        self.min_quality, self.dedupe_distance = min_quality, dedupe_distance
        self.last: FrameSignal | None = None

    def accept(self, frame: FrameSignal) -> bool:
        if frame.quality < self.min_quality:
            return False
        if (
            self.last is not None
            and self.dedupe_distance >= 0
            and _distance(self.last.pdq, frame.pdq) <= self.dedupe_distance
        ):
            return False
        self.last = frame
        return True


def prune(
    frames: Iterable[FrameSignal],
    *,
    min_quality: int = DEFAULT_MIN_QUALITY,
    dedupe_distance: int = DEFAULT_DEDUPE_DISTANCE,
) -> list[FrameSignal]:
    pruner = Pruner(min_quality=min_quality, dedupe_distance=dedupe_distance)
    return [f for f in frames if pruner.accept(f)]


def to_text(frames: Iterable[FrameSignal]) -> str:
    return "".join(f"{f.number},{f.quality},{f.pdq},{f.timestamp:.3f}\n" for f in frames)


def from_text(text: str, *, max_frames: int = 1_000_000) -> list[FrameSignal]:
    """Read vPDQ text (blank lines and ``#`` comments skipped)."""
    out: list[FrameSignal] = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 4:
            raise VpdqFormatError(f"line {n}: expected 4 comma-separated fields, got {len(parts)}")
        number, quality, pdq, seconds = parts
        pdq = pdq.lower()
        if not _HEX.fullmatch(pdq):
            raise VpdqFormatError(f"line {n}: the PDQ hash must be 64 hex digits")
        try:
            frame, q, t = int(number), int(quality), float(seconds)
        except ValueError:
            raise VpdqFormatError(f"line {n}: frame number, quality and seconds must be numbers") from None
        if frame < 0 or not 0 <= q <= 100 or not math.isfinite(t) or t < 0:
            raise VpdqFormatError(f"line {n}: out of range (frame >= 0, quality 0..100, seconds >= 0)")
        out.append(FrameSignal(pdq, q, t, frame))
        if len(out) > max_frames:
            raise VpdqFormatError(f"more than {max_frames} frames")
    if not out:
        raise VpdqFormatError("no frames")
    return out


def to_compact_json(frames: Iterable[FrameSignal]) -> str:
    """The ``threatexchange`` package's vPDQ signal string of these frames."""
    return json.dumps([f"{f.pdq},{f.quality},{f.timestamp:.3f}" for f in frames], separators=(",", ":"))


def from_compact_json(text: str, *, max_frames: int = 1_000_000) -> list[FrameSignal]:
    """Frames of a ``threatexchange`` vPDQ signal string, numbered in order (it has no numbers)."""
    try:
        items = json.loads(text)
    except ValueError:
        raise VpdqFormatError("a vPDQ signal is a JSON list of 'pdq,quality,seconds'") from None
    if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
        raise VpdqFormatError("a vPDQ signal is a JSON list of 'pdq,quality,seconds'")
    if len(items) > max_frames:
        raise VpdqFormatError(f"more than {max_frames} frames")
    lines = (f"{n},{q},{h},{t}" for n, (h, q, t) in enumerate(_three(x) for x in items))
    return from_text("\n".join(lines))


def _three(item: str) -> tuple[str, str, str]:
    parts = item.split(",")
    if len(parts) != 3:
        raise VpdqFormatError(f"a vPDQ frame is 'pdq,quality,seconds', got {item[:80]!r}")
    return parts[0], parts[1], parts[2]


@dataclass(frozen=True, slots=True)
class Comparison:
    query_share: float
    """Percent of the query's unique frame hashes with a match in the other video."""
    item_share: float
    """Percent of the other video's unique frame hashes with a match in the query."""


def compare(query: Sequence[FrameSignal], item: Sequence[FrameSignal], distance: int = 31) -> Comparison:
    q = sorted({f.pdq for f in query})
    c = sorted({f.pdq for f in item})
    if not q or not c:
        return Comparison(0.0, 0.0)
    qi = [int(h, 16) for h in q]
    ci = [int(h, 16) for h in c]
    q_hit = sum(any((a ^ b).bit_count() <= distance for b in ci) for a in qi)
    c_hit = sum(any((a ^ b).bit_count() <= distance for a in qi) for b in ci)
    return Comparison(100.0 * q_hit / len(qi), 100.0 * c_hit / len(ci))
