"""The shared-pass query variants equal hashing each turned (or trimmed) plane on its own."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from childshield.hashing.service import first_picture
from childshield.signals import pdq, pdq_reduced
from childshield.signals import pdq_variants as pv
from childshield.testing.corpus import encode, generated_photo

F32 = npt.NDArray[np.float32]


def reference_border_box(plane: F32, tolerance: float = pv.BORDER_TOLERANCE) -> tuple[int, ...] | None:
    """border_box as first written: every line up to the limit looked at."""
    rows, cols = plane.shape
    if rows < 8 or cols < 8:
        return None

    def run(lines: F32, limit: int) -> int:
        level = float(np.median(lines[0]))
        uniform = (np.abs(lines[:limit] - level) <= tolerance).mean(axis=1) >= 0.98
        stop = np.flatnonzero(~uniform)
        return int(stop[0]) if len(stop) else limit

    sides = [
        run(plane, int(rows * pv.MAX_TRIM_SHARE)),
        run(plane[::-1], int(rows * pv.MAX_TRIM_SHARE)),
        run(plane.T, int(cols * pv.MAX_TRIM_SHARE)),
        run(plane.T[::-1], int(cols * pv.MAX_TRIM_SHARE)),
    ]
    shares = [rows, rows, cols, cols]
    kept = tuple(s if s >= n * pv.MIN_TRIM_SHARE else 0 for s, n in zip(sides, shares, strict=True))
    return kept if any(kept) else None


@pytest.mark.parametrize(
    ("size", "fmt"),
    [
        ((1155, 866), "JPEG"),
        ((866, 1155), "JPEG"),
        ((640, 480), "JPEG"),
        ((320, 240), "PNG"),
        ((97, 61), "PNG"),
    ],
)
def test_turned_variants_equal_hashing_each_turned_plane(size: tuple[int, int], fmt: str) -> None:
    w, h = size
    picture = first_picture(encode(generated_photo(w + h, w, h), fmt))
    plane, factor = pv.variant_plane(picture)
    fast = pv.query_variants(picture, trim=False)
    assert list(fast) == [turn.value for turn in pv._TURNS]
    for turn, undo in pv._TURNS.items():
        slow = pv.hash_plane(undo(plane), factor)
        assert slow is not None
        assert fast[turn.value][1] == slow[1]
        # Equal but for float rounding, which may flip a coefficient sitting on the median.
        assert pdq.hamming(fast[turn.value][0], slow[0]) <= 2, turn


def test_sample_grids_are_the_samples_of_the_mirrored_planes() -> None:
    rng = np.random.default_rng(3)
    plane = rng.uniform(0, 255, (217, 301)).astype(np.float32)
    factor = 3
    grids = pv.sample_grids(plane, factor)
    for a in (0, 1):
        for b in (0, 1):
            mirrored = np.ascontiguousarray(plane[:: -1 if a else 1, :: -1 if b else 1])
            want = pdq_reduced.samples64(mirrored, 301 * factor, 217 * factor, factor)
            got = grids[64 * a : 64 * a + 64, 64 * b : 64 * b + 64]
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-3)
    plain = pv.sample_grids(plane, factor, mirrored=False)
    np.testing.assert_allclose(plain, grids[:64, :64], rtol=0, atol=1e-4)


def test_trimmed_variant_equals_hashing_the_inner_plane() -> None:
    photo = generated_photo(41, 640, 360)
    boxed = np.zeros((480, 640, 3), dtype=np.uint8)
    boxed[60:420] = photo
    picture = first_picture(encode(boxed, "JPEG", quality=90))
    plane, factor = pv.variant_plane(picture)
    top, bottom, left, right = pv.border_box(plane) or (0, 0, 0, 0)
    assert top > 0 and bottom > 0
    slow = pv.hash_plane(plane[top : plane.shape[0] - bottom, left : plane.shape[1] - right], factor)
    fast = pv.query_variants(picture, dihedral=False)[pv.TRIMMED]
    assert slow is not None and fast[1] == slow[1]
    assert pdq.hamming(fast[0], slow[0]) <= 2


def test_border_box_is_unchanged_by_looking_at_the_thin_border_first() -> None:
    rng = np.random.default_rng(11)
    for case in range(300):
        rows, cols = int(rng.integers(4, 160)), int(rng.integers(4, 160))
        plane = rng.uniform(0, 255, (rows, cols)).astype(np.float32)
        for side in range(4):
            width = int(rng.integers(0, max(rows, cols) // 2 + 1))
            level = float(rng.choice([0.0, 255.0, rng.uniform(0, 255)]))
            noise = rng.normal(0, rng.choice([0.5, 4.0, 12.0]), plane.shape).astype(np.float32)
            band: list[tuple[slice, slice]] = [
                (slice(0, width), slice(None)),
                (slice(rows - width, rows), slice(None)),
                (slice(None), slice(0, width)),
                (slice(None), slice(cols - width, cols)),
            ]
            if width:
                plane[band[side]] = level + noise[band[side]]
        assert pv.border_box(plane) == reference_border_box(plane), case


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_box_reduce_is_the_block_mean(factor: int) -> None:
    plane = np.random.default_rng(factor).uniform(0, 255, (101, 77)).astype(np.float32)
    rows, cols = 101 // factor, 77 // factor
    want = plane[: rows * factor, : cols * factor].reshape(rows, factor, cols, factor).mean(axis=(1, 3))
    got = pv.box_reduce(plane, factor)
    assert got.dtype == np.float32 and got.shape == (rows, cols)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-3)


def test_median_is_numpys() -> None:
    rng = np.random.default_rng(5)
    for n in [8, 9, 10, 11, 64, 433, 578, 1000, 1001]:
        for line in (
            rng.uniform(0, 255, n).astype(np.float32),
            rng.integers(0, 4, n).astype(np.float32),  # ties
            np.full(n, 17.25, dtype=np.float32),
        ):
            assert pv._median(line) == float(np.median(line)), n
        spoiled = rng.uniform(0, 255, n).astype(np.float32)
        spoiled[n // 3] = np.nan
        assert np.isnan(pv._median(spoiled)) and np.isnan(np.median(spoiled))
