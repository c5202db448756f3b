"""Decode untrusted video with PyAV (FFmpeg) and pick the frames to hash.

Frames are sampled at ``rate`` per second (default 1, vPDQ's convention: the first frame at or after
each whole step) plus **scene changes**: a frame whose 32x32 gray thumbnail differs from the previous
decoded frame's by more than ``scene_threshold`` (mean absolute difference, 0..1) is taken as well, at
least ``scene_gap`` seconds after the last frame taken.  Each picture handed on keeps the frame's own
size, converted to RGB by FFmpeg's scaler as vPDQ's reference converts it: PDQ's own filter then does
the shrinking, and the hash has the reference's bits (a box resize to 512 px first moved them by 7-12
bits on Meta's sample videos, 26 on a square 1080p one: see docs/video.md).  ``max_side`` shrinks
pictures that are only looked at, never hashed (a review still).

Limits are checked on the stream's header before any frame is decoded (pixels per frame), and while
decoding (duration, frames decoded, pixels decoded, frames taken, wall time): a file over a limit is
refused with a clear error, or its frames before the limit are kept and ``VideoInfo.note`` says so, never
half-hashed in silence.

Untrusted bytes reach FFmpeg only as one of the containers ``container_format`` recognises, named to
FFmpeg explicitly (no probing: FFmpeg would otherwise pick its SDP, HLS or concat demuxers, which open
network sockets and other URLs named in the file), and with no protocol allowed for any nested open.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from childshield.media.decode import Picture
from childshield.media.errors import CorruptImage, ImageTooLarge, NotAnImage
from childshield.media.formats import sniff

IMAGE_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"avif",
                          b"avis", b"avio", b"jpeg", b"jpgs"})  # fmt: skip
"""ISO-BMFF brands of still images (HEIF, AVIF): those go to the image decoder."""

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mov", ".qt", ".mkv", ".webm", ".avi", ".3gp", ".3g2", ".ts", ".m2ts", ".mts",
     ".flv", ".mpg", ".mpeg", ".wmv", ".asf", ".ogv"}
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class VideoLimits:
    max_pixels: int = 8192 * 8192
    """Per frame, checked on the header before decoding."""
    max_seconds: float = 6 * 3600.0
    max_decoded_frames: int = 2_000_000
    max_samples: int = 50_000
    max_wall_seconds: float = 3600.0
    max_decoded_pixels: int = 4_000_000_000
    """Pixels of all the frames decoded, summed: the decoding work one video may cost, whatever its frame
    size (about 64 s of 1080p at 30 fps, 7 min of 640x480, 60 frames of 8192x8192)."""
    decoder_threads: int = 2
    """Threads FFmpeg decodes one video with (0: one per core): one upload never takes every core."""


@dataclass(frozen=True, slots=True)
class Sampling:
    rate: float = 1.0
    """Frames per second of video taken at regular steps (0: only the first frame and scene changes)."""
    scene_threshold: float = 0.12
    """Mean absolute difference of consecutive 32x32 gray thumbnails (0..1) counted as a scene change
    (above 1: none)."""
    scene_gap: float = 0.25
    """Seconds after the last frame taken before a scene change is taken too."""
    max_side: int | None = None
    """Longest side of the pictures handed on; None (for hashing): the frame's own size."""


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
    errors: int = 0
    """Packets that would not decode (skipped, as players do)."""
    note: str = ""
    """Why not all of the video was hashed (damage, a limit); the frames before it were kept."""


SNIFF_BYTES = 1024
"""How much of the start ``container_format`` looks at."""

NO_PROTOCOLS = "none"
"""FFmpeg's ``protocol_whitelist`` naming no protocol: a demuxer's nested open (a URL named in the file)
is refused, while the bytes themselves come through Python's file object, which needs none."""


def container_format(head: bytes) -> str | None:
    """FFmpeg's demuxer for the container the first bytes (``SNIFF_BYTES``) show: MP4/MOV/3GP (``mov``),
    Matroska/WebM, AVI, MPEG-TS, FLV, MPEG-PS (``mpeg``), ASF/WMV, Ogg video; None for anything else.
    Anything with an image format's signature is an image, whatever bytes follow it (a GIF's palette can
    look like MPEG-TS sync bytes)."""
    if sniff(head[:32]) is not None:
        return None
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return None if head[8:12] in IMAGE_BRANDS else "mov"
    if len(head) >= 8 and head[4:8] in (b"moov", b"mdat", b"wide", b"free"):  # old QuickTime
        return "mov"
    if head[:4] == b"\x1a\x45\xdf\xa3":  # EBML: Matroska, WebM
        return "matroska"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    if head[:3] == b"FLV":
        return "flv"
    if head[:4] == b"\x00\x00\x01\xba":  # MPEG program stream
        return "mpeg"
    if head[:4] == b"OggS":
        return "ogg" if b"theora" in head[:200] else None  # Ogg video, not Ogg audio
    if head[:16] == bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c"):
        return "asf"
    if len(head) > 4 * 188 and all(head[188 * k] == 0x47 for k in range(5)):  # MPEG-TS: 5 sync bytes
        return "mpegts"
    return None


def is_video(head: bytes) -> bool:
    """Whether the first bytes look like a video container we read (``container_format``)."""
    return container_format(head) is not None


def demuxer_options(name: str) -> dict[str, str]:
    """FFmpeg options for opening untrusted bytes with the demuxer ``name``: no protocol for nested
    opens, and (MOV) no external data references followed, whatever FFmpeg's defaults become."""
    options = {"protocol_whitelist": NO_PROTOCOLS}
    if name == "mov":
        options |= {"enable_drefs": "0", "use_absolute_path": "0"}
    return options


def has_video_extension(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


@contextlib.contextmanager
def _open(source: bytes | str | os.PathLike[str]) -> Iterator[Any]:
    """The container, opened with the demuxer our own sniffing names: a path is read through a Python
    file too (FFmpeg never sees a name it could take for a URL or a protocol)."""
    import av

    if isinstance(source, bytes):
        target: io.BufferedIOBase = io.BytesIO(source)
    else:
        try:
            target = open(source, "rb")  # noqa: SIM115 - closed with the container, below
        except OSError as exc:
            raise NotAnImage(f"cannot read the video: {exc.strerror or exc}") from None
    try:
        name = container_format(target.read(SNIFF_BYTES))
        if name is None:
            raise NotAnImage("not a video container childshield reads (MP4/MOV, Matroska/WebM, AVI, "
                             "MPEG-TS, MPEG-PS, FLV, ASF, Ogg)")  # fmt: skip
        target.seek(0)
        container = av.open(
            target, mode="r", format=name, options=demuxer_options(name), metadata_errors="ignore"
        )
    except av.error.InvalidDataError:
        target.close()
        raise NotAnImage("not a readable video (the container cannot be read)") from None
    except av.error.FFmpegError as exc:
        target.close()
        raise CorruptImage(f"cannot open the video as {name}: {exc.strerror or exc}") from None
    except BaseException:
        target.close()
        raise
    try:
        with container:
            yield container
    finally:
        target.close()


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
        if regular and self.step is not None:  # the next whole step after t (no loop: t may be huge)
            self.next_at = (math.floor((t + 1e-6) / self.step) + 1) * self.step
        self.last_taken = t
        return bool(scene and not regular)


class StreamClock:
    """Seconds from the start of a video or a connection, always rising.  A jump back (files joined
    together, an encoder restart, an HLS discontinuity) or forward by more than ``max_gap`` seconds
    continues from the last frame's time: sampling never stalls waiting for time to catch up (a
    slideshow's long pauses, under two minutes, are kept)."""

    def __init__(self, fps: float | None, max_gap: float = 120.0) -> None:
        self.frame = 1.0 / fps if fps and fps > 0 else 1 / 25
        self.max_gap = max_gap
        self.offset: float | None = None
        self.last: float | None = None

    def __call__(self, raw: float | None) -> float:
        if raw is None or not math.isfinite(raw):
            t = 0.0 if self.last is None else self.last + self.frame
            self.last = t
            return t
        if self.offset is None:
            self.offset = -raw
        t = raw + self.offset
        if self.last is not None and (t < self.last - 1e-6 or t > self.last + self.max_gap):
            self.offset += self.last + self.frame - t
            t = self.last + self.frame
        self.last = t
        return t


class PacketFrames:
    """The video frames of a container, packet by packet: a packet that will not decode is skipped and
    counted (as players do) until ``max_errors``; ``stop`` is asked between packets of any stream, so a
    source sending only other streams' packets can still be stopped or found stalled."""

    def __init__(self, container, stream, info: VideoInfo, *, max_errors: int = 200) -> None:  # type: ignore[no-untyped-def]  # noqa: ANN001
        self.container, self.stream, self.info, self.max_errors = container, stream, info, max_errors

    def __call__(self, stop: Callable[[], bool] | None = None) -> Iterator[Any]:
        import av

        for packet in self.container.demux():
            if stop is not None and stop():
                return
            if packet.stream.index != self.stream.index:
                continue
            try:
                frames = packet.decode()
            except av.error.FFmpegError as exc:
                self.info.errors += 1
                if self.info.errors > self.max_errors:
                    raise CorruptImage(f"more than {self.max_errors} damaged packets (last: {exc})") from None
                continue
            yield from frames


# Frames are scaled on the thread that decodes them (``threads=1``): swscale's default is a thread per
# core for every frame, which no decoder thread limit would bound.
def _thumb(frame) -> npt.NDArray[np.float32]:  # type: ignore[no-untyped-def]  # noqa: ANN001
    small = frame.reformat(width=32, height=32, format="gray", interpolation="FAST_BILINEAR", threads=1)
    out: npt.NDArray[np.float32] = np.asarray(small.to_ndarray(), dtype=np.float32)
    return out


def frame_picture(frame, max_side: int | None, number: int) -> Picture:  # type: ignore[no-untyped-def]  # noqa: ANN001
    """The frame as RGB: at its own size (``max_side`` None), as vPDQ's reference hashes it (FFmpeg's
    scaler with its area flag, which at the same size only converts the colours), else shrunk to fit."""
    width, height = frame.width, frame.height
    scale = 1.0 if max_side is None else min(1.0, max_side / max(width, height))
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    rgb = frame.reformat(width=w, height=h, format="rgb24", interpolation="AREA", threads=1).to_ndarray()
    return Picture(np.ascontiguousarray(rgb), w, h, 1, number)


def _over_limit(limits: VideoLimits, t: float, decoded: int, taken: int, wall: float, pixels: int = 0) -> str:
    if t > limits.max_seconds:
        return f"the limit of {limits.max_seconds:.0f} s of video"
    if decoded > limits.max_decoded_frames:
        return f"the limit of {limits.max_decoded_frames} decoded frames"
    if pixels > limits.max_decoded_pixels:
        return f"the limit of {limits.max_decoded_pixels} decoded pixels"
    if taken >= limits.max_samples:
        return f"the limit of {limits.max_samples} frames hashed"
    if wall > limits.max_wall_seconds:
        return f"the limit of {limits.max_wall_seconds:.0f} s of decoding"
    return ""


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
        stream.codec_context.thread_count = max(0, limits.decoder_threads)
        ctx = stream.codec_context
        width, height = int(ctx.width or 0), int(ctx.height or 0)
        if width * height > limits.max_pixels:
            raise ImageTooLarge(
                f"video frames of {width}x{height} exceed the limit of {limits.max_pixels} pixels"
            )
        duration = float(container.duration) / av.time_base if container.duration else None
        rate = float(stream.average_rate) if stream.average_rate else None
        info = info if info is not None else VideoInfo()
        info.container, info.codec, info.width, info.height = container.format.name, ctx.name, width, height
        info.duration, info.fps = duration, rate
        picker = FramePicker(sampling)
        clock = StreamClock(rate)
        taken = decoded = pixels = 0
        frames = PacketFrames(container, stream, info)
        try:
            for frame in frames():
                decoded += 1
                info.decoded = decoded
                if frame.width * frame.height > limits.max_pixels:
                    raise ImageTooLarge(f"a frame of {frame.width}x{frame.height} exceeds the limit")
                pixels += frame.width * frame.height
                t = clock(frame.time)
                stop = _over_limit(limits, t, decoded, taken, time.monotonic() - started, pixels)
                if stop:  # what was hashed so far stands: a limit never hides what came before it
                    info.note = f"stopped at {t:.1f} s: {stop}"
                    break
                picked = picker.pick(frame, t)
                if picked is None:
                    continue
                taken += 1
                yield VideoFrame(t, decoded - 1, frame_picture(frame, sampling.max_side, decoded - 1), picked)
        except (av.error.FFmpegError, CorruptImage) as exc:
            if taken == 0:
                raise CorruptImage(f"the video cannot be decoded: {exc}") from None
            info.note = f"decoding stopped after {decoded} frames: {exc}"
        if info.errors and not info.note:
            info.note = f"{info.errors} damaged packets skipped"
        if taken == 0:
            raise CorruptImage(f"the video has no decodable frame{f' ({info.note})' if info.note else ''}")
