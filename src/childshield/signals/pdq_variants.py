"""Query-side PDQ variants: the hashes by which an edited copy of a known image can still be found.

An edited copy is hashed several ways, each undoing one common edit, and every hash is matched:

* the 7 rotations and reflections, as if the luma plane had really been turned (a mirrored copy turned
  back is the original's pixels again, so its hash lands within edit noise of the original's).  Deriving
  them from the DCT, as ``pdq.dihedral_dcts`` does, is cheaper still but PDQ's filter is not symmetric:
  those land about 10 bits away, which costs recall at the threshold's edge;
* ``trimmed``: uniform borders (letterbox, pillarbox, padding of one colour) cut away, so the content is
  hashed at the proportions it was shared at.

The plane is not turned 7 times.  PDQ's 64x64 samples of a (reduced) plane are ``Kr . plane . Kc^T``
(``pdq_reduced``), and turning the plane only mirrors and swaps those weights: mirroring the rows of the
plane is the same as mirroring the columns of ``Kr``, and a transposed plane gives the transposed
samples.  So one pass over the plane with the plain and the mirrored weights of each axis gives the 4
sample grids from which all 8 turns follow by transposing, exactly (up to float rounding) what hashing
each turned plane gives, asymmetric filter included.  Each weight row is a narrow band (the tent is a few
blocks wide), so the pass reads only those bands.

The decode is shared; the (usually reduced) plane is read about twice for all 7 turns (about 0.4 ms for
a 1-megapixel JPEG, where turning and hashing it 7 times took 8.5 ms), once more for ``trimmed``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from childshield.media.decode import Picture
from childshield.signals import pdq, pdq_reduced
from childshield.signals._pdq_numpy import dct_matrix, jarosz_window
from childshield.signals.pdq_picture import luma

F32 = npt.NDArray[np.float32]

BORDER_TOLERANCE = 10.0
"""Largest spread of luma (0..255) along a row or column for it to count as border (JPEG noise)."""
MAX_TRIM_SHARE = 0.4
"""No side is trimmed by more than this share of its axis: what is left must be content."""
MIN_TRIM_SHARE = 0.02
"""Borders thinner than this share of the axis are left alone (they barely move the hash)."""
VARIANT_BLOCKS_PER_WINDOW = 2
"""Variants of a full-size picture are hashed from block averages with PDQ's filter window this many
blocks wide: a few bits from a full-size hash, and about 8 times less work than one."""


TRIMMED = "trimmed"
"""The name of the border-trimmed variant; turned variants are named after ``pdq.Dihedral``."""

D = pdq.Dihedral
# Turning the plane back: each variant is the transform that undoes that edit of the original.  Only the
# definition: the hashes come from ``_GRID_OF_TURN`` (tests check both agree, turn by turn).
_TURNS: dict[pdq.Dihedral, Callable[[F32], F32]] = {
    D.ROTATE90: lambda p: np.rot90(p, 1),
    D.ROTATE180: lambda p: np.rot90(p, 2),
    D.ROTATE270: lambda p: np.rot90(p, 3),
    D.FLIPX: lambda p: p[:, ::-1],
    D.FLIPY: lambda p: p[::-1, :],
    D.FLIP_PLUS1: lambda p: p.T,
    D.FLIP_MINUS1: lambda p: np.rot90(p, 2).T,
}
# The same turns on the sample grids: (rows mirrored, columns mirrored, transposed).  Rows mirrored picks
# the grid made with the mirrored row weights; a transposed plane has the transposed grid.
_GRID_OF_TURN: dict[pdq.Dihedral, tuple[bool, bool, bool]] = {
    D.ROTATE90: (False, True, True),  # rot90(P) = (P J)^T
    D.ROTATE180: (True, True, False),  # J P J
    D.ROTATE270: (True, False, True),  # (J P)^T
    D.FLIPX: (False, True, False),  # P J
    D.FLIPY: (True, False, False),  # J P
    D.FLIP_PLUS1: (False, False, True),  # P^T
    D.FLIP_MINUS1: (True, True, True),  # (J P J)^T
}


def _median(line: F32) -> float:
    """``np.median`` of a 1-d line (NaN when it holds one), without its overhead."""
    n = line.shape[0]
    half = n // 2
    middle = [half] if n % 2 else [half - 1, half]
    part = np.partition(line, [*middle, n - 1])  # the last place shows a NaN, as np.median checks
    if np.isnan(part[n - 1]):
        return float("nan")
    if n % 2:
        return float(part[half])
    return float((part[half - 1] + part[half]) / part.dtype.type(2))


def _border_lines(lines: F32, limit: int, least: float, tolerance: float) -> int:
    """How many leading lines (rows of ``lines``) are border, at most ``limit``; 0 when under ``least``.

    Most pictures have no border, so the lines a counted border must span are looked at first, and the
    rest only when all of those are border."""
    level = _median(lines[0])
    must = min(limit, math.ceil(least))
    for start, stop in ((0, must), (must, limit)):
        near = np.abs(lines[start:stop] - level) <= tolerance
        found = np.flatnonzero(near.mean(axis=1) < 0.98)
        if len(found):
            count = start + int(found[0])
            return count if count >= least else 0
    return limit if limit >= least else 0


def border_box(plane: F32, *, tolerance: float = BORDER_TOLERANCE) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right) rows/columns of uniform border to cut, or None when there is none.

    A border row or column has 98% of its pixels within ``tolerance`` of the level of the outermost one
    (so JPEG noise and a few specks, such as a logo in the bar, do not stop it); each side is at most
    ``MAX_TRIM_SHARE`` of its axis, and borders thinner than ``MIN_TRIM_SHARE`` are ignored."""
    rows, cols = plane.shape
    if rows < 8 or cols < 8:
        return None
    row_limit, row_least = int(rows * MAX_TRIM_SHARE), rows * MIN_TRIM_SHARE
    col_limit, col_least = int(cols * MAX_TRIM_SHARE), cols * MIN_TRIM_SHARE
    top = _border_lines(plane, row_limit, row_least, tolerance)
    bottom = _border_lines(plane[::-1], row_limit, row_least, tolerance)
    left = _border_lines(plane.T, col_limit, col_least, tolerance)
    right = _border_lines(plane.T[::-1], col_limit, col_least, tolerance)
    if not (top or bottom or left or right):
        return None
    return top, bottom, left, right


def hash_plane(plane: F32, factor: int) -> tuple[str, int] | None:
    """(hex, quality) of a luma plane of ``factor``-pixel block averages (1: full size); None when the
    picture it stands for has a side under PDQ's minimum."""
    rows, cols = plane.shape
    if rows * factor < pdq.MIN_DIMENSION or cols * factor < pdq.MIN_DIMENSION:
        return None
    plane = np.ascontiguousarray(plane, dtype=np.float32)
    if factor == 1:
        block, quality = pdq.dct16(plane)
    else:
        # The partial last block may now sit first: widths are rounded to whole blocks (a variant needs
        # to land near the original's hash, not to equal a full decode bit for bit).
        block, quality = pdq_reduced.hash_reduced(plane, cols * factor, rows * factor, factor)
    return pdq.hex_from_bits(pdq.bits_from_dct(block)), quality


def box_reduce(plane: F32, factor: int) -> F32:
    """Averages of ``factor`` x ``factor`` blocks; the last rows and columns that do not fill a block are
    left out (at most ``factor`` - 1 pixels, which a variant's hash does not notice)."""
    if factor == 1:
        return plane
    rows, cols = plane.shape[0] // factor, plane.shape[1] // factor
    whole = np.asarray(plane[: rows * factor, : cols * factor], dtype=np.float32)
    # Sums of strided rows, then of strided columns: several times faster than a mean over the axes of
    # a 4-d reshape, and the same up to float rounding.
    by_rows = whole[0::factor].copy()
    for i in range(1, factor):
        by_rows += whole[i::factor]
    out: F32 = by_rows[:, 0::factor].copy()
    for j in range(1, factor):
        out += by_rows[:, j::factor]
    out /= np.float32(factor * factor)
    return out


def variant_plane(picture: Picture) -> tuple[F32, int]:
    """The luma plane to hash variants from and its block factor: a full-size picture is reduced first."""
    plane = luma(picture.pixels)
    if picture.factor > 1:
        return plane, picture.factor
    factor = max(1, jarosz_window(min(picture.width, picture.height)) // VARIANT_BLOCKS_PER_WINDOW)
    return box_reduce(plane, factor), factor


SAMPLES_PER_BAND = 4
"""Samples weighed together in one small matrix product: their weights span a narrow band of lines."""

Band = tuple[int, int, int, F32]
"""(first sample, first line, end line, weights (samples, lines)) of a few consecutive samples."""


@functools.lru_cache(maxsize=256)
def _axis_bands(blocks: int, factor: int, mirrored: bool) -> tuple[Band, ...]:
    """PDQ's sample weights on an axis of ``blocks`` averages of ``factor`` pixels, cut into bands.

    The samples are the 64 of the axis, then, with ``mirrored``, the 64 of the reversed axis.  Each
    sample's weights are a tent a few blocks wide, so a band of ``SAMPLES_PER_BAND`` consecutive samples
    reads only the lines between its first and last weight."""
    kernel = pdq_reduced.block_kernel(blocks * factor, factor, blocks)
    if mirrored:
        kernel = np.concatenate([kernel, kernel[:, ::-1]])
    bands: list[Band] = []
    for first in range(0, kernel.shape[0], SAMPLES_PER_BAND):
        part = kernel[first : first + SAMPLES_PER_BAND]
        used = np.flatnonzero(part.any(axis=0))
        lo, hi = (int(used[0]), int(used[-1]) + 1) if len(used) else (0, 1)
        weights = np.ascontiguousarray(part[:, lo:hi], dtype=np.float32)
        weights.setflags(write=False)
        bands.append((first, lo, hi, weights))
    return tuple(bands)


def _weigh_lines(lines: F32, bands: tuple[Band, ...], samples: int) -> F32:
    """(samples, line length): each band's weights times the lines it spans (rows of ``lines``)."""
    out: F32 = np.empty((samples, lines.shape[1]), dtype=np.float32)
    for first, lo, hi, weights in bands:
        np.matmul(weights, lines[lo:hi], out=out[first : first + weights.shape[0]])
    return out


def sample_grids(plane: F32, factor: int, *, mirrored: bool = True) -> F32:
    """PDQ's 64x64 samples of a plane of ``factor``-pixel block averages, with every mirroring.

    With ``mirrored`` the result is 128x128: the quarter ``[64a : 64a + 64, 64b : 64b + 64]`` holds the
    samples of the plane with its rows (``a``) and columns (``b``) reversed; without, 64x64 of the plane
    as it is.  Each equals ``pdq_reduced.samples64`` of that plane up to float rounding."""
    rows, cols = plane.shape
    samples = 128 if mirrored else 64
    data = np.asarray(plane, dtype=np.float32)
    # Rows first (samples x cols), then the columns of the transposed result (samples x samples).
    by_rows = _weigh_lines(data, _axis_bands(rows, factor, mirrored), samples)
    by_cols = _weigh_lines(np.ascontiguousarray(by_rows.T), _axis_bands(cols, factor, mirrored), samples)
    out: F32 = np.ascontiguousarray(by_cols.T)
    return out


def _hash_grid(grid: F32) -> tuple[F32, int]:
    """DCT block and quality of one 64x64 sample grid (PDQ skips its filter on 64x64)."""
    return pdq.dct16(np.ascontiguousarray(grid, dtype=np.float32))


Window = tuple[int, int]
"""(first line, number of lines) of a window on one axis of a plane."""


def _window_bands(windows: Sequence[Window], factor: int, length: int) -> tuple[Band, ...]:
    """The bands of each window's 64 samples, window after window, moved to where the window starts on
    an axis of ``length`` lines."""
    bands: list[Band] = []
    for index, (start, lines) in enumerate(windows):
        if start < 0 or lines < 1 or start + lines > length:
            raise ValueError(f"window of {lines} lines at {start} is not within {length} lines")
        for first, lo, hi, weights in _axis_bands(lines, factor, False):
            bands.append((first + 64 * index, lo + start, hi + start, weights))
    return tuple(bands)


def window_grids(
    plane: F32,
    factor: int,
    row_windows: Sequence[Window],
    col_windows: Sequence[Window],
    *,
    out: F32 | None = None,
) -> F32:
    """PDQ's 64x64 samples of every window of a plane of ``factor``-pixel block averages.

    Returns (row windows, column windows, 64, 64), written into ``out`` when given: grid ``[i, j]`` is
    ``sample_grids`` (unmirrored) of ``plane[r : r + n, c : c + m]`` for the ``i``-th row window
    ``(r, n)`` and the ``j``-th column window ``(c, m)``, up to float rounding.  A window of the plane is
    the plane of a cropped picture, so this hashes many crops at once: the rows are weighed once for all
    column windows, the columns once for all row windows."""
    rows, cols = plane.shape
    data = np.asarray(plane, dtype=np.float32)
    by_rows = _weigh_lines(data, _window_bands(row_windows, factor, rows), 64 * len(row_windows))
    by_cols = _weigh_lines(
        np.ascontiguousarray(by_rows.T), _window_bands(col_windows, factor, cols), 64 * len(col_windows)
    )
    # by_cols[64 j + v, 64 i + u] is sample (u, v) of the window (i, j).
    grids = by_cols.reshape(len(col_windows), 64, len(row_windows), 64).transpose(2, 0, 3, 1)
    if out is None:
        made: F32 = np.ascontiguousarray(grids)
        return made
    out[...] = grids
    return out


def grid_hexes(grids: F32) -> tuple[list[str], npt.NDArray[np.float64]]:
    """PDQ hex of each of a stack of 64x64 sample grids (n, 64, 64), as ``_hash_grid`` and
    ``pdq.bits_from_dct`` give one by one (up to float rounding), and the margin of each.

    A hash's bits are the coefficients above the median, so they only change when coefficients cross
    it: the margin is the gap between the 128th and the 129th smallest coefficient, over the grid's
    norm (the scale of float rounding in computing them).  Moving each coefficient by less than half
    the margin (times the norm) keeps every bit.  The quality is not computed.

    The DCT of all grids is two matrix products: ``grid . D^T`` for all of them stacked, then ``D``
    times all the results side by side."""
    count = grids.shape[0]
    if grids.shape[1:] != (64, 64):
        raise ValueError(f"grids must be (n, 64, 64), got {grids.shape}")
    d = dct_matrix()
    data = np.ascontiguousarray(grids, dtype=np.float32)
    right = (data.reshape(count * 64, 64) @ d.T).reshape(count, 64, 16)  # grid . D^T
    side_by_side = np.ascontiguousarray(right.transpose(1, 0, 2)).reshape(64, count * 16)
    blocks = (d @ side_by_side).reshape(16, count, 16).transpose(1, 0, 2).reshape(count, 256)
    # As pdq.bits_from_dct and pdq.hex_from_bits: above the lower median, bit k weighs 2**k.
    middle = np.sort(blocks, axis=1)[:, 127:129].astype(np.float64)  # faster than a partition here
    packed = np.packbits(blocks[:, ::-1] > middle[:, :1], axis=1)
    flat = data.reshape(count, 4096)
    norms = np.sqrt(np.einsum("ij,ij->i", flat, flat).astype(np.float64))  # a scale: float32 will do
    margins: npt.NDArray[np.float64] = (middle[:, 1] - middle[:, 0]) / np.maximum(norms, 1e-30)
    return [row.tobytes().hex() for row in packed], margins


def turned_variants(plane: F32, factor: int) -> dict[str, tuple[str, int]]:
    """{turn: (hex, quality)} of the 7 rotations and reflections of a plane of block averages, as
    ``hash_plane`` of each turned plane would give (up to float rounding); {} when the picture it stands
    for has a side under PDQ's minimum."""
    rows, cols = plane.shape
    if rows * factor < pdq.MIN_DIMENSION or cols * factor < pdq.MIN_DIMENSION:
        return {}
    grids = sample_grids(plane, factor)
    blocks: dict[tuple[bool, bool], tuple[F32, int]] = {}
    for a in (False, True):
        for b in (False, True):
            blocks[a, b] = _hash_grid(grids[64 * a : 64 * a + 64, 64 * b : 64 * b + 64])
    out: dict[str, tuple[str, int]] = {}
    for turn, (a, b, transposed) in _GRID_OF_TURN.items():
        block, quality = blocks[a, b]
        # The DCT of a transposed grid is the transposed DCT; the gradients, and so quality, are the same.
        bits = pdq.bits_from_dct(block.T if transposed else block)
        out[turn.value] = (pdq.hex_from_bits(bits), quality)
    return out


def trimmed_variant(plane: F32, factor: int) -> tuple[str, int] | None:
    """(hex, quality) of the plane with its uniform borders cut away, or None when it has none."""
    box = border_box(plane)
    if box is None:
        return None
    top, bottom, left, right = box
    inner = plane[top : plane.shape[0] - bottom, left : plane.shape[1] - right]
    rows, cols = inner.shape
    if rows * factor < pdq.MIN_DIMENSION or cols * factor < pdq.MIN_DIMENSION:
        return None
    block, quality = _hash_grid(sample_grids(inner, factor, mirrored=False))
    return pdq.hex_from_bits(pdq.bits_from_dct(block)), quality


def query_variants(
    picture: Picture, *, dihedral: bool = True, trim: bool = True
) -> dict[str, tuple[str, int]]:
    """{variant: (hex, quality)} for one picture (the plain hash is not included)."""
    out: dict[str, tuple[str, int]] = {}
    if picture.width < pdq.MIN_DIMENSION or picture.height < pdq.MIN_DIMENSION:
        return out
    plane, f = variant_plane(picture)
    if dihedral:
        out.update(turned_variants(plane, f))
    if trim:
        hashed = trimmed_variant(plane, f)
        if hashed is not None:
            out[TRIMMED] = hashed
    return out
