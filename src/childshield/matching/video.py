"""Matching a video: its file hashes, and each sampled frame's PDQ through the same index as images.

* The file's MD5/SHA-1/SHA-256 matching a bank entry is a match (the same file).
* A frame matching a banked **image** (or an image's variant) is a match: a known picture shown in a
  video.  Every frame that matched is reported with its time.
* Frames matching a banked **video**'s frames count towards vPDQ's shares: the percent of the query's
  unique frame hashes that match that video, and the percent of that video's unique frame hashes that
  were matched.  It is a match when either reaches the bank's ``video_query_share`` or
  ``video_item_share`` (default 80 each): a copy, an excerpt of a known video, or a known clip inside a
  longer one.  Videos that share a few frames but reach neither are reported as ``near`` (not matches).
* The file's hashes matching a negative bank clear the file; a frame matching one clears that frame.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace

from sqlalchemy import func, select

from childshield.banks.entries import EDIT_MARK, frame_time, frame_variant
from childshield.banks.policy import Policy
from childshield.hashing.result import HashResult
from childshield.matching.allowlist import allow_listed
from childshield.matching.matcher import Match, Matcher, MatchResult
from childshield.store.models import Entry, EntryState, VideoFrame

MAX_HITS = 50
"""Frame hits reported per matched item (the earliest ones)."""


@dataclass(frozen=True, slots=True)
class FrameHit:
    query_time: float
    """Seconds into the scanned video."""
    item_time: float | None
    """Seconds into the banked video; None when the item is an image."""
    distance: int


@dataclass(frozen=True, slots=True)
class VideoMatch:
    match: Match
    """The item's closest match."""
    kind: str
    """``video`` (frames of a banked video), ``image`` (a banked image in a frame), ``file`` (the file)."""
    query_share: float | None = None
    item_share: float | None = None
    hits: tuple[FrameHit, ...] = ()

    @property
    def first_time(self) -> float | None:
        return min((h.query_time for h in self.hits), default=None)

    def as_dict(self) -> dict[str, object]:
        return {
            "bank": self.match.bank,
            "item_id": self.match.item_id,
            "kind": self.kind,
            "query_share": None if self.query_share is None else round(self.query_share, 1),
            "item_share": None if self.item_share is None else round(self.item_share, 1),
            "first_time": self.first_time,
            "hits": [
                {"time": round(h.query_time, 3), "item_time": h.item_time, "distance": h.distance}
                for h in self.hits
            ],
        }


@dataclass(frozen=True, slots=True)
class VideoResult:
    result: MatchResult
    details: tuple[VideoMatch, ...] = ()
    """One per match in ``result.matches``, in the same order."""
    near: tuple[VideoMatch, ...] = ()
    """Banked videos with frames in common that reach neither share."""


@dataclass(frozen=True, slots=True)
class _Link:
    item_id: int
    number: int
    timestamp: float
    edit: str


def _links(matcher: Matcher, entry_ids: Iterable[int]) -> dict[int, list[_Link]]:
    """The videos each PDQ entry is a frame (or a frame's edit) of: one entry can be a frame of many."""
    ids = sorted(set(entry_ids))
    out: dict[int, list[_Link]] = defaultdict(list)
    with matcher.db.session() as session:
        for i in range(0, len(ids), 500):
            rows = session.execute(
                select(
                    VideoFrame.entry_id, VideoFrame.item_id, VideoFrame.number, VideoFrame.timestamp,
                    VideoFrame.variant,
                ).where(VideoFrame.entry_id.in_(ids[i : i + 500]))
            )  # fmt: skip
            for entry_id, item_id, number, seconds, edit in rows:
                out[int(entry_id)].append(_Link(int(item_id), int(number), float(seconds), str(edit)))
    return out


def _frame_counts(matcher: Matcher, items: Iterable[int]) -> dict[int, int]:
    """Frames (not their edits) stored per banked video whose hash is still active."""
    ids = sorted(set(items))
    out: dict[int, int] = {}
    with matcher.db.session() as session:
        for i in range(0, len(ids), 500):
            out.update(
                (int(item), int(count))
                for item, count in session.execute(
                    select(VideoFrame.item_id, func.count())
                    .join(Entry, Entry.id == VideoFrame.entry_id)
                    .where(
                        VideoFrame.item_id.in_(ids[i : i + 500]),
                        VideoFrame.variant == "",
                        Entry.state == EntryState.ACTIVE,
                    )
                    .group_by(VideoFrame.item_id)
                )
            )
    return out


def _as_frame_of(item: Match, frame: Match, link: _Link) -> Match:
    """The match of a banked video through one of its frames: the video's own provenance and labels
    (the frame's hash may be stored under another item), the frame's entry, distance and time."""
    mark = frame_variant(link.timestamp) + (f"{EDIT_MARK}{link.edit}" if link.edit else "")
    return replace(
        item,
        entry_id=frame.entry_id,
        signal_type=frame.signal_type,
        signal=frame.signal,
        distance=frame.distance,
        variant=mark,
        query_variant=frame.query_variant,
    )


def match_video(matcher: Matcher, video: HashResult) -> VideoResult:
    queries: list[tuple[str, str, int | None]] = [
        ("md5", video.md5, None),
        ("sha1", video.sha1, None),
        ("sha256", video.sha256, None),
    ]
    frames = [f for f in video.frames if f.pdq is not None]
    names = ["", "", ""]
    owner: list[int] = []  # the frame each PDQ query is of
    for n, f in enumerate(frames):
        for name, value in (("", f.pdq or ""), *(f.pdq_variants or {}).items()):
            queries.append(("pdq", value, f.pdq_quality))
            names.append(name)
            owner.append(n)
    results = matcher.match_many(queries, query_variants=names)
    # The file itself allow-listed clears its frames' matches (of the kinds its entry names), never a
    # bank's exact digest of these very bytes.  Otherwise a frame whose picture is allow-listed is weighed
    # on its own, not the whole video: its frames are different pictures, and a known one beside an
    # allow-listed title card still counts.
    file_allowed = [m for r in results[:3] for m in r.allowed_by]
    per_frame_found: dict[int, dict[tuple[str, int], Match]] = defaultdict(dict)
    per_frame_allowed: dict[int, list[Match]] = defaultdict(list)
    for n, r in zip(owner, results[3:], strict=True):
        for m in (*r.matches, *r.suppressed):  # by entry: each banked frame of an item counts for shares
            seen_m = per_frame_found[n].get((m.bank, m.entry_id))
            if seen_m is None or m.distance < seen_m.distance:
                per_frame_found[n][(m.bank, m.entry_id)] = m
        per_frame_allowed[n] += (*r.allowed_by, *file_allowed)
    standing: dict[int, tuple[Match, ...]] = {}
    suppressed: list[Match] = []
    for n, found_n in per_frame_found.items():
        if per_frame_allowed[n]:
            kept, gone = allow_listed(found_n, per_frame_allowed[n])
            suppressed += gone.values()
            standing[n] = tuple(kept.values())
        else:
            standing[n] = tuple(found_n.values())
    allowed_by = [m for r in results for m in r.allowed_by]
    best: dict[tuple[str, int], Match] = {}
    kind: dict[tuple[str, int], str] = {}
    hits: dict[tuple[str, int], list[FrameHit]] = defaultdict(list)
    matched_query: dict[tuple[str, int], set[str]] = defaultdict(set)
    matched_item: dict[tuple[str, int], set[float]] = defaultdict(set)
    per_frame: dict[tuple[str, int, int], FrameHit] = {}
    for r in results[:3]:
        for m in r.matches:
            key = (m.bank, m.item_id)
            best[key], kind[key] = m, "file"
    considered = {f.pdq for f in frames if f.pdq_quality >= matcher.min_quality}
    links = _links(matcher, {m.entry_id for ms in standing.values() for m in ms})
    banked = matcher.entry_details({link.item_id for ls in links.values() for link in ls})
    for n, frame_matches in standing.items():
        f = frames[n]
        for found_m in frame_matches:
            through: list[tuple[Match, float | None, int | None]] = []  # (match, item time, frame number)
            item_time = frame_time(found_m.variant)
            if item_time is None:  # an image's own hash (or its edit): a known picture shown in the video
                through.append((found_m, None, None))
            for link in links.get(found_m.entry_id, ()):  # ... and a frame of every video that holds it
                holder = banked.get(link.item_id)
                if holder is not None and holder.bank_id == found_m.bank_id:
                    through.append((_as_frame_of(holder, found_m, link), link.timestamp, link.number))
            if item_time is not None and found_m.entry_id not in links:  # stored before frames were listed
                through.append((found_m, item_time, None))
            for m, at, number in through:
                key = (m.bank, m.item_id)
                if kind.get(key) != "file":
                    kind[key] = "video" if at is not None else "image"
                if key not in best or m.distance < best[key].distance:
                    best[key] = m
                hit = FrameHit(f.timestamp or 0.0, at, m.distance)
                seen = per_frame.get((*key, n))
                if seen is None or hit.distance < seen.distance:  # each query frame once, at its best
                    per_frame[(*key, n)] = hit
                matched_query[key].add(f.pdq or "")
                if at is not None:
                    matched_item[key].add(at if number is None else float(number))
    for (bank, item, _), hit in per_frame.items():
        hits[(bank, item)].append(hit)
    counts = _frame_counts(matcher, [item for (_, item), k in kind.items() if k == "video"])
    matches, details, near = [], [], []
    for key, m in best.items():
        found = tuple(sorted(hits[key], key=lambda h: h.query_time)[:MAX_HITS])
        if kind[key] != "video":
            matches.append(m)
            details.append(VideoMatch(m, kind[key], hits=found))
            continue
        q_share = 100.0 * len(matched_query[key]) / max(1, len(considered))
        i_share = 100.0 * len(matched_item[key]) / max(1, counts.get(m.item_id, 1))
        policy = matcher.policies.get(m.bank_id, Policy())
        one = VideoMatch(m, "video", q_share, min(100.0, i_share), found)
        if q_share >= policy.video_query_share or i_share >= policy.video_item_share:
            matches.append(m)
            details.append(one)
        else:
            near.append(one)
    order = sorted(
        range(len(matches)), key=lambda i: (matches[i].distance, matches[i].bank, matches[i].item_id)
    )
    return VideoResult(
        MatchResult(tuple(matches[i] for i in order), tuple(suppressed), tuple(allowed_by)),
        tuple(details[i] for i in order),
        tuple(near),
    )
