"""On real files, our fast pipeline stays within a few bits of the reference pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from threatexchange.signal_type.pdq.pdq_hasher import pdq_from_file

import childshield
from childshield.signals import pdq
from childshield.testing.corpus import encode


def test_within_10_bits_and_4_on_average(file_corpus: list[Path]) -> None:
    distances = []
    for path in file_corpus:
        ref_hex, ref_quality = pdq_from_file(path)
        if ref_quality < 80:
            continue
        got = childshield.hash_file(path)
        assert got.pdq is not None
        d = pdq.hamming(got.pdq, ref_hex)
        assert d <= 10, (path.name, d)
        assert abs(got.pdq_quality - ref_quality) <= 5, path.name
        distances.append(d)
    assert len(distances) >= 10
    assert float(np.mean(distances)) <= 4.0, distances


def test_large_files_are_reduced_and_small_ones_are_not(file_corpus: list[Path]) -> None:
    """Large images take the reduced path (where the speed comes from); small ones the exact one."""
    from childshield.media.decode import decode
    from childshield.signals.pdq_picture import max_reduction

    big = next(p for p in file_corpus if p.name == "photo00.jpg")  # 4000x3000
    picture = decode(big.read_bytes(), choose_factor=max_reduction).pictures[0]
    assert picture.factor == 8
    assert picture.pixels.shape == (375, 500)
    small = next(p for p in file_corpus if p.name == "photo07.jpg")  # 640x480
    picture = decode(small.read_bytes(), choose_factor=max_reduction).pictures[0]
    assert picture.factor == 1
    assert picture.pixels.shape == (480, 640, 3)


def test_exact_mode_equals_reference_pipeline(file_corpus: list[Path]) -> None:
    """--exact decodes at full size with the same decoder, so the hash is the reference's to the bit."""
    for path in file_corpus[:6]:
        ref_hex, ref_quality = pdq_from_file(path)
        got = childshield.hash_file(path, childshield.HashOptions(exact=True))
        assert (got.pdq, got.pdq_quality) == (ref_hex, ref_quality), path.name


def test_small_files_equal_reference_pipeline(tmp_path: Path, photo: np.ndarray) -> None:
    for fmt, ext in [("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp"), ("BMP", "bmp"), ("TIFF", "tif")]:
        path = tmp_path / f"small.{ext}"
        path.write_bytes(encode(photo[:300, :400], fmt))
        ref_hex, ref_quality = pdq_from_file(path)
        got = childshield.hash_file(path)
        assert (got.pdq, got.pdq_quality) == (ref_hex, ref_quality), fmt
