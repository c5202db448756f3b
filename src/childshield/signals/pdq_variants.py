"""Query-side PDQ variants: the hashes by which an edited copy of a known image can still be found.

An edited copy is hashed several ways, each undoing one common edit, and every hash is matched:

* the 7 rotations and reflections, made by really turning the luma plane (a mirrored copy turned back is
  the original's pixels again, so its hash lands within edit noise of the original's).  Deriving them
  from the DCT, as ``pdq.dihedral_dcts`` does, is cheaper but PDQ's filter is not symmetric: those land
  about 10 bits away, which costs recall at the threshold's edge;
* ``trimmed``: uniform borders (letterbox, pillarbox, padding of one colour) cut away, so the content is
  hashed at the proportions it was shared at.

Each variant costs one more PDQ of the (usually reduced) luma plane: the decode is shared.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from childshield.media.decode import Picture
from childshield.signals import pdq, pdq_reduced
from childshield.signals._pdq_numpy import jarosz_window
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
# Turning the plane back: each variant is the transform that undoes that edit of the original.
_TURNS: dict[pdq.Dihedral, Callable[[F32], F32]] = {
    D.ROTATE90: lambda p: np.rot90(p, 1),
    D.ROTATE180: lambda p: np.rot90(p, 2),
    D.ROTATE270: lambda p: np.rot90(p, 3),
    D.FLIPX: lambda p: p[:, ::-1],
    D.FLIPY: lambda p: p[::-1, :],
    D.FLIP_PLUS1: lambda p: p.T,
    D.FLIP_MINUS1: lambda p: np.rot90(p, 2).T,
}


def border_box(plane: F32, *, tolerance: float = BORDER_TOLERANCE) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right) rows/columns of uniform border to cut, or None when there is none.

    A border row or column has 98% of its pixels within ``tolerance`` of the level of the outermost one
    (so JPEG noise and a few specks, such as a logo in the bar, do not stop it); each side is at most
    ``MAX_TRIM_SHARE`` of its axis, and borders thinner than ``MIN_TRIM_SHARE`` are ignored."""
    rows, cols = plane.shape
    if rows < 8 or cols < 8:
        return None

    def run(lines: F32, limit: int) -> int:
        """How many leading lines (rows of ``lines``) are border."""
        level = float(np.median(lines[0]))
        near = np.abs(lines[:limit] - level) <= tolerance
        uniform = near.mean(axis=1) >= 0.98
        stop = np.flatnonzero(~uniform)
        return int(stop[0]) if len(stop) else limit

    top = run(plane, int(rows * MAX_TRIM_SHARE))
    bottom = run(plane[::-1], int(rows * MAX_TRIM_SHARE))
    left = run(plane.T, int(cols * MAX_TRIM_SHARE))
    right = run(plane.T[::-1], int(cols * MAX_TRIM_SHARE))
    sides = [top if top >= rows * MIN_TRIM_SHARE else 0, bottom if bottom >= rows * MIN_TRIM_SHARE else 0]
    sides += [left if left >= cols * MIN_TRIM_SHARE else 0, right if right >= cols * MIN_TRIM_SHARE else 0]
    if not any(sides):
        return None
    return sides[0], sides[1], sides[2], sides[3]


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
    blocks = plane[: rows * factor, : cols * factor].reshape(rows, factor, cols, factor)
    out: F32 = blocks.mean(axis=(1, 3), dtype=np.float32)
    return out


def variant_plane(picture: Picture) -> tuple[F32, int]:
    """The luma plane to hash variants from and its block factor: a full-size picture is reduced first."""
    plane = luma(picture.pixels)
    if picture.factor > 1:
        return plane, picture.factor
    factor = max(1, jarosz_window(min(picture.width, picture.height)) // VARIANT_BLOCKS_PER_WINDOW)
    return box_reduce(plane, factor), factor


def query_variants(
    picture: Picture, *, dihedral: bool = True, trim: bool = True
) -> dict[str, tuple[str, int]]:
    """{variant: (hex, quality)} for one picture (the plain hash is not included)."""
    out: dict[str, tuple[str, int]] = {}
    if picture.width < pdq.MIN_DIMENSION or picture.height < pdq.MIN_DIMENSION:
        return out
    plane, f = variant_plane(picture)
    if dihedral:
        for variant, turn in _TURNS.items():
            hashed = hash_plane(turn(plane), f)
            if hashed is not None:
                out[variant.value] = hashed
    if trim:
        box = border_box(plane)
        if box is not None:
            top, bottom, left, right = box
            inner = plane[top : plane.shape[0] - bottom, left : plane.shape[1] - right]
            hashed = hash_plane(inner, f)
            if hashed is not None:
                out[TRIMMED] = hashed
    return out
