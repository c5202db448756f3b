"""Hash one image: its bytes' digests and the PDQ of its pictures.

The single code path behind ``childshield.hash_file``, ``hash_bytes``, the
``hash`` command and (later) the API.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from childshield.hashing.result import FrameHash, HashResult
from childshield.media.decode import (
    DEFAULT_MAX_FRAMES,
    DEFAULT_MAX_PIXELS,
    DecodeBudget,
    DecodedImage,
    DecodeLimits,
    Picture,
    decode,
)
from childshield.media.errors import CorruptImage, FileTooLarge, UnreadableFile
from childshield.media.video import Sampling, VideoInfo, VideoLimits, is_video, sample_frames
from childshield.signals import vpdq
from childshield.signals.cryptographic import digests
from childshield.signals.pdq import PdqHash
from childshield.signals.pdq_picture import hash_picture, max_reduction

DEFAULT_MAX_BYTES = 1 << 30


@dataclass(frozen=True, slots=True)
class HashOptions:
    dihedral: bool = False
    """Add the PDQ of the 8 rotations and reflections (derived from the same DCT)."""
    frames: bool = False
    """Hash every frame of animations and multi-page files, not just the first."""
    exact: bool = False
    """Decode images at full size (slow); by default large images are reduced first (see docs/hash.md).
    Video frames are always hashed at their own size, as vPDQ's reference hashes them."""
    variants: bool = False
    """Add query-side PDQ variants (turned back, borders trimmed) for matching edited copies."""
    bank_variants: bool = False
    """Add bank-side PDQ variants (crops, small rotations) to store with a known image."""
    local_features: bool = False
    """Add ORB local features (``signals.orb``) to store with a known image for the second check."""
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_frames: int = DEFAULT_MAX_FRAMES
    max_bytes: int = DEFAULT_MAX_BYTES
    sampling: Sampling = field(default_factory=Sampling)
    """Which frames of a video are hashed (rate, scene changes)."""
    video_limits: VideoLimits = field(default_factory=VideoLimits)
    video_min_quality: int = vpdq.DEFAULT_MIN_QUALITY
    """A video's frames of lower PDQ quality are dropped (the best one is kept if all are lower)."""
    dedupe_distance: int = vpdq.DEFAULT_DEDUPE_DISTANCE
    """A video frame within this many bits of the frame kept before it is dropped (-1: keep all)."""
    budget: DecodeBudget | None = field(default=None, compare=False)
    """The process's decode memory, shared by every decode that gets these options (None: unbounded)."""
    budget_wait: float | None = None
    """Seconds a decode waits for ``budget`` before ``DecodeBusy`` (None: as long as it takes)."""

    @property
    def limits(self) -> DecodeLimits:
        return DecodeLimits(
            max_pixels=self.max_pixels,
            max_frames=self.max_frames,
            budget=self.budget,
            budget_wait=self.budget_wait,
        )


def hash_bytes(data: bytes, options: HashOptions | None = None, *, path: str | None = None) -> HashResult:
    """All signals of an image or a video given as bytes.  Raises ``MediaError`` when it cannot be
    hashed."""
    options = options or HashOptions()
    if is_video(data[:1024]):
        return hash_video(data, options, path=path)
    decoded = _decode(data, options, frames=options.frames)
    frames = []
    for picture in decoded.pictures:
        hex_value, quality, dihedral = hash_picture(picture, dihedral=options.dihedral)
        variants = stored = features = None
        # Variants and ORB are imported only when asked for: no command pays their imports otherwise.
        if options.variants:
            from childshield.signals.pdq_variants import query_variants

            variants = {name: h for name, (h, _) in query_variants(picture).items()}
        if options.bank_variants:
            from childshield.signals.pdq_bank_variants import bank_variants

            stored = bank_variants(picture)
        if options.local_features:
            from childshield.signals import orb

            features = orb.pack(orb.picture_features(picture))
        frames.append(
            FrameHash(
                picture.index,
                picture.width,
                picture.height,
                hex_value,
                quality,
                dihedral,
                variants,
                stored,
                features,
            )
        )
    d = digests(data)
    return HashResult(
        size_bytes=len(data),
        md5=d.md5,
        sha1=d.sha1,
        sha256=d.sha256,
        format=decoded.format,
        width=decoded.width,
        height=decoded.height,
        frames=tuple(frames),
        frame_count=decoded.frame_count,
        path=path,
    )


def hash_video(data: bytes, options: HashOptions | None = None, *, path: str | None = None) -> HashResult:
    """The digests of a video file and the PDQ of its sampled frames (with their timestamps), pruned as
    vPDQ does (low quality and repeated frames dropped) as they come.  The frames kept get query-side
    variants (``variants``: turned back, borders trimmed, e.g. a letterboxed copy) and bank-side ones
    (``bank_variants``: crops, small rotations) when asked for.  Raises ``MediaError``."""
    options = options or HashOptions()
    info = VideoInfo()
    pruner = vpdq.Pruner(min_quality=options.video_min_quality, dedupe_distance=options.dedupe_distance)
    kept: list[FrameHash] = []
    best: tuple[int, str, Picture, float] | None = None  # the best frame under the quality bar, in case
    for vf in sample_frames(data, options.sampling, options.video_limits, info):
        hex_value, quality, _ = hash_picture(vf.picture)
        if hex_value is None:
            continue
        if pruner.accept(vpdq.FrameSignal(hex_value, quality, vf.timestamp, vf.number)):
            kept.append(_video_frame(vf.picture, hex_value, quality, vf.timestamp, options))
        elif not kept and (best is None or quality > best[0]):
            best = (quality, hex_value, vf.picture, vf.timestamp)
    if not kept and best is not None:  # a dark or flat video: its best frame stands for it
        quality, hex_value, picture, timestamp = best
        kept.append(_video_frame(picture, hex_value, quality, timestamp, options))
    if not kept:
        raise CorruptImage("no frame of the video could be hashed")
    d = digests(data)
    return HashResult(
        size_bytes=len(data),
        md5=d.md5,
        sha1=d.sha1,
        sha256=d.sha256,
        format=f"video/{info.codec}",
        width=info.width,
        height=info.height,
        frames=tuple(kept),
        frame_count=len(kept),
        path=path,
        duration=info.duration,
        note=info.note,
    )


def _video_frame(
    picture: Picture, pdq: str, quality: int, timestamp: float, options: HashOptions
) -> FrameHash:
    variants = None
    if options.variants:
        from childshield.signals.pdq_variants import query_variants

        variants = {name: h for name, (h, _) in query_variants(picture).items()}
    stored = None
    if options.bank_variants:  # centred crops only: the edits videos get (zoom, a screen's shape)
        from childshield.signals.pdq_bank_variants import centred_crops

        stored = centred_crops(picture)
    return FrameHash(
        picture.index,
        picture.width,
        picture.height,
        pdq,
        quality,
        pdq_variants=variants,
        pdq_bank_variants=stored,
        timestamp=timestamp,
    )


def _decode(data: bytes, options: HashOptions, *, frames: bool) -> DecodedImage:
    choose = None if options.exact else max_reduction
    return decode(data, limits=options.limits, choose_factor=choose, frames=frames)


def first_picture(data: bytes, options: HashOptions | None = None) -> Picture:
    """The first picture of an image, decoded as for hashing.  Raises ``MediaError``."""
    return _decode(data, options or HashOptions(), frames=False).pictures[0]


def pdq_bytes(data: bytes, options: HashOptions | None = None) -> PdqHash:
    """Only the PDQ of an image's first picture (no digests): the fast path for PDQ-only work."""
    decoded = _decode(data, options or HashOptions(), frames=False)
    hex_value, quality, _ = hash_picture(decoded.pictures[0])
    return PdqHash(hex_value or "0" * 64, quality)


def read_file(
    path: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_BYTES, *, head: int | None = None
) -> bytes:
    """A regular file's bytes (only the first ``head`` bytes when given).

    FIFOs, devices and sockets are refused: reading them could hang or never end.
    """
    name = os.fspath(path)
    try:
        fd = os.open(name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise UnreadableFile(_os_message(exc)) from None
    except ValueError:  # e.g. an embedded NUL byte: no such file can exist
        raise UnreadableFile("invalid path") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise UnreadableFile("is a directory")
        if not stat.S_ISREG(info.st_mode):
            raise UnreadableFile("not a regular file")
        if head is not None:
            return os.read(fd, head)
        if info.st_size > max_bytes:
            raise FileTooLarge(
                f"file is {info.st_size / 1e6:.1f} MB, over the limit of {max_bytes / 1e6:g} MB"
            )
        chunks = []
        remaining = max_bytes + 1
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1 << 24))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        data = b"".join(chunks)
        if len(data) > max_bytes:  # it grew while being read
            raise FileTooLarge(f"file is over the limit of {max_bytes / 1e6:g} MB")
        return data
    except OSError as exc:
        raise UnreadableFile(_os_message(exc)) from None
    finally:
        os.close(fd)


def _os_message(exc: OSError) -> str:
    reason = exc.strerror or type(exc).__name__
    return reason[:1].lower() + reason[1:]


def hash_file(path: str | os.PathLike[str], options: HashOptions | None = None) -> HashResult:
    """All signals of an image file.  Raises ``MediaError`` when it cannot be hashed."""
    options = options or HashOptions()
    data = read_file(path, options.max_bytes)
    return hash_bytes(data, options, path=str(Path(path)))
