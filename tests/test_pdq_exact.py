"""PDQ bits and quality equal Meta's reference (the pdqhash binding) on the same pixels."""

from __future__ import annotations

import numpy as np
import pdqhash
import pytest
from threatexchange.signal_type.pdq.pdq_hasher import _pdq_from_numpy_array

from childshield.signals import pdq
from childshield.testing.corpus import bundled_photos, generated_photo

CORES = [True, False]  # the C core and the NumPy fallback


def reference_hex(vector: np.ndarray) -> str:
    return f"{int(''.join(str(int(b)) for b in vector), 2):064x}"


def pixel_cases() -> list[np.ndarray]:
    rng = np.random.default_rng(2024)
    cases: list[np.ndarray] = [arr for _, arr in bundled_photos()]
    cases.append(generated_photo(1, 640, 480))
    for _ in range(24):
        h, w = (int(x) for x in rng.integers(5, 700, 2))
        cases.append(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        base = generated_photo(int(rng.integers(0, 1000)), 700, 700)
        y, x = (int(v) for v in rng.integers(0, 40, 2))
        cases.append(np.ascontiguousarray(base[y : y + h, x : x + w]))
    # Edge sizes: the 5 px minimum, exactly 64x64 (PDQ's pre-downsampled path), 128/129 window edges.
    for h, w in [(5, 5), (5, 900), (900, 5), (64, 64), (128, 129), (129, 128), (257, 1023)]:
        cases.append(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    # Flat and nearly flat images: many DCT values tie with the median.
    cases.append(np.full((100, 100, 3), 128, dtype=np.uint8))
    flat = np.full((200, 300, 3), 60, dtype=np.uint8)
    flat[50:60, 70:90] = 61
    cases.append(flat)
    return cases


CASES = pixel_cases()


@pytest.mark.parametrize("native", CORES)
def test_bits_and_quality_equal_reference(native: bool) -> None:
    if native and pdq.native_core() is None:
        pytest.fail("the C core was not built (setup.py extension); install a C compiler")
    for pixels in CASES:
        expected_hex, expected_quality = _pdq_from_numpy_array(pixels)
        got = pdq.hash_rgb(pixels, use_native=native)
        assert got.quality == expected_quality, pixels.shape
        assert got.hex == expected_hex, (pixels.shape, pdq.hamming(got.hex, expected_hex))


@pytest.mark.parametrize("native", CORES)
def test_dihedral_variants_equal_reference(native: bool) -> None:
    names = list(pdq.Dihedral)
    for pixels in CASES[:20]:
        vectors, quality = pdqhash.compute_dihedral(pixels)
        got, got_quality = pdq.hash_luma_dihedral(
            pdq.luma_from_rgb(pixels, use_native=native), use_native=native
        )
        assert got_quality == quality
        assert [got[name] for name in names] == [reference_hex(v) for v in vectors]


def test_dihedral_variants_match_transformed_images() -> None:
    """The variant derived from the DCT is the hash of the actually rotated/mirrored image."""
    pixels = generated_photo(5, 512, 512)  # square: rotations keep the same sampling grid
    got, _ = pdq.hash_luma_dihedral(pdq.luma_from_rgb(pixels))
    transforms = {
        pdq.Dihedral.ROTATE90: np.rot90(pixels, 1),
        pdq.Dihedral.ROTATE180: np.rot90(pixels, 2),
        pdq.Dihedral.ROTATE270: np.rot90(pixels, 3),
        pdq.Dihedral.FLIPX: pixels[::-1],
        pdq.Dihedral.FLIPY: pixels[:, ::-1],
        pdq.Dihedral.FLIP_PLUS1: pixels.transpose(1, 0, 2),
        pdq.Dihedral.FLIP_MINUS1: np.rot90(pixels, 2).transpose(1, 0, 2),
    }
    for variant, image in transforms.items():
        direct = pdq.hash_rgb(np.ascontiguousarray(image)).hex
        distances = {name: pdq.hamming(direct, value) for name, value in got.items()}
        # PDQ's box windows are not centred, so a mirrored image is not mirrored sample for sample:
        # the derived variant is near (not equal), and far nearer than any other variant.
        assert min(distances, key=lambda name: distances[name]) is variant
        assert distances[variant] <= 40
        assert sorted(distances.values())[1] >= 90


def test_luma_matches_binding_arithmetic() -> None:
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (37, 53, 4), dtype=np.uint8)
    expected = (pixels[:, :, 0] * 0.299 + pixels[:, :, 1] * 0.587 + pixels[:, :, 2] * 0.114).astype(
        np.float32
    )
    assert np.array_equal(pdq.luma_from_rgb(pixels, use_native=True), expected)
    assert np.array_equal(pdq.luma_from_rgb(pixels, use_native=False), expected)


def test_tiny_images_have_no_pdq() -> None:
    for h, w in [(4, 100), (100, 4), (1, 1), (4, 4)]:
        pixels = np.zeros((h, w, 3), dtype=np.uint8)
        assert pdqhash.compute(pixels)[1] == 0
        assert pdq.hash_rgb(pixels) == pdq.PdqHash("0" * 64, 0)


def test_hex_round_trip_and_distance() -> None:
    pixels = generated_photo(9, 300, 200)
    value = pdq.hash_rgb(pixels)
    bits = pdq.bits_from_hex(value.hex)
    assert pdq.hex_from_bits(bits) == value.hex
    flipped = bits.copy()
    flipped[[0, 17, 255]] ^= True
    assert value.distance(pdq.hex_from_bits(flipped)) == 3
    assert pdq.hamming(value.hex.upper(), value.hex) == 0
    with pytest.raises(ValueError, match="64 hex digits"):
        pdq.normalize_hex("abc")
    with pytest.raises(ValueError):
        pdq.normalize_hex("g" * 64)


def test_bit_order_is_threatexchange_order() -> None:
    """Bit k (16*row + column of the DCT block) has weight 2**k in the hex string."""
    block = np.zeros((16, 16), dtype=np.float32)
    block[0, 0] = 5.0  # only coefficient 0 is above the median
    bits = pdq.bits_from_dct(block)
    assert pdq.hex_from_bits(bits) == "0" * 63 + "1"
    block = np.zeros((16, 16), dtype=np.float32)
    block[15, 15] = 5.0
    assert pdq.hex_from_bits(pdq.bits_from_dct(block)) == "8" + "0" * 63
