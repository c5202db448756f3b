"""Decode untrusted image bytes safely into pixel arrays, no larger than the hash needs.

Limits are checked on the header, before any pixel is decoded.  Large JPEGs are
decoded in the DCT domain at 1/2, 1/4 or 1/8 scale (each output pixel is the
average of a block), and other formats are box-reduced after decoding, by a
factor the caller chooses; the caller is told the factor so it can account for
it.  Pixels are hashed as stored: EXIF orientation is not applied.

Large 8-bit PNGs are decoded a strip of rows at a time and reduced as they go,
so a 100 MP PNG never has its full picture in memory (the result is the same
as reducing the full picture).  Other decodes allocate the full picture; a
:class:`DecodeBudget` bounds how many bytes of them a process has in flight
at once, counted from the header before any pixel is decoded.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import io
import re
import struct
import threading
import time
import warnings
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from PIL import Image, UnidentifiedImageError

from childshield.errors import Busy
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


class DecodeBusy(Busy):
    """The process's decode memory stayed taken for longer than the caller would wait: try again later.

    Not a :class:`MediaError`: nothing is wrong with the file."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DecodeBudget:
    """Bytes of decoded pictures a process may hold at once, shared by all its threads.

    A decode asks for what its header says it will allocate (:func:`decode_cost`) and waits, first come
    first served, until that much is free; one that needs more than the whole budget is refused as too
    large.  Waiting is bounded by the caller's ``wait``: past it, :class:`DecodeBusy`.
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 1:
            raise ValueError("a decode budget must be positive")
        self.max_bytes = max_bytes
        self._used = 0
        self._cond = threading.Condition()
        self._queue: collections.deque[object] = collections.deque()

    @property
    def used(self) -> int:
        """Bytes taken now (for tests and metrics)."""
        return self._used

    @property
    def waiting(self) -> int:
        """Decodes waiting for their share now (for tests and metrics)."""
        return len(self._queue)

    @contextmanager
    def take(self, cost: int, wait: float | None = None) -> Iterator[None]:
        """Hold ``cost`` bytes of the budget for the ``with`` block."""
        if cost > self.max_bytes:
            raise ImageTooLarge(
                f"decoding this image needs {_mb(cost)}, over this worker's decode memory of "
                f"{_mb(self.max_bytes)}"
            )
        ticket = object()
        deadline = None if wait is None else time.monotonic() + wait
        with self._cond:
            self._queue.append(ticket)
            try:
                # First come, first served: many small decodes must not starve a large one.
                while self._queue[0] is not ticket or self._used + cost > self.max_bytes:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        raise DecodeBusy(
                            "this worker is busy decoding other uploads: try again shortly",
                            retry_after=max(1.0, min(30.0, wait or 1.0)),
                        )
                    self._cond.wait(left)
            finally:
                self._queue.remove(ticket)
                self._cond.notify_all()  # the next in line may fit now (or be the head)
            self._used += cost
        try:
            yield
        finally:
            with self._cond:
                self._used -= cost
                self._cond.notify_all()
            if cost >= _TRIM_AFTER_BYTES:
                release_memory()


def _mb(n: int) -> str:
    return f"{n / 1e6:,.0f} MB"


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_frames: int = DEFAULT_MAX_FRAMES
    budget: DecodeBudget | None = field(default=None, compare=False)
    """Shared by the process's decodes: each holds what it allocates while it runs (None: no bound)."""
    budget_wait: float | None = None
    """Seconds a decode waits for ``budget`` before :class:`DecodeBusy` (None: as long as it takes)."""

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


_STORED_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}
"""Bytes per pixel of Pillow's storage of a mode (4 for every other mode)."""
_PNG_STRIP_BYTES = 4 << 20
"""About this many bytes of rows decoded at once by the PNG strip reader."""
_TRIM_AFTER_BYTES = 16 << 20
"""After a decode this big, hand freed memory back to the system (see ``release_memory``)."""


def _per_pixel(mode: str, reduced: bool) -> int:
    """Bytes a decode of one pixel in ``mode`` may hold at its peak, all copies together."""
    stored = _STORED_BYTES.get(mode, 4)
    if mode in ("I", "F") or mode.startswith("I;16"):
        extra = 28  # the float path: a copy, float64 steps, the float32 result
    elif mode in _UINT8_MODES:
        extra = 0
    elif mode in ("1", "LA", "La"):
        extra = 1
    else:
        extra = 4  # converted to RGB(A)
    if not reduced:
        extra += 16  # kept at full size: the array, its float luma and PDQ's filter passes
    return stored + extra


_FORMAT_EXTRA = {"WEBP": 12, "HEIF": 4, "AVIF": 6}
"""Bytes per pixel a format's decoder holds beyond the picture (its own buffer, then a copy), measured."""


def decode_cost(image: Image.Image, fmt: str, wanted: int, frames: int, strips: bool) -> int:
    """What decoding ``image`` will allocate at most, in bytes, known from its header alone.

    The figures are peak RSS growths measured per format and mode on 16-36 MP pictures, rounded up; a
    decode found to need more than this is a bug to fix here."""
    width, height = image.size
    if strips:  # a strip is held in about ten copies (inflated, stored, Pillow's buffer and picture)
        rows = _strip_rows(width, wanted) + 1
        return rows * width * 40 + (width // wanted + 1) * (height // wanted + 1) * 4
    extra = 0
    if fmt in ("JPEG", "MPO"):
        if image.info.get("progressive") or image.info.get("progression"):
            # libjpeg keeps every coefficient of a progressive JPEG, whatever the output scale
            extra = width * height * 2 * len(image.getbands())
        if wanted > 1:
            scale = next((s for s in _DRAFT_SCALES if s <= wanted), 1)
            width, height = -(-width // scale), -(-height // scale)
    cost = width * height * (_per_pixel(image.mode, wanted > 1) + _FORMAT_EXTRA.get(fmt, 0)) + extra
    return cost * 2 if frames > 1 else cost  # animations: the canvas and the frame drawn onto it


@dataclass(frozen=True, slots=True)
class _PngLayout:
    width: int
    height: int
    channels: int
    rawmode: str
    ihdr: bytes
    extra: bytes
    """PLTE and tRNS chunks, as they were: what the pixels' colours depend on."""
    idat: tuple[tuple[int, int], ...]
    """(offset, length) of each IDAT chunk's data."""


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: (1, "L"), 2: (3, "RGB"), 3: (1, "P"), 4: (2, "LA"), 6: (4, "RGBA")}


def _png_layout(data: bytes) -> _PngLayout | None:
    """The chunks of a plain (8-bit, not interlaced, not animated) PNG, or None to decode it whole."""
    if not data.startswith(_PNG_SIGNATURE):
        return None
    pos, n = 8, len(data)
    ihdr = b""
    extra: list[bytes] = []
    idat: list[tuple[int, int]] = []
    while pos + 8 <= n:
        length, kind = struct.unpack_from(">I4s", data, pos)
        start, end = pos + 8, pos + 8 + length
        if end + 4 > n:  # the file ends inside this chunk: its data so far, as Pillow would read it
            if kind == b"IDAT" and (not idat or idat[-1][0] + idat[-1][1] + 12 == start):
                idat.append((start, min(end, n) - start))
            break
        if kind == b"IHDR":
            ihdr = data[start:end]
        elif kind in (b"PLTE", b"tRNS"):
            extra.append(data[pos : end + 4])
        elif kind == b"IDAT":
            if idat and idat[-1][0] + idat[-1][1] + 12 != start:
                return None  # IDATs must be consecutive; leave oddities to Pillow
            idat.append((start, length))
        elif kind in (b"acTL", b"fcTL", b"fdAT"):
            return None
        elif kind == b"IEND":
            break
        pos = end + 4
    if len(ihdr) != 13 or not idat:
        return None
    width, height, depth, colour, method, filtering, interlace = struct.unpack(">IIBBBBB", ihdr)
    if depth != 8 or colour not in _PNG_CHANNELS or method or filtering or interlace:
        return None
    channels, rawmode = _PNG_CHANNELS[colour]
    return _PngLayout(width, height, channels, rawmode, ihdr, b"".join(extra), tuple(idat))


def _png_chunk(kind: bytes, *parts: bytes) -> list[bytes]:
    """A PNG chunk as pieces to join (the strips' IDATs are megabytes: no concatenation until the end)."""
    crc = zlib.crc32(kind)
    for part in parts:
        crc = zlib.crc32(part, crc)
    return [struct.pack(">I", sum(map(len, parts))), kind, *parts, struct.pack(">I", crc)]


def _stored_zlib(body: bytes) -> list[bytes]:
    """``body`` as a zlib stream of stored (uncompressed) deflate blocks: a copy, no compression work."""
    view = memoryview(body)
    out = [b"\x78\x01"]
    last = len(body) - 1
    for at in range(0, max(1, len(body)), 0xFFFF):
        block = view[at : at + 0xFFFF]
        size = len(block)
        final = at + 0xFFFF > last
        out.append(struct.pack("<BHH", final, size, size ^ 0xFFFF))
        out.append(bytes(block))
    out.append(struct.pack(">I", zlib.adler32(body)))
    return out


def _strip_rows(width: int, wanted: int) -> int:
    return wanted * max(1, _PNG_STRIP_BYTES // max(1, width * 4 * wanted))


def _png_strips(data: bytes, layout: _PngLayout, wanted: int) -> Picture:
    """The PNG reduced by ``wanted``, decoded a strip of rows at a time (never the full picture).

    PNG rows are filtered against the row above, so each strip is given to Pillow as a small PNG of its
    own: the row above, unfiltered, then the strip's rows as stored.  Pillow does the unfiltering and
    colour mapping exactly as for the whole file, and reducing strips of whole blocks gives the same
    pixels as reducing the whole picture."""
    width, height = layout.width, layout.height
    stride = width * layout.channels + 1
    rows_per_strip = _strip_rows(width, wanted)
    inflater = zlib.decompressobj()
    chunks = iter(layout.idat)
    pending = b""
    previous: bytes | None = None
    out: list[npt.NDArray[np.uint8]] = []
    for top in range(0, height, rows_per_strip):
        rows = min(rows_per_strip, height - top)
        need = rows * stride
        parts: list[bytes] = []
        got = 0
        while got < need:
            if not pending:
                nxt = None if inflater.eof else next(chunks, None)
                if nxt is None:
                    break  # the data ends early: Pillow reports the strip as truncated, as for the whole
                pending = data[nxt[0] : nxt[0] + nxt[1]]
            try:
                piece = inflater.decompress(pending, need - got)
            except zlib.error as exc:
                raise CorruptImage(f"truncated or corrupt image data ({_describe(exc)})") from None
            pending = inflater.unconsumed_tail
            parts.append(piece)
            got += len(piece)
        body = b"".join(parts)
        first = 0 if previous is None else 1
        if previous is not None:
            body = b"\x00" + previous + body
        ihdr = struct.pack(">II", width, rows + first) + layout.ihdr[8:]
        strip_png = b"".join(
            [
                _PNG_SIGNATURE,
                *_png_chunk(b"IHDR", ihdr),
                layout.extra,
                *_png_chunk(b"IDAT", *_stored_zlib(body)),
                *_png_chunk(b"IEND"),
            ]
        )
        del body, parts
        with Image.open(io.BytesIO(strip_png), formats=["PNG"]) as strip:
            strip.load()
            previous = strip.crop((0, rows + first - 1, width, rows + first)).tobytes("raw", layout.rawmode)
            normal = _normalise(strip)
            assert not isinstance(normal, np.ndarray)  # 8-bit modes only
            out.append(np.asarray(normal.reduce(wanted, (0, first, width, rows + first)), dtype=np.uint8))
    return Picture(np.concatenate(out, axis=0), width, height, wanted)


def release_memory() -> None:
    """Hand memory freed by a large decode back to the system.

    glibc keeps freed heap memory for reuse, and once a large block has been freed it serves the next
    ones of that size from the heap too (its mmap threshold rises), so a worker that once decoded a few
    large pictures keeps their memory for good.  ``malloc_trim`` returns it."""
    trim = _libc_trim()
    if trim is not None:
        trim(0)


@functools.cache  # looked up when first needed: ctypes.util costs every command's start-up ~15 ms
def _libc_trim() -> Callable[[int], int] | None:
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to do
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    fn: Callable[[int], int] = trim
    return fn


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
    with warnings.catch_warnings(), contextlib.ExitStack() as held:
        warnings.simplefilter("ignore")
        image = _open(data, limits)
        try:
            fmt = str(image.format)
            width, height = image.size
            mode = image.mode
            _check_size(width, height, limits)
            try:
                count = int(getattr(image, "n_frames", 1)) if frames else 1
                wanted = max(1, choose_factor(width, height)) if choose_factor else 1
                layout = _png_layout(data) if fmt == "PNG" and wanted > 1 and count == 1 else None
                if layout is not None and (layout.width, layout.height) != (width, height):
                    layout = None
                if limits.budget is not None:
                    # Held until the picture is closed below (``held`` exits after the ``finally``).
                    cost = decode_cost(image, fmt, wanted, count, layout is not None)
                    held.enter_context(limits.budget.take(cost, limits.budget_wait))
                pictures: list[Picture] = []
                extents = _gif_frame_extents(data) if fmt == "GIF" and count > 1 else []
                for index in range(min(count, limits.max_frames)):
                    if index:
                        if index < len(extents):  # Pillow allocates a GIF frame's canvas while seeking
                            _check_size(max(width, extents[index][0]), max(height, extents[index][1]), limits)
                        image.seek(index)
                        _check_size(*image.size, limits)
                    if index == 0 and layout is not None:
                        pictures.append(_png_strips(data, layout, wanted))
                    else:
                        pictures.append(_picture(image, fmt, index, choose_factor, data))
            except (MediaError, DecodeBusy):
                raise
            except MemoryError:
                raise ImageTooLarge("out of memory while decoding") from None
            except Exception as exc:
                raise CorruptImage(f"truncated or corrupt image data ({_describe(exc)})") from None
            return DecodedImage(fmt, width, height, mode, count, tuple(pictures))
        finally:
            image.close()
