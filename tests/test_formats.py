"""Every supported format and pixel mode decodes and hashes like the reference would want."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from threatexchange.signal_type.pdq.pdq_hasher import pdq_from_bytes

import childshield
from childshield.media.decode import decode
from childshield.signals import pdq
from childshield.testing.corpus import encode, generated_photo


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    return generated_photo(21, 400, 300)


@pytest.fixture(scope="module")
def expected(rgb: np.ndarray) -> pdq.PdqHash:
    return pdq.hash_rgb(rgb)


def near(result: childshield.HashResult, expected: pdq.PdqHash, bits: int) -> bool:
    assert result.pdq is not None
    return pdq.hamming(result.pdq, expected.hex) <= bits


@pytest.mark.parametrize(
    ("fmt", "options", "bits"),
    [
        ("PNG", {}, 0),
        ("BMP", {}, 0),
        ("TIFF", {}, 0),
        ("TIFF", {"compression": "tiff_lzw"}, 0),
        ("WEBP", {"lossless": True}, 0),
        ("WEBP", {"quality": 90}, 12),
        ("JPEG", {"quality": 95}, 12),
        ("JPEG", {"quality": 90, "progressive": True}, 12),
        ("AVIF", {"quality": 90}, 16),
        ("HEIF", {"quality": 90}, 16),
    ],
)
def test_formats(rgb: np.ndarray, expected: pdq.PdqHash, fmt: str, options: dict, bits: int) -> None:
    data = encode(rgb, fmt, **options)
    result = childshield.hash_bytes(data)
    assert result.format == fmt
    assert (result.width, result.height) == (400, 300)
    assert near(result, expected, bits), (fmt, result.pdq)
    assert result.pdq_quality >= 80


def test_jpeg_cmyk(rgb: np.ndarray, expected: pdq.PdqHash) -> None:
    data = encode(Image.fromarray(rgb).convert("CMYK"), "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    result = childshield.hash_bytes(data)
    assert near(result, expected, 16)


def test_large_cmyk_jpeg_uses_dct_reduction() -> None:
    big = np.asarray(Image.fromarray(generated_photo(4, 800, 600)).resize((3200, 2400)))
    data = encode(Image.fromarray(big).convert("CMYK"), "JPEG", quality=92)
    picture = decode(data, choose_factor=lambda w, h: 8).pictures[0]
    assert picture.factor == 8 and picture.pixels.shape[:2] == (300, 400)
    ref_hex, _ = pdq_from_bytes(encode(big, "PNG"))
    assert pdq.hamming(childshield.hash_bytes(data).pdq or "", ref_hex) <= 16


def test_exif_orientation_is_not_applied(rgb: np.ndarray, expected: pdq.PdqHash) -> None:
    """Stored pixels are hashed, as the reference does; the rotated view is a dihedral variant."""
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    data = encode(rgb, "PNG", exif=exif.tobytes())
    result = childshield.hash_bytes(data, childshield.HashOptions(dihedral=True))
    assert result.pdq == expected.hex
    assert (result.width, result.height) == (400, 300)
    displayed = np.ascontiguousarray(np.rot90(rgb, -1))  # what a viewer shows
    shown = pdq.hash_rgb(displayed).hex
    assert result.pdq_dihedral is not None
    assert pdq.hamming(shown, result.pdq_dihedral["rotate270"]) <= 40
    assert pdq.hamming(shown, result.pdq) > 64


def test_png_16_bit_gray_is_scaled_not_clipped() -> None:
    gray8 = generated_photo(3, 300, 200)[:, :, 1]
    gray16 = gray8.astype(np.uint16) * 257
    data = encode(Image.fromarray(gray16), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I;16")
    result = childshield.hash_bytes(data)
    assert result.pdq == pdq.hash_luma(gray8.astype(np.float32)).hex


def test_png_palette_and_alpha(rgb: np.ndarray, expected: pdq.PdqHash) -> None:
    palette = Image.fromarray(rgb).quantize(256)
    result = childshield.hash_bytes(encode(palette, "PNG"))
    assert near(result, expected, 24)
    # Alpha is ignored: the colour channels are hashed, as the reference does with RGBA arrays.
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 7, dtype=np.uint8)])
    result = childshield.hash_bytes(encode(rgba, "PNG"))
    assert result.pdq == expected.hex
    la = Image.fromarray(rgb[:, :, 0]).convert("LA")
    result = childshield.hash_bytes(encode(la, "PNG"))
    assert result.pdq == pdq.hash_luma(rgb[:, :, 0].astype(np.float32)).hex


def test_one_bit_and_grayscale_images(rgb: np.ndarray) -> None:
    gray = Image.fromarray(rgb).convert("L")
    assert childshield.hash_bytes(encode(gray, "PNG")).pdq == pdq.hash_luma(np.asarray(gray, np.float32)).hex
    bilevel = gray.convert("1")
    result = childshield.hash_bytes(encode(bilevel, "PNG"))
    assert result.pdq == pdq.hash_luma(np.asarray(bilevel.convert("L"), np.float32)).hex


def _animation(frames: list[np.ndarray], fmt: str) -> bytes:
    images = [Image.fromarray(f) for f in frames]
    buf = io.BytesIO()
    images[0].save(buf, format=fmt, save_all=True, append_images=images[1:], duration=100, loop=0)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_animations_first_frame_and_every_frame(fmt: str) -> None:
    frames = [generated_photo(60 + k, 200, 150) for k in range(3)]
    data = _animation(frames, fmt)
    first = childshield.hash_bytes(data)
    assert len(first.frames) == 1
    assert first.frame_count == 1
    every = childshield.hash_bytes(data, childshield.HashOptions(frames=True))
    assert [f.index for f in every.frames] == [0, 1, 2]
    assert every.frame_count == 3
    assert every.frames[0].pdq == first.pdq
    for got, frame in zip(every.frames, frames, strict=True):
        want = pdq.hash_rgb(frame).hex
        assert got.pdq is not None
        assert pdq.hamming(got.pdq, want) <= (40 if fmt == "GIF" else 16)  # GIF: 256-colour palette
    distinct = {f.pdq for f in every.frames}
    assert len(distinct) == 3


def test_multi_page_tiff_frames() -> None:
    pages = [generated_photo(80 + k, 160, 120) for k in range(2)]
    data = _animation(pages, "TIFF")
    result = childshield.hash_bytes(data, childshield.HashOptions(frames=True))
    assert [f.pdq for f in result.frames] == [pdq.hash_rgb(p).hex for p in pages]


def test_max_frames_is_honoured() -> None:
    frames = [generated_photo(90 + k, 64, 48) for k in range(6)]
    result = childshield.hash_bytes(
        _animation(frames, "GIF"), childshield.HashOptions(frames=True, max_frames=4)
    )
    assert len(result.frames) == 4
    assert result.frame_count == 6


def test_digests_are_of_the_file_bytes(rgb: np.ndarray) -> None:
    import hashlib

    data = encode(rgb, "PNG")
    result = childshield.hash_bytes(data)
    assert result.md5 == hashlib.md5(data).hexdigest()
    assert result.sha1 == hashlib.sha1(data).hexdigest()
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert result.size_bytes == len(data)


def test_tiny_image_has_no_pdq() -> None:
    result = childshield.hash_bytes(encode(np.zeros((4, 40, 3), np.uint8), "PNG"))
    assert result.pdq is None
    assert result.pdq_quality == 0
    assert result.sha256  # digests are still there


def test_large_png_reduced_path_is_close(rgb: np.ndarray) -> None:
    big = np.asarray(Image.fromarray(rgb).resize((2400, 1800), Image.Resampling.BICUBIC))
    data = encode(big, "PNG", compress_level=1)
    ref_hex, _ = pdq_from_bytes(data)
    picture = decode(data, choose_factor=lambda w, h: 4).pictures[0]
    assert picture.factor == 4
    assert pdq.hamming(childshield.hash_bytes(data).pdq or "", ref_hex) <= 6
