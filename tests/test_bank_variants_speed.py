"""The fast bank variants (crops from shared sample passes, one batched DCT) equal hashing every cropped
and rotated plane on its own, as ``bank_variants`` first did."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from childshield.hashing.service import first_picture
from childshield.signals import pdq, pdq_reduced
from childshield.signals import pdq_bank_variants as bv
from childshield.signals import pdq_variants as pv
from childshield.testing.corpus import encode, generated_photo

F32 = npt.NDArray[np.float32]


def reference_crops(plane: F32) -> dict[str, F32]:
    """The crop windows as first written."""
    rows, cols = plane.shape
    out: dict[str, F32] = {}
    for share in bv.CROP_SHARES:
        cut_r, cut_c = round(rows * share), round(cols * share)
        for at_r in bv.CROP_ANCHORS:
            for at_c in bv.CROP_ANCHORS:
                top, left = round(cut_r * at_r), round(cut_c * at_c)
                window = plane[top : top + rows - cut_r, left : left + cols - cut_c]
                out[f"crop{round(share * 100)}@{at_r:g},{at_c:g}"] = window
    return out


def reference_bank_variants(plane: F32, factor: int) -> dict[str, str]:
    """``bank_variants`` as first written: ``hash_plane`` of every edited plane."""
    out: dict[str, str] = {}
    for name, edited in {**reference_crops(plane), **bv.rotations(plane)}.items():
        hashed = pv.hash_plane(edited, factor)
        if hashed is not None:
            out[name] = hashed[0]
    return out


@pytest.mark.parametrize(
    ("size", "fmt"),
    [
        ((1155, 866), "JPEG"),  # decoded at 1/2: a plane of block averages
        ((640, 480), "JPEG"),  # full size, box-reduced for the variants
        ((866, 1155), "PNG"),
        ((2049, 1537), "JPEG"),
        ((333, 517), "PNG"),  # full size, hashed without reduction
        ((97, 61), "PNG"),
    ],
)
def test_bank_variants_equal_hashing_each_edited_plane(size: tuple[int, int], fmt: str) -> None:
    w, h = size
    picture = first_picture(encode(generated_photo(w * 3 + h, w, h), fmt))
    plane, factor = pv.variant_plane(picture)
    fast = bv.bank_variants(picture)
    slow = reference_bank_variants(plane, factor)
    assert list(fast) == list(slow) and len(fast) == 104
    # Bit for bit: variants whose bits float rounding could decide are hashed again one by one.
    assert fast == slow


@pytest.mark.parametrize("pattern", ["flat", "gradient", "stripes", "checks"])
def test_flat_and_one_dimensional_pictures_keep_their_rounding(pattern: str) -> None:
    # Most coefficients of these are zero but for rounding: their bits are whatever rounding makes them,
    # so the variants whose margin is that small are hashed one by one, as they were.
    yy, xx = np.mgrid[0:480, 0:640]
    level = {
        "flat": np.full((480, 640), 128),
        "gradient": xx * 255 // 640,
        "stripes": (xx // 16) % 2 * 200 + 20,
        "checks": (yy // 40 + xx // 40) % 2 * 255,
    }[pattern]
    picture = first_picture(encode(np.repeat(level.astype(np.uint8)[:, :, None], 3, axis=2), "PNG"))
    plane, factor = pv.variant_plane(picture)
    assert bv.bank_variants(picture) == reference_bank_variants(plane, factor)


def test_crop_windows_are_unchanged() -> None:
    plane = np.arange(217 * 301, dtype=np.float32).reshape(217, 301)
    got, want = bv.crops(plane), reference_crops(plane)
    assert list(got) == list(want)
    for name, window in want.items():
        assert np.shares_memory(got[name], plane)
        np.testing.assert_array_equal(got[name], window)


@pytest.mark.parametrize("size", [(5, 5), (6, 40), (7, 300), (8, 8), (9, 200), (200, 16), (18, 37), (31, 40)])
def test_tiny_pictures_are_hashed_edit_by_edit(size: tuple[int, int]) -> None:
    # With 8 or 16 lines on an axis some DCT coefficients are zero but for rounding, and the fast path
    # would flip many bits: such planes take the definition, crops too small to hash left out.
    w, h = size
    picture = first_picture(encode(generated_photo(w + 5 * h, w, h), "PNG"))
    plane, factor = pv.variant_plane(picture)
    assert factor == 1 and min(plane.shape) < bv.SMALL_SIDE
    assert bv.bank_variants(picture) == reference_bank_variants(plane, factor)


@pytest.mark.parametrize("size", [(32, 32), (33, 200), (64, 64), (66, 66), (130, 70)])
def test_small_pictures_take_the_fast_path(size: tuple[int, int]) -> None:
    w, h = size
    picture = first_picture(encode(generated_photo(w + 5 * h, w, h), "PNG"))
    plane, factor = pv.variant_plane(picture)
    assert factor == 1 and min(plane.shape) >= bv.SMALL_SIDE
    fast = bv.bank_variants(picture)
    slow = reference_bank_variants(plane, factor)
    assert fast == slow and len(fast) == 104


def test_window_grids_are_the_samples_of_each_window() -> None:
    rng = np.random.default_rng(8)
    plane = rng.uniform(0, 255, (217, 301)).astype(np.float32)
    factor = 3
    row_windows = [(0, 217), (5, 190), (27, 190), (100, 60)]
    col_windows = [(0, 301), (1, 290), (11, 290), (250, 51), (0, 7)]
    grids = pv.window_grids(plane, factor, row_windows, col_windows)
    assert grids.shape == (4, 5, 64, 64) and grids.dtype == np.float32
    into = np.full((4, 5, 64, 64), np.nan, dtype=np.float32)
    assert pv.window_grids(plane, factor, row_windows, col_windows, out=into) is into
    np.testing.assert_array_equal(into, grids)
    for i, (top, rows) in enumerate(row_windows):
        for j, (left, cols) in enumerate(col_windows):
            window = np.ascontiguousarray(plane[top : top + rows, left : left + cols])
            want = pdq_reduced.samples64(window, cols * factor, rows * factor, factor)
            np.testing.assert_allclose(grids[i, j], want, rtol=0, atol=1e-3)
            alone = pv.sample_grids(window, factor, mirrored=False)
            np.testing.assert_allclose(grids[i, j], alone, rtol=0, atol=1e-3)


@pytest.mark.parametrize("window", [(-1, 10), (0, 0), (200, 18), (0, 218)])
def test_window_grids_refuse_windows_outside_the_plane(window: tuple[int, int]) -> None:
    plane = np.zeros((217, 301), dtype=np.float32)
    with pytest.raises(ValueError, match="not within"):
        pv.window_grids(plane, 2, [window], [(0, 301)])


def test_grid_hexes_equal_hashing_each_grid_where_the_margin_is_wide() -> None:
    rng = np.random.default_rng(21)
    smooth = np.cumsum(np.cumsum(rng.normal(0, 1, (40, 64, 64)), axis=1), axis=2)
    grids = np.concatenate([rng.uniform(0, 255, (40, 64, 64)), smooth]).astype(np.float32)
    fast, margins = pv.grid_hexes(grids)
    assert len(fast) == 80 and margins.shape == (80,)
    for grid, value, margin in zip(grids, fast, margins, strict=True):
        block = pv._hash_grid(grid)[0]
        assert value == pdq.hex_from_bits(pdq.bits_from_dct(block)) or margin < bv.ROUNDING_MARGIN
        ordered = np.sort(block.astype(np.float64).ravel())
        want = (ordered[128] - ordered[127]) / np.linalg.norm(grid.astype(np.float64))
        assert margin == pytest.approx(want, rel=1e-2, abs=1e-6)
    assert pv.grid_hexes(np.full((3, 64, 64), 77.0, dtype=np.float32))[1].max() < 1e-6  # flat: rounding
    assert pv.grid_hexes(grids[:0])[0] == []
    with pytest.raises(ValueError, match="64, 64"):
        pv.grid_hexes(np.zeros((2, 32, 64), dtype=np.float32))
