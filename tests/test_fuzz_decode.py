"""Fuzz the decode path: mutated images and arbitrary bytes give a clean hash or a MediaError, nothing else.

Seeds are small valid files of every supported format; mutations are bit flips,
truncations, insertions, overwrites with boundary values, and duplicated or
dropped byte ranges, PNG chunks and JPEG segments.  For a longer run by hand
(libFuzzer, coverage-guided) see ``tests/fuzz/fuzz_decode.py``.
"""

from __future__ import annotations

import functools
import io
import struct
import zlib

import numpy as np
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st
from PIL import Image

import hostile_samples as hs
from childshield import HashOptions, HashResult, MediaError, hash_bytes

MAX_PIXELS = 4_000_000

FUZZ = settings(
    max_examples=300,
    deadline=None,
    database=None,  # keep the working tree clean
    print_blob=True,  # a failure prints the @reproduce_failure line
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **options)
    return buf.getvalue()


@functools.cache
def seeds() -> dict[str, bytes]:
    """Small valid files: every format, and the format features with their own parsing code."""
    rgb = Image.fromarray(hs.pixels(40, 30, seed=9))
    frames = [Image.fromarray(hs.pixels(24, 16, seed=k)) for k in range(3)]
    gray16 = Image.fromarray((np.arange(24 * 16, dtype=np.uint16).reshape(16, 24) * 170).astype(np.uint16))
    out = dict(hs.valid_files())
    out.update(
        {
            "jpeg-progressive": _encode(rgb, "JPEG", quality=70, progressive=True),
            "jpeg-gray-restart": _encode(rgb.convert("L"), "JPEG", quality=70, restart_marker_blocks=2),
            "jpeg-cmyk": _encode(rgb.convert("CMYK"), "JPEG", quality=70),
            "png-palette-alpha": _encode(rgb.quantize(8), "PNG", transparency=0),
            "png-16bit": _encode(gray16, "PNG"),
            "apng": _encode(frames[0], "PNG", save_all=True, append_images=frames[1:]),
            "gif-animated": _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], disposal=2),
            "webp-lossless": _encode(rgb, "WEBP", lossless=True),
            "webp-animated": _encode(frames[0], "WEBP", save_all=True, append_images=frames[1:]),
            "bmp-rgb": _encode(rgb, "BMP"),
            "tiff-raw-pages": _encode(frames[0], "TIFF", save_all=True, append_images=frames[1:]),
            "tiff-lzw": _encode(rgb, "TIFF", compression="tiff_lzw"),
            "tiff-handmade-pages": hs.tiff_pages((16, 16), (8, 8)),
        }
    )
    return out


def png_chunks(data: bytes) -> list[bytes] | None:
    """A PNG's chunks (each with length, type and CRC), or None when it does not parse."""
    if not data.startswith(hs.PNG_SIGNATURE):
        return None
    chunks, pos = [], len(hs.PNG_SIGNATURE)
    while pos + 12 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        end = pos + 12 + length
        if end > len(data):
            return None
        chunks.append(data[pos:end])
        pos = end
    return chunks


def jpeg_segments(data: bytes) -> list[bytes] | None:
    """A JPEG's marker segments up to the first scan, then the rest as one piece."""
    if not data.startswith(b"\xff\xd8"):
        return None
    segments, pos = [data[:2]], 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if data[pos + 1] == 0xDA:
            break
        segments.append(data[pos : pos + 2 + length])
        pos += 2 + length
    segments.append(data[pos:])
    return segments


def _pieces(data: bytes) -> tuple[list[bytes], bytes] | None:
    chunks = png_chunks(data)
    if chunks is not None:
        return chunks, hs.PNG_SIGNATURE
    segments = jpeg_segments(data)
    if segments is not None and len(segments) > 2:
        return segments[1:], segments[0]
    return None


def mutate(data: bytes, ops: list[tuple[str, int, int, int]]) -> bytes:
    """Apply mutations; positions are fractions of the current length in millionths.

    The first 4 bytes (the signature) are left alone: broken signatures are ``test_arbitrary_bytes``'s job.
    """
    buf = bytearray(data)
    for kind, where, value, size in ops:
        keep = min(4, len(buf))
        at = keep + where * (len(buf) - keep) // 1_000_000
        if kind == "flip" and buf:
            buf[min(at, len(buf) - 1)] ^= 1 << (value % 8)
        elif kind == "set" and buf:
            buf[min(at, len(buf) - 1)] = (0x00, 0xFF, 0x7F, 0x80, 0x01, value % 256)[size % 6]
        elif kind == "int" and len(buf) >= 4:
            at = min(at, len(buf) - 4)
            word = (0, 1, 0xFFFF, 0xFFFFFFFF, 0x7FFFFFFF, 0x10000, value)[size % 7] & 0xFFFFFFFF
            buf[at : at + 4] = struct.pack("<I" if value % 2 else ">I", word)
        elif kind == "truncate":
            del buf[at:]
        elif kind == "insert":
            buf[at:at] = bytes((value + k * 37) % 256 for k in range(1 + size % 32))
        elif kind == "delete":
            del buf[at : at + 1 + size % 64]
        elif kind == "duplicate":
            piece = buf[at : at + 1 + size % 256]
            buf[at:at] = piece
        elif kind in ("chunk-dup", "chunk-drop", "chunk-swap", "chunk-fixcrc"):
            split = _pieces(bytes(buf))
            if split is None or not split[0]:
                continue
            pieces, head = split
            i = at * len(pieces) // max(1, len(buf))
            j = value % len(pieces)
            if kind == "chunk-dup":
                pieces.insert(i, pieces[i])
            elif kind == "chunk-drop":
                del pieces[i]
            elif kind == "chunk-swap":
                pieces[i], pieces[j] = pieces[j], pieces[i]
            elif head == hs.PNG_SIGNATURE and len(pieces[i]) >= 12:  # re-sign a damaged chunk
                body = pieces[i][4:-4]
                pieces[i] = pieces[i][:-4] + struct.pack(">I", zlib.crc32(body))
            buf = bytearray(head + b"".join(pieces))
    return bytes(buf)


MUTATION = st.tuples(
    st.sampled_from(
        [
            "flip",
            "flip",
            "set",
            "int",
            "truncate",
            "insert",
            "delete",
            "duplicate",
            "chunk-dup",
            "chunk-drop",
            "chunk-swap",
            "chunk-fixcrc",
        ]
    ),
    # Hypothesis favours small integers (headers); spread half of the positions over the whole file.
    st.one_of(st.integers(0, 999_999), st.integers(0, 999_999).map(lambda n: n * 7_919 % 1_000_000)),
    st.integers(0, 1 << 32),
    st.integers(0, 1000),
)
OPTIONS = st.builds(
    HashOptions,
    frames=st.booleans(),
    exact=st.booleans(),
    dihedral=st.booleans(),
    max_pixels=st.just(MAX_PIXELS),
)


def check(data: bytes, options: HashOptions) -> HashResult | MediaError:
    """Hash and check the contract: a well-formed result or a MediaError with a short message."""
    try:
        result = hash_bytes(data, options)
    except MediaError as exc:
        if currently_in_test_context():
            event(type(exc).__name__)  # shown by --hypothesis-show-statistics
        message = str(exc)
        assert message and "\n" not in message and len(message) <= 300, repr(message)
        return exc
    if currently_in_test_context():
        event("hashed")
    hs.assert_well_formed(result, data, options.max_pixels, options.max_frames)
    if options.dihedral and result.pdq is not None:
        assert result.pdq_dihedral is not None and len(result.pdq_dihedral) == 8
        assert result.pdq_dihedral["original"] == result.pdq
    if not options.frames:
        assert len(result.frames) == 1
    return result


def test_seeds_hash_cleanly() -> None:
    """Control: every seed is a valid file, so what the fuzzer finds comes from its mutations."""
    for name, data in seeds().items():
        got = check(data, HashOptions(frames=True, max_pixels=MAX_PIXELS))
        assert isinstance(got, HashResult), (name, got)


@FUZZ
@given(
    name=st.sampled_from(sorted(seeds())),
    ops=st.lists(MUTATION, min_size=1, max_size=6),
    options=OPTIONS,
)
def test_mutated_images(name: str, ops: list[tuple[str, int, int, int]], options: HashOptions) -> None:
    check(mutate(seeds()[name], ops), options)


MAGICS = [
    b"\xff\xd8\xff",
    b"\xff\xd8\xff\xe0\x00\x10JFIF\x00",
    hs.PNG_SIGNATURE,
    hs.PNG_SIGNATURE + b"\x00\x00\x00\rIHDR",
    b"GIF89a",
    b"GIF87a",
    b"RIFF\x00\x10\x00\x00WEBPVP8 ",
    b"RIFF\x00\x10\x00\x00WEBPVP8L",
    b"RIFF\x00\x10\x00\x00WEBPVP8X",
    b"BM",
    b"II*\x00",
    b"MM\x00*",
    b"II+\x00",
    b"\x00\x00\x00\x18ftypheic",
    b"\x00\x00\x00\x18ftypavif",
    b"",
]


@FUZZ
@given(magic=st.sampled_from(MAGICS), tail=st.binary(max_size=4096), options=OPTIONS)
def test_arbitrary_bytes(magic: bytes, tail: bytes, options: HashOptions) -> None:
    got = check(magic + tail, options)
    if not magic + tail:
        assert type(got).__name__ == "EmptyFile"


@functools.cache
def large_jpegs() -> dict[str, bytes]:
    """JPEGs large enough (min side >= 3000) for the DC-only fast path, smooth so they stay small."""
    yy, xx = np.mgrid[0:3000, 0:3072]
    base = ((xx // 7 + yy // 11) % 256).astype(np.uint8)
    rgb = np.stack([base, base[::-1], np.roll(base, 500, axis=1)], axis=2)
    return {
        "baseline-420": _encode(Image.fromarray(rgb), "JPEG", quality=40),
        "gray-restart": _encode(Image.fromarray(base), "JPEG", quality=40, restart_marker_rows=3),
    }


@settings(FUZZ, max_examples=60)
@given(
    name=st.sampled_from(["baseline-420", "gray-restart"]),
    ops=st.lists(MUTATION, min_size=1, max_size=4),
)
def test_mutated_large_jpegs_through_the_dc_decoder(name: str, ops: list[tuple[str, int, int, int]]) -> None:
    data = large_jpegs()[name]
    check(mutate(data, ops), HashOptions())
