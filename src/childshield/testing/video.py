"""Benign test videos: frames made from generated pictures, encoded with PyAV (FFmpeg)."""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from childshield.testing.corpus import generated_photo

Frame = npt.NDArray[np.uint8]


def scene(seed: int, width: int = 320, height: int = 240) -> Frame:
    return generated_photo(seed, width, height)


def moving(picture: Frame, frames: int, *, drift: int = 1) -> list[Frame]:
    """The picture over ``frames`` frames, panning slowly (real video changes a little every frame)."""
    out = []
    for i in range(frames):
        out.append(np.roll(picture, (i * drift) // 4, axis=1))
    return out


def encode_video(
    frames: Iterable[Frame],
    *,
    fps: int = 10,
    codec: str = "libx264",
    container: str = "mp4",
    size: tuple[int, int] | None = None,
    options: dict[str, str] | None = None,
) -> bytes:
    """Encode RGB frames; ``size`` (width, height) rescales them on the way (an edited copy)."""
    import av

    buffer = io.BytesIO()
    frames = iter(frames)
    first = next(frames)
    height, width = first.shape[:2]
    out_w, out_h = size or (width, height)
    with av.open(buffer, "w", format=container) as out:
        stream = out.add_stream(codec, rate=fps, options=options or {})
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height = out_w - out_w % 2, out_h - out_h % 2
        stream.pix_fmt = {"gif": "pal8", "mjpeg": "yuvj420p"}.get(codec, "yuv420p")
        for pixels in (first, *frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
            if (out_w, out_h) != (width, height) or stream.pix_fmt != "rgb24":
                frame = frame.reformat(width=stream.width, height=stream.height, format=stream.pix_fmt)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buffer.getvalue()


def clip(scenes: Sequence[Frame], seconds_each: float, fps: int = 10) -> list[Frame]:
    """Scenes one after the other, each shown ``seconds_each`` seconds (slowly panning)."""
    out: list[Frame] = []
    for picture in scenes:
        out += moving(picture, round(seconds_each * fps))
    return out


def retimed(frames: Sequence[Frame], fps: int, new_fps: int) -> list[Frame]:
    """The same motion at another frame rate (frames repeated or dropped)."""
    count = round(len(frames) * new_fps / fps)
    return [frames[min(len(frames) - 1, i * fps // new_fps)] for i in range(count)]


def letterbox(frames: Iterable[Frame], bar: int) -> list[Frame]:
    """Black bars above and below (a copy fitted to a wider screen)."""
    return [np.pad(f, ((bar, bar), (0, 0), (0, 0))) for f in frames]


def crop(frames: Iterable[Frame], fraction: float) -> list[Frame]:
    out = []
    for f in frames:
        h, w = f.shape[:2]
        dy, dx = int(h * fraction / 2), int(w * fraction / 2)
        out.append(np.ascontiguousarray(f[dy : h - dy, dx : w - dx]))
    return out
