"""Decode untrusted video with PyAV (FFmpeg) and pick the frames to hash.

Frames are sampled at ``rate`` per second (default 1, vPDQ's convention: the first frame at or after
each whole step) plus **scene changes**: a frame whose 32x32 gray thumbnail differs from the previous
decoded frame's by more than ``scene_threshold`` (mean absolute difference, 0..1) is taken as well, at
least ``scene_gap`` seconds after the last frame taken.  Each picture handed on is reduced to at most
``max_side`` pixels on its longer side (PDQ looks at 64x64 anyway; hashes differ by a few bits at most).

Limits are checked on the stream's header before any frame is decoded (pixels per frame), and while
decoding (duration, frames decoded, frames taken, wall time): a file over a limit is refused with a clear
error, never half-hashed in silence.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from childshield.media.decode import Picture
from childshield.media.errors import CorruptImage, ImageTooLarge, MediaError, NotAnImage

IMAGE_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"avif",
                          b"avis", b"avio", b"jpeg", b"jpgs"})  # fmt: skip
"""ISO-BMFF brands of still images (HEIF, AVIF): those go to the image decoder."""

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mov", ".qt", ".mkv", ".webm", ".avi", ".3gp", ".3g2", ".ts", ".m2ts", ".mts",
     ".flv", ".mpg", ".mpeg", ".wmv", ".asf", ".ogv"}
)  # fmt: skip


class VideoTooLong(MediaError):
    """Longer, or with more frames, than the configured limits."""


@dataclass(frozen=True, slots=True)
class VideoLimits:
    max_pixels: int = 8192 * 8192
    """Per frame, checked on the header before decoding."""
    max_seconds: float = 6 * 3600.0
    max_decoded_frames: int = 2_000_000
    max_samples: int = 50_000
    max_wall_seconds: float = 3600.0


@dataclass(frozen=True, slots=True)
class Sampling:
    rate: float = 1.0
    """Frames per second of video taken at regular steps (0: only the first frame and scene changes)."""
    scene_threshold: float = 0.12
    """Mean absolute difference of consecutive 32x32 gray thumbnails (0..1) counted as a scene change
    (above 1: none)."""
    scene_gap: float = 0.25
    """Seconds after the last frame taken before a scene change is taken too."""
    max_side: int = 512


@dataclass(frozen=True, slots=True)
class VideoFrame:
    timestamp: float
    """Seconds from the start of the stream."""
    number: int
    """The frame's number among the decoded frames (0-based)."""
    picture: Picture
    scene_change: bool = False


@dataclass(slots=True)
class VideoInfo:
    """What the decoder found (filled in while frames are sampled)."""

    container: str = ""
    codec: str = ""
    width: int = 0
    height: int = 0
    duration: float | None = None
    fps: float | None = None
    decoded: int = 0
    damaged: str = ""
    """Why decoding stopped early (a damaged or truncated file); the frames before it were kept."""


def is_video(head: bytes) -> bool:
    """Whether the first bytes look like a video container (MP4/MOV/3GP, Matroska/WebM, AVI, MPEG-TS,
    FLV, MPEG-PS, ASF/WMV, Ogg)."""
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return head[8:12] not in IMAGE_BRANDS
    if len(head) >= 8 and head[4:8] in (b"moov", b"mdat", b"wide", b"free"):  # old QuickTime
        return True
    if head[:4] == b"\x1a\x45\xdf\xa3":  # EBML: Matroska, WebM
        return True
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return True
    if head[:3] == b"FLV" or head[:4] == b"\x00\x00\x01\xba":  # FLV, MPEG program stream
        return True
    if head[:4] == b"OggS":
        return b"theora" in head[:200]  # Ogg video, not Ogg audio
    if head[:16] == bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c"):  # ASF
        return True
    return len(head) >= 377 and head[0] == 0x47 and head[188] == 0x47 and head[376] == 0x47  # MPEG-TS


def has_video_extension(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def _open(source: bytes | str | os.PathLike[str]):  # type: ignore[no-untyped-def]  # noqa: ANN202
    import av

    try:
        target = io.BytesIO(source) if isinstance(source, bytes) else os.fspath(source)
        return av.open(target, mode="r", metadata_errors="ignore")
    except av.error.InvalidDataError:
        raise NotAnImage("not a readable video (no container format recognised)") from None
    except av.error.FFmpegError as exc:
        raise CorruptImage(f"cannot open the video: {exc}") from None


class FramePicker:
    """Which decoded frames to hash: the first, then one at each step of ``1 / rate`` seconds, and scene
    changes in between (files and live streams alike)."""

    def __init__(self, sampling: Sampling) -> None:
        self.sampling = sampling
        self.step = 1.0 / sampling.rate if sampling.rate > 0 else None
        self.next_at = 0.0
        self.last_taken: float | None = None
        self.previous: npt.NDArray[np.float32] | None = None

    def pick(self, frame, t: float) -> bool | None:  # type: ignore[no-untyped-def]  # noqa: ANN001
        """None to skip the frame; else whether it is taken as a scene change (not at a regular step)."""
        sampling = self.sampling
        thumb = _thumb(frame) if sampling.scene_threshold <= 1 else None
        scene = (
            self.previous is not None
            and thumb is not None
            and float(np.abs(thumb - self.previous).mean()) / 255.0 > sampling.scene_threshold
            and (self.last_taken is None or t - self.last_taken >= sampling.scene_gap)
        )
        self.previous = thumb
        regular = self.last_taken is None or (self.step is not None and t + 1e-6 >= self.next_at)
        if not (regular or scene):
            return None
        if regular and self.step is not None:
            while self.next_at <= t + 1e-6:
                self.next_at += self.step
        self.last_taken = t
        return bool(scene and not regular)


def _thumb(frame) -> npt.NDArray[np.float32]:  # type: ignore[no-untyped-def]  # noqa: ANN001
    small = frame.reformat(width=32, height=32, format="gray", interpolation="FAST_BILINEAR")
    out: npt.NDArray[np.float32] = np.asarray(small.to_ndarray(), dtype=np.float32)
    return out


def frame_picture(frame, max_side: int, number: int) -> Picture:  # type: ignore[no-untyped-def]  # noqa: ANN001
    width, height = frame.width, frame.height
    scale = min(1.0, max_side / max(width, height))
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    rgb = frame.reformat(width=w, height=h, format="rgb24", interpolation="AREA").to_ndarray()
    return Picture(np.ascontiguousarray(rgb), w, h, 1, number)


def sample_frames(
    source: bytes | str | os.PathLike[str],
    sampling: Sampling | None = None,
    limits: VideoLimits | None = None,
    info: VideoInfo | None = None,
) -> Iterator[VideoFrame]:
    """The frames to hash, in order.  Raises ``MediaError`` subclasses for files that cannot be had;
    ``info`` is filled in with the stream's description, and with why decoding stopped early if it did
    (a truncated file keeps the frames before the damage)."""
    import av

    sampling, limits = sampling or Sampling(), limits or VideoLimits()
    started = time.monotonic()
    with _open(source) as container:
        if not container.streams.video:
            raise NotAnImage("the file has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        ctx = stream.codec_context
        width, height = int(ctx.width or 0), int(ctx.height or 0)
        if width * height > limits.max_pixels:
            raise ImageTooLarge(
                f"video frames of {width}x{height} exceed the limit of {limits.max_pixels} pixels"
            )
        duration = float(container.duration) / av.time_base if container.duration else None
        if duration is not None and duration > limits.max_seconds:
            raise VideoTooLong(f"the video is {duration:.0f} s long; the limit is {limits.max_seconds:.0f} s")
        rate = float(stream.average_rate) if stream.average_rate else None
        info = info if info is not None else VideoInfo()
        info.container, info.codec, info.width, info.height = container.format.name, ctx.name, width, height
        info.duration, info.fps = duration, rate
        picker = FramePicker(sampling)
        taken = decoded = 0
        start_time: float | None = None
        try:
            for frame in container.decode(stream):
                decoded += 1
                info.decoded = decoded
                if decoded > limits.max_decoded_frames:
                    raise VideoTooLong(f"more than {limits.max_decoded_frames} frames")
                if decoded % 64 == 0 and time.monotonic() - started > limits.max_wall_seconds:
                    raise VideoTooLong(f"decoding took longer than {limits.max_wall_seconds:.0f} s")
                if frame.width * frame.height > limits.max_pixels:
                    raise ImageTooLarge(f"a frame of {frame.width}x{frame.height} exceeds the limit")
                t = frame.time
                if t is None:
                    t = (decoded - 1) / (rate or 25.0)
                if start_time is None:
                    start_time = t
                t = max(0.0, t - start_time)
                if t > limits.max_seconds:
                    raise VideoTooLong(f"the video runs past {limits.max_seconds:.0f} s")
                picked = picker.pick(frame, t)
                if picked is None:
                    continue
                taken += 1
                if taken > limits.max_samples:
                    raise VideoTooLong(f"more than {limits.max_samples} frames to hash")
                yield VideoFrame(t, decoded - 1, frame_picture(frame, sampling.max_side, decoded - 1), picked)
        except av.error.FFmpegError as exc:
            if taken == 0:
                raise CorruptImage(f"the video cannot be decoded: {exc}") from None
            info.damaged = f"decoding stopped after {decoded} frames: {exc}"
        if taken == 0:
            raise CorruptImage("the video has no decodable frame")
