"""Decode untrusted image bytes safely into pixel arrays, no larger than the hash needs.

Limits are checked on the header, before any pixel is decoded.  Large JPEGs are
decoded in the DCT domain at 1/2, 1/4 or 1/8 scale (each output pixel is the
average of a block), and other formats are box-reduced after decoding, by a
factor the caller chooses; the caller is told the factor so it can account for
it.  Pixels are hashed as stored: EXIF orientation is not applied.
"""

from __future__ import annotations

import io
import re
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image, UnidentifiedImageError

from childshield.media.errors import CorruptImage, EmptyFile, ImageTooLarge, MediaError, NotAnImage
from childshield.media.formats import register_decoders, sniff

DEFAULT_MAX_PIXELS = 100_000_000
DEFAULT_MAX_FRAMES = 1000

FactorChooser = Callable[[int, int], int]
"""Given a picture's width and height, the largest block size its hash tolerates (1: full size)."""

try:  # optional C decoder of JPEG block averages (same output as libjpeg at 1/8, faster)
    from childshield.media import _jpegdc  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - installs without a compiler
    _jpegdc = None

_DRAFT_SCALES = (8, 4, 2)
_UINT8_MODES = frozenset({"L", "RGB", "RGBA"})


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_frames: int = DEFAULT_MAX_FRAMES

    def __post_init__(self) -> None:
        if self.max_pixels < 1 or self.max_frames < 1:
            raise ValueError("limits must be positive")


@dataclass(frozen=True, slots=True)
class Picture:
    """One decoded picture (a frame) and what it stands for.

    ``pixels`` is (rows, cols) gray or (rows, cols, 3|4) RGB(A), uint8, or
    (rows, cols) float32 gray on the 0..255 scale for deeper formats.  When
    ``factor`` > 1 each pixel is the average of a ``factor`` x ``factor`` block
    of the stored picture, whose full size is ``width`` x ``height``.
    """

    pixels: npt.NDArray[np.uint8] | npt.NDArray[np.float32]
    width: int
    height: int
    factor: int
    index: int = 0


@dataclass(frozen=True, slots=True)
class DecodedImage:
    format: str
    width: int
    height: int
    mode: str
    frame_count: int
    pictures: tuple[Picture, ...]


def _open(data: bytes, limits: DecodeLimits) -> Image.Image:
    formats = register_decoders()
    try:
        return Image.open(io.BytesIO(data), formats=formats)
    except Image.DecompressionBombError as exc:
        # Pillow's own guard fired first (far over our limit too): report it against ours.
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(found.group(1)) / 1e6:.1f} MP" if found else "too many pixels"
        raise ImageTooLarge(f"image has {size}, over the limit of {limits.max_pixels / 1e6:g} MP") from None
    except UnidentifiedImageError:
        looks_like = sniff(data[:32])
        if looks_like is not None:
            raise CorruptImage(f"damaged {looks_like} header") from None
        raise NotAnImage("not a recognised image format") from None
    except MediaError:
        raise
    except Exception as exc:  # hostile headers raise anything from struct.error to SyntaxError
        raise CorruptImage(f"cannot read image header ({_describe(exc)})") from None


def open_checked(data: bytes, limits: DecodeLimits) -> Image.Image:
    """The image's header read and its size checked against ``limits`` (nothing decoded yet)."""
    image = _open(data, limits)
    _check_size(image.width, image.height, limits)
    return image


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def _gif_frame_extents(data: bytes) -> list[tuple[int, int]]:
    """(right, bottom) edge of every GIF frame, read from the image descriptors without decoding."""
    out: list[tuple[int, int]] = []
    if len(data) < 13:
        return out
    pos = 13
    flags = data[10]
    if flags & 0x80:  # global colour table
        pos += 3 << ((flags & 7) + 1)
    n = len(data)

    def skip_blocks(i: int) -> int:
        while i < n:
            size = data[i]
            i += 1 + size
            if size == 0:
                break
        return i

    while pos < n:
        kind = data[pos]
        if kind == 0x3B:  # trailer
            break
        if kind == 0x21:  # extension: label, then data sub-blocks
            pos = skip_blocks(pos + 2)
        elif kind == 0x2C and pos + 10 <= n:
            left, top, w, h, f = struct.unpack_from("<HHHHB", data, pos + 1)
            out.append((left + w, top + h))
            pos += 10
            if f & 0x80:  # local colour table
                pos += 3 << ((f & 7) + 1)
            pos = skip_blocks(pos + 1)  # LZW minimum code size, then the data
        else:
            break
    return out


def _check_size(width: int, height: int, limits: DecodeLimits) -> None:
    if width <= 0 or height <= 0:
        raise CorruptImage(f"invalid dimensions {width}x{height}")
    if width * height > limits.max_pixels:
        raise ImageTooLarge(
            f"image is {width}x{height} ({width * height / 1e6:.1f} MP), over the limit of "
            f"{limits.max_pixels / 1e6:g} MP"
        )


def _draft_scale(image: Image.Image, wanted: int) -> int:
    """Ask the JPEG decoder for a DCT-domain reduction; returns the scale it will deliver."""
    scale = next((s for s in _DRAFT_SCALES if s <= wanted), 1)
    if scale == 1:
        return 1
    width, height = image.size
    mode = "L" if image.mode in ("RGB", "L") else image.mode  # RGB JPEGs: decode only the Y channel
    image.draft(mode, (width // scale, height // scale))
    got = image.size
    for s in (scale, *_DRAFT_SCALES, 1):
        if got == (-(-width // s), -(-height // s)):
            return s
    raise CorruptImage(f"decoder returned {got[0]}x{got[1]} for a {width}x{height} image")


def _gray16_to_float(image: Image.Image) -> npt.NDArray[np.float32]:
    arr = np.asarray(image)
    if arr.dtype.kind == "f":
        arr = np.nan_to_num(arr.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        top = float(arr.max()) if arr.size else 0.0
        scaled = arr * 255.0 if top <= 1.0 else arr
        return np.clip(scaled, 0, 255).astype(np.float32)
    arr = arr.astype(np.float64)
    top = float(arr.max()) if arr.size else 0.0
    if top <= 255:
        return arr.astype(np.float32)
    if top <= 65535 and float(arr.min()) >= 0:
        return (arr / 257.0).astype(np.float32)  # 16-bit to the 8-bit scale
    low = float(arr.min())
    return ((arr - low) * (255.0 / (top - low))).astype(np.float32)


def _normalise(image: Image.Image) -> Image.Image | npt.NDArray[np.float32]:
    """Bring any mode to L, RGB or RGBA (8-bit), or a float gray plane for deeper data."""
    mode = image.mode
    if mode in _UINT8_MODES:
        return image
    if mode in ("I", "F") or mode.startswith("I;16"):
        return _gray16_to_float(image)
    if mode in ("1", "LA", "La"):
        return image.convert("L")
    if mode == "RGBX":
        return image.convert("RGB")
    # P, PA, CMYK, YCbCr, LAB, HSV, RGBa: let Pillow map them to colour.
    return image.convert("RGBA" if mode in ("PA", "RGBa") else "RGB")


def _block_mean(plane: npt.NDArray[np.float32], factor: int) -> npt.NDArray[np.float32]:
    rows, cols = plane.shape
    r_edges = np.arange(0, rows, factor)
    c_edges = np.arange(0, cols, factor)
    sums = np.add.reduceat(np.add.reduceat(plane.astype(np.float64), r_edges, axis=0), c_edges, axis=1)
    r_count = np.diff(np.append(r_edges, rows))[:, None]
    c_count = np.diff(np.append(c_edges, cols))[None, :]
    out: npt.NDArray[np.float32] = (sums / (r_count * c_count)).astype(np.float32)
    return out


def _jpeg_block_means(data: bytes, width: int, height: int, wanted: int) -> Picture | None:
    """Luma of 8x8 block averages straight from the DC coefficients, or None to use Pillow."""
    if _jpegdc is None:
        return None
    try:
        raw, w, h, cols, rows = _jpegdc.dc_luma(data)
    except ValueError:  # not a plain baseline JPEG, or damaged: Pillow decodes or reports it
        return None
    if (w, h) != (width, height):
        return None
    plane = np.frombuffer(raw, dtype=np.uint8).reshape(rows, cols)
    extra = wanted // 8
    if extra > 1:
        reduced = _block_mean(plane.astype(np.float32), extra)
        return Picture(reduced, width, height, 8 * extra)
    return Picture(plane, width, height, 8)


def _picture(
    image: Image.Image, fmt: str, index: int, choose_factor: FactorChooser | None, data: bytes
) -> Picture:
    width, height = image.size
    wanted = max(1, choose_factor(width, height)) if choose_factor else 1
    if fmt in ("JPEG", "MPO") and index == 0 and wanted >= 8 and image.mode in ("RGB", "L"):
        fast = _jpeg_block_means(data, width, height, wanted)
        if fast is not None:
            return fast
    drafted = 1
    if fmt in ("JPEG", "MPO") and index == 0 and wanted > 1:
        drafted = _draft_scale(image, wanted)
    image.load()
    normal = _normalise(image)
    extra = wanted // drafted
    if isinstance(normal, np.ndarray):
        plane = _block_mean(normal, extra) if extra > 1 else normal
        return Picture(plane, width, height, drafted * extra, index)
    if extra > 1:
        normal = normal.reduce(extra)
    pixels = np.asarray(normal, dtype=np.uint8)
    return Picture(pixels, width, height, drafted * (extra if extra > 1 else 1), index)


def decode(
    data: bytes,
    *,
    limits: DecodeLimits | None = None,
    choose_factor: FactorChooser | None = None,
    frames: bool = False,
) -> DecodedImage:
    """Decode image bytes: the first picture, or every frame with ``frames=True``.

    Raises a :class:`~childshield.media.errors.MediaError` subclass with a short,
    clear message for anything that cannot be decoded.
    """
    limits = limits or DecodeLimits()
    if not data:
        raise EmptyFile("empty file (0 bytes)")
    if limits.max_pixels > (Image.MAX_IMAGE_PIXELS or 0) * 2 and Image.MAX_IMAGE_PIXELS is not None:
        # Our own limit is checked below; Pillow's built-in guard must not undercut it.
        Image.MAX_IMAGE_PIXELS = limits.max_pixels
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        image = _open(data, limits)
        try:
            fmt = str(image.format)
            width, height = image.size
            mode = image.mode
            _check_size(width, height, limits)
            try:
                count = int(getattr(image, "n_frames", 1)) if frames else 1
                pictures: list[Picture] = []
                extents = _gif_frame_extents(data) if fmt == "GIF" and count > 1 else []
                for index in range(min(count, limits.max_frames)):
                    if index:
                        if index < len(extents):  # Pillow allocates a GIF frame's canvas while seeking
                            _check_size(max(width, extents[index][0]), max(height, extents[index][1]), limits)
                        image.seek(index)
                        _check_size(*image.size, limits)
                    pictures.append(_picture(image, fmt, index, choose_factor, data))
            except MediaError:
                raise
            except MemoryError:
                raise ImageTooLarge("out of memory while decoding") from None
            except Exception as exc:
                raise CorruptImage(f"truncated or corrupt image data ({_describe(exc)})") from None
            return DecodedImage(fmt, width, height, mode, count, tuple(pictures))
        finally:
            image.close()
