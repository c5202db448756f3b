"""A corpus of hostile image samples, built in code from benign generated pixels.

Every sample is something a scanner meets in the wild: empty files, text and
random bytes under image names, files cut short, flipped bytes, headers that
claim enormous or empty pictures (decompression bombs), metadata chunks that
inflate to megabytes, animations with many frames, self-referencing TIFF
directories.  Each comes with the outcomes allowed for it: the name of a
``childshield.media.errors`` class, or ``"ok"`` for a clean hash.

The committed copy in ``tests/hostile/`` is written by::

    python tests/hostile_samples.py --write tests/hostile

Only sample names (not bytes) are checked against the generator, because
encoders of another Pillow or libjpeg version may write other bytes; HEIF and
AVIF samples exist only where pillow-heif and Pillow can encode them.
"""

from __future__ import annotations

import argparse
import io
import struct
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, features

OK = "ok"
EMPTY = "EmptyFile"
NOT_IMAGE = "NotAnImage"
CORRUPT = "CorruptImage"
TOO_LARGE = "ImageTooLarge"
UNSUPPORTED = "UnsupportedImage"

# Damaged data may still decode to a (garbled) picture: that is a clean outcome, not a failure.
DAMAGED = frozenset({CORRUPT, OK, UNSUPPORTED})

# A header whose pixel count is over childshield's default limit (100 MP) but under Pillow's own
# bomb guard (2 * 89.5 MP), so childshield's check is the one that must refuse it...
OVER_OUR_LIMIT = (12_000, 12_000)
# ...and one far over both.
ABSURD = (100_000, 100_000)


@dataclass(frozen=True, slots=True)
class Sample:
    name: str
    data: bytes
    allowed: frozenset[str]
    why: str

    @property
    def bomb(self) -> bool:
        return self.allowed == frozenset({TOO_LARGE})


def pixels(width: int = 48, height: int = 32, seed: int = 5) -> np.ndarray:
    """A smooth benign picture (gradients and boxes) that compresses well, so samples stay small."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    img = np.zeros((height, width, 3), dtype=np.float64)
    img[..., 0] = 255 * xx / max(1, width - 1)
    img[..., 1] = 255 * yy / max(1, height - 1)
    img[..., 2] = 128
    for _ in range(4):
        y0, x0 = rng.integers(0, height), rng.integers(0, width)
        img[y0 : y0 + height // 3, x0 : x0 + width // 3] = rng.integers(0, 256, size=3)
    return img.astype(np.uint8)


def encode(image: Image.Image | np.ndarray, fmt: str, **options: object) -> bytes:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buf = io.BytesIO()
    image.save(buf, format=fmt, **options)
    return buf.getvalue()


def valid_files() -> dict[str, bytes]:
    """Small valid files, one per format, that the mutations start from."""
    rgb = pixels()
    files = {
        "jpg": encode(rgb, "JPEG", quality=85),
        "png": encode(rgb, "PNG", optimize=True),
        "gif": encode(Image.fromarray(rgb).quantize(16), "GIF"),
        "webp": encode(rgb, "WEBP", quality=80),
        "bmp": encode(Image.fromarray(rgb).quantize(16), "BMP"),
        "tif": encode(rgb, "TIFF", compression="tiff_adobe_deflate"),
    }
    try:
        import pillow_heif

        pillow_heif.register_heif_opener()
        files["heic"] = encode(rgb, "HEIF", quality=60)
    except Exception:  # no HEVC encoder in this build: no HEIF samples
        pass
    if features.check("avif"):
        files["avif"] = encode(rgb, "AVIF", quality=50)
    return files


# --- byte-level builders -------------------------------------------------------------------------


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_header_only(width: int, height: int, bit_depth: int = 8, colour: int = 2) -> bytes:
    """A PNG whose IHDR claims ``width`` x ``height`` but whose data is one tiny IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return PNG_SIGNATURE + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def png_real(width: int, height: int, *, extra: bytes = b"") -> bytes:
    """A complete 1-bit PNG (all black) of the given size, optionally with extra chunks before IDAT."""
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return (
        PNG_SIGNATURE + png_chunk(b"IHDR", ihdr) + extra + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    )


def inflating(size: int) -> bytes:
    """zlib data that inflates to ``size`` zero bytes."""
    compressor = zlib.compressobj(9)
    block = b"\x00" * (1 << 20)
    out = [compressor.compress(block) for _ in range(size >> 20)]
    out.append(compressor.compress(b"\x00" * (size & ((1 << 20) - 1))))
    return b"".join(out) + compressor.flush()


def gif_header_only(width: int, height: int, *, frame: tuple[int, int] | None = None) -> bytes:
    """A GIF whose screen (and single frame) claim ``width`` x ``height``."""
    fw, fh = frame or (width, height)
    return (
        b"GIF89a"
        + struct.pack("<HHBBB", width, height, 0x80, 0, 0)  # global table of 2 colours
        + b"\x00\x00\x00\xff\xff\xff"
        + b","
        + struct.pack("<HHHHB", 0, 0, fw, fh, 0)
        + b"\x02\x02\x44\x01\x00"  # LZW data for one pixel
        + b";"
    )


def _gif_descriptors(data: bytes) -> list[int]:
    """Offsets of the image descriptors (``,``) of a GIF, found by walking its blocks."""
    pos = 13
    if data[10] & 0x80:
        pos += 3 << ((data[10] & 7) + 1)
    found = []
    while pos < len(data) and data[pos] != 0x3B:
        if data[pos] == 0x21:  # extension: label, then sub-blocks
            pos += 2
        else:
            found.append(pos)
            flags = data[pos + 9]
            pos += 10 + ((3 << ((flags & 7) + 1)) if flags & 0x80 else 0) + 1  # + LZW minimum code size
        while data[pos]:
            pos += data[pos] + 1
        pos += 1
    return found


def gif_frame_grows(big: int = 13_000, small: int = 16) -> bytes:
    """A valid two-frame GIF whose second frame descriptor is rewritten to claim ``big`` x ``big``.

    The screen (and so the size Pillow reports on opening) stays ``small`` x ``small``: the
    canvas grows only when the second frame is reached.  Disposal method 2 (restore to
    background) makes Pillow allocate a canvas of the claimed size when it seeks to that frame.
    """
    first = np.zeros((small, small), dtype=np.uint8)
    second = np.full((small, small), 255, dtype=np.uint8)
    data = bytearray(
        encode(
            Image.fromarray(first),
            "GIF",
            save_all=True,
            append_images=[Image.fromarray(second)],
            disposal=2,
            transparency=0,
        )
    )
    at = _gif_descriptors(bytes(data))[1]
    data[at + 5 : at + 9] = struct.pack("<HH", big, big)
    return bytes(data)


def gif_many_frames(count: int = 60, size: int = 8) -> bytes:
    frames = []
    for k in range(count):
        arr = np.full((size, size), (k * 37) % 256, dtype=np.uint8)
        arr[k % size, :] = 255 - arr[0, 0]
        frames.append(Image.fromarray(arr).convert("P"))
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=40, loop=0)


def bmp_header_only(width: int, height: int, bpp: int = 24, colours: int = 0) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, bpp, 0, 0, 2835, 2835, colours, 0)
    offset = 14 + len(info)
    return b"BM" + struct.pack("<IHHI", offset + 16, 0, 0, offset) + info + b"\x00" * 16


def tiff_pages(*sizes: tuple[int, int], loop: bool = False) -> bytes:
    """A little-endian baseline TIFF (8-bit gray, one strip per page), one page per size.

    Pixel data is complete for small pages and 4 KB for large ones.  With ``loop`` the last
    directory's next-directory pointer points back at the first: a directory loop.
    """
    out = bytearray(b"II*\x00" + struct.pack("<I", 8))
    for page, (width, height) in enumerate(sizes):
        strip = max(1, min(width * height, 4096))
        entries = [
            (256, 4, width),  # ImageWidth, LONG
            (257, 4, height),  # ImageLength
            (258, 3, 8),  # BitsPerSample, SHORT
            (259, 3, 1),  # Compression: none
            (262, 3, 1),  # Photometric: black is zero
            (273, 4, 0),  # StripOffsets (right after this directory)
            (277, 3, 1),  # SamplesPerPixel
            (278, 4, height),  # RowsPerStrip
            (279, 4, strip),  # StripByteCounts
        ]
        here = len(out)
        data_offset = here + 2 + 12 * len(entries) + 4
        out += struct.pack("<H", len(entries))
        for tag, kind, value in entries:
            value = data_offset if tag == 273 else value
            out += struct.pack("<HHI", tag, kind, 1)
            out += struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
        last = page == len(sizes) - 1
        following = data_offset + strip
        out += struct.pack("<I", (8 if loop else 0) if last else following)
        out += bytes(k % 251 for k in range(strip))
    return bytes(out)


def tiff_header_only(width: int, height: int) -> bytes:
    """A TIFF claiming ``width`` x ``height`` with at most 4 KB of pixel data."""
    return tiff_pages((width, height))


def jpeg_with_size(jpeg: bytes, width: int, height: int) -> bytes:
    """A valid JPEG whose SOF marker is rewritten to claim ``width`` x ``height``."""
    pos = 2
    while pos < len(jpeg) - 4:
        if jpeg[pos] != 0xFF:
            raise ValueError("not a marker")
        marker = jpeg[pos + 1]
        length = struct.unpack(">H", jpeg[pos + 2 : pos + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            at = pos + 5  # length (2) + marker (2) + precision (1)
            return jpeg[:at] + struct.pack(">HH", height, width) + jpeg[at + 4 :]
        pos += 2 + length
    raise ValueError("no SOF marker")


def webp_lossless_with_size(width: int, height: int) -> bytes:
    """A lossless WebP whose VP8L header claims ``width`` x ``height`` (at most 16384 each)."""
    data = encode(pixels(16, 16), "WEBP", lossless=True)
    at = data.index(b"VP8L") + 8 + 1  # chunk header (8), signature byte (1)
    bits = struct.unpack("<I", data[at : at + 4])[0]
    bits = (bits & ~((1 << 28) - 1)) | (width - 1) | ((height - 1) << 14)
    return data[:at] + struct.pack("<I", bits) + data[at + 4 :]


def flipped(data: bytes, at: float, count: int = 24) -> bytes:
    """``count`` bytes inverted from ``at`` (a fraction of the length) onwards."""
    start = int(len(data) * at)
    middle = bytes(b ^ 0xFF for b in data[start : start + count])
    return data[:start] + middle + data[start + count :]


# --- the corpus ----------------------------------------------------------------------------------


def _cuts(size: int) -> list[int]:
    return sorted({2, 8, 16, 40, size // 4, size // 2, (size * 3) // 4, size - 16, size - 1})


def samples() -> Iterator[Sample]:
    """Every hostile sample, with the outcomes allowed for it."""
    yield Sample("empty.jpg", b"", frozenset({EMPTY}), "zero bytes")
    rng = np.random.default_rng(2024)
    noise = b"\x00" + rng.integers(0, 256, size=2047, dtype=np.uint8).tobytes()
    yield Sample("random.jpg", noise, frozenset({NOT_IMAGE}), "random bytes under an image name")
    text = b"This is a plain text file, not an image.\n" * 20
    yield Sample("text.png", text, frozenset({NOT_IMAGE}), "text under an image name")
    html = b"<!doctype html><html><body><img src='x.jpg'></body></html>\n"
    yield Sample("page.gif", html, frozenset({NOT_IMAGE}), "HTML under an image name")
    yield Sample("notes.txt", b"no image here\n", frozenset({NOT_IMAGE}), "text that a walk skips")

    for name, magic in {
        "magic-only.jpg": b"\xff\xd8\xff",
        "magic-only.png": PNG_SIGNATURE,
        "magic-only.gif": b"GIF89a",
        "magic-only.webp": b"RIFF\x00\x00\x00\x00WEBP",
        "magic-only.bmp": b"BM",
        "magic-only.tif": b"II*\x00",
        "magic-only.heic": b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic",
    }.items():
        yield Sample(name, magic, frozenset({CORRUPT, NOT_IMAGE}), "only the signature")

    valid = valid_files()
    for ext, data in valid.items():
        yield Sample(f"valid.{ext}", data, frozenset({OK}), "a valid control file")
        for cut in _cuts(len(data)):
            yield Sample(f"truncated-{ext}-{cut:05d}.{ext}", data[:cut], DAMAGED | {NOT_IMAGE}, "cut short")
    for ext in ("jpg", "png", "gif", "webp", "tif"):
        for at in (0.3, 0.5, 0.8):
            yield Sample(
                f"flipped-{ext}-{int(at * 100)}.{ext}", flipped(valid[ext], at), DAMAGED, "flipped bytes"
            )

    # Headers that claim huge pictures in tiny files: refused before any pixel is decoded.
    for (w, h), tag in ((OVER_OUR_LIMIT, "12k"), (ABSURD, "100k")):
        why = f"header claims {w}x{h}"
        yield Sample(f"bomb-header-{tag}.png", png_header_only(w, h), frozenset({TOO_LARGE}), why)
        yield Sample(f"bomb-header-{tag}.bmp", bmp_header_only(w, h), frozenset({TOO_LARGE}), why)
        yield Sample(f"bomb-header-{tag}.tif", tiff_header_only(w, h), frozenset({TOO_LARGE}), why)
        gw, gh = min(w, 65535), min(h, 65535)
        yield Sample(f"bomb-header-{tag}.gif", gif_header_only(gw, gh), frozenset({TOO_LARGE}), why)
        jpeg = jpeg_with_size(valid["jpg"], gw, gh)
        yield Sample(f"bomb-header-{tag}.jpg", jpeg, frozenset({TOO_LARGE}), why)
    yield Sample(
        "bomb-header-16k.webp",
        webp_lossless_with_size(16384, 16384),
        frozenset({TOO_LARGE}),
        "VP8L header claims 16384x16384",
    )
    yield Sample(
        "bomb-header-11k.webp",
        webp_lossless_with_size(11000, 11000),
        frozenset({TOO_LARGE}),
        "VP8L header claims 11000x11000",
    )
    yield Sample(
        "bomb-png-1x200m.png",
        png_header_only(1, 200_000_000),
        frozenset({TOO_LARGE}),
        "a 1 pixel wide column of 200 million pixels",
    )
    # A real bomb: 13 KB of PNG that inflates to a 10500x10000 picture (105 MP).
    yield Sample("bomb-real-105mp.png", png_real(10_500, 10_000), frozenset({TOO_LARGE}), "real bomb")

    # Empty and absurd dimensions.
    yield Sample("zero-width.png", png_header_only(0, 16), frozenset({CORRUPT}), "IHDR width 0")
    yield Sample("zero-height.png", png_header_only(16, 0), frozenset({CORRUPT}), "IHDR height 0")
    yield Sample("zero-size.gif", gif_header_only(0, 0), frozenset({CORRUPT}), "0x0 screen")
    yield Sample("zero-size.bmp", bmp_header_only(0, 0), frozenset({CORRUPT}), "0x0 bitmap")
    yield Sample("zero-size.tif", tiff_header_only(0, 0), frozenset({CORRUPT}), "0x0 TIFF")
    yield Sample("zero-size.jpg", jpeg_with_size(valid["jpg"], 0, 0), frozenset({CORRUPT}), "0x0 SOF")
    yield Sample(
        "negative-width.bmp", bmp_header_only(-64, 64), frozenset({CORRUPT, TOO_LARGE}), "negative width"
    )
    yield Sample("column-1x50000.png", png_real(1, 50_000), frozenset({OK}), "1 pixel wide, 50000 tall")
    yield Sample("row-50000x1.png", png_real(50_000, 1), frozenset({OK}), "50000 wide, 1 pixel tall")
    yield Sample("tiny-3x3.png", png_real(3, 3), frozenset({OK}), "smaller than PDQ's 5 px minimum")

    # Chunk and palette lies.
    inflate = inflating(8 << 20)
    yield Sample(
        "ztxt-bomb.png",
        png_real(16, 16, extra=png_chunk(b"zTXt", b"Comment\x00\x00" + inflate)),
        frozenset({OK, CORRUPT}),
        "a zTXt chunk that inflates to 8 MB",
    )
    yield Sample(
        "iccp-bomb.png",
        png_real(16, 16, extra=png_chunk(b"iCCP", b"icc\x00\x00" + inflate)),
        frozenset({OK, CORRUPT}),
        "an iCCP profile that inflates to 8 MB",
    )
    lie = struct.pack(">I", 0x7FFFFFF0) + b"tEXt" + b"k\x00v"
    yield Sample(
        "chunk-length-lie.png",
        PNG_SIGNATURE + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 16, 16, 8, 2, 0, 0, 0)) + lie,
        frozenset({CORRUPT}),
        "a chunk claiming 2 GB",
    )
    bad_crc = bytearray(valid["png"])
    bad_crc[29] ^= 0xFF  # inside the IHDR CRC
    yield Sample("ihdr-bad-crc.png", bytes(bad_crc), frozenset({CORRUPT, OK}), "IHDR checksum wrong")
    yield Sample(
        "palette-lie.bmp", bmp_header_only(16, 16, bpp=8, colours=1 << 30), DAMAGED, "a billion colours"
    )
    yield Sample(
        "gif-frame-grows.gif",
        gif_frame_grows(),
        frozenset({OK, TOO_LARGE}),  # OK: only the first frame is hashed unless frames are asked for
        "frame 2 claims 13000x13000",
    )
    yield Sample("gif-60-frames.gif", gif_many_frames(), frozenset({OK}), "60 frames")
    yield Sample("tiff-ifd-loop.tif", tiff_pages((16, 16), (8, 8), loop=True), DAMAGED, "directory loop")
    yield Sample(
        "tiff-page2-bomb.tif",
        tiff_pages((16, 16), OVER_OUR_LIMIT),
        frozenset({OK, TOO_LARGE}),  # OK: only the first page is hashed unless frames are asked for
        "a small first page, then one of 12000x12000",
    )


def assert_well_formed(result: object, data: bytes, max_pixels: int, max_frames: int = 1000) -> None:
    """Check every field of a ``HashResult`` that a hostile file might bend out of shape."""
    import hashlib
    import re

    from childshield import HashResult

    assert isinstance(result, HashResult)
    assert result.size_bytes == len(data)
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert result.md5 == hashlib.md5(data).hexdigest()
    assert result.sha1 == hashlib.sha1(data).hexdigest()
    assert result.width > 0 and result.height > 0
    assert result.width * result.height <= max_pixels
    assert 1 <= len(result.frames) <= max_frames
    assert result.frame_count >= len(result.frames)
    for index, frame in enumerate(result.frames):
        assert frame.index == index
        assert 0 <= frame.pdq_quality <= 100
        assert frame.width * frame.height <= max_pixels
        if frame.pdq is None:
            assert frame.pdq_quality == 0
        else:
            assert re.fullmatch("[0-9a-f]{64}", frame.pdq), frame.pdq


def by_name() -> dict[str, Sample]:
    return {s.name: s for s in samples()}


def write(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for sample in samples():
        path = folder / sample.name
        path.write_bytes(sample.data)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, metavar="FOLDER", help="write the samples into FOLDER")
    args = parser.parse_args(argv)
    if args.write is None:
        for sample in samples():
            print(
                f"{sample.name:36} {len(sample.data):7d}  {'|'.join(sorted(sample.allowed)):30} {sample.why}"
            )
        return 0
    paths = write(args.write)
    total = sum(p.stat().st_size for p in paths)
    print(f"wrote {len(paths)} samples ({total / 1000:.1f} KB) to {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
