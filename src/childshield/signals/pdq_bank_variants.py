"""Bank-side PDQ variants: hashes of standard edits of a known image, stored beside its own hash.

Query-side variants (``pdq_variants``) undo edits that can be undone from the copy alone (turns,
borders).  Crops and small rotations cannot: the copy has lost the cut-off part.  When a bank is built
from media the original is at hand, so the bank stores hashes of cropped and slightly rotated versions of
it, and a copy edited that way lands near one of them.

The grid is chosen for PDQ's sensitivity, not for one benchmark: a crop of about 2% of one side moves a
PDQ hash by about 30 bits, a rotation of about 2.5 degrees likewise; the variants are spaced so that
any crop of up to about 12% per axis, anchored anywhere, and any rotation up to about 7 degrees is
within half a step of one of them.

``crops`` and ``rotations`` define the edited planes, and hashing each with ``hash_plane`` defines the
variants (``_hash_each``); ``bank_variants`` gives the same hashes for much less work.  A crop is a
window of the plane, and PDQ's 64x64 samples of a window are ``Kr . window . Kc^T`` with the weights of
the window's size, so ``pdq_variants.window_grids`` computes them straight from the plane: the 25 crops
of one size share their passes over the rows and over the columns.  A rotated plane has no such
shortcut (its pixels are new), but its samples are computed the same way, only over the whole plane.
All 104 sample grids then go through one batched DCT.  That sums in another order than ``hash_plane``,
so a variant whose bits float rounding could decide (``ROUNDING_MARGIN``) is hashed again one by one.
For a 1-megapixel JPEG (one core) this takes about 17 ms, where hashing each edited plane took about
120 ms; most of what is left is Pillow rotating the plane (10 ms).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from PIL import Image

from childshield.media.decode import Picture
from childshield.signals import pdq
from childshield.signals.pdq_variants import (
    Window,
    grid_hexes,
    hash_plane,
    sample_grids,
    variant_plane,
    window_grids,
)

F32 = npt.NDArray[np.float32]

CROP_SHARES = (0.03, 0.06, 0.09, 0.12)
"""Share of each axis cut away (per axis, split between its two sides by the anchor)."""
CROP_ANCHORS = (0.0, 0.25, 0.5, 0.75, 1.0)
"""Where the kept window sits on each axis: 0 at the start (the cut is all at the end), 1 at the end."""
ROTATIONS = (-6.0, -3.0, 3.0, 6.0)
"""Degrees, counter-clockwise; corners filled with black, as image editors do by default."""
SMALL_SIDE = 32
"""A full-size plane with a side under this many pixels has its edits hashed one by one with PDQ's own
filter (``hash_plane``).  With 8 or 16 lines on an axis PDQ's 64 samples repeat each line equally often,
some of the kept DCT coefficients are zero but for float rounding, and their bits follow that rounding:
computing the samples another way would flip many of them.  Such pictures are tiny and cheap to hash."""
ROUNDING_MARGIN = 1e-6
"""A variant whose hash has a smaller margin (``pdq_variants.grid_hexes``) is hashed again with
``hash_plane``, so that float rounding decides its bits as it always did.  On photos the fast and the
one-by-one coefficients differ by at most about 2e-7 of the grid's norm; the bits can only differ when
the margin is under 4 times that (under twice the difference on each side of the median).  About 2% of
the variants of photos fall under this margin (2 of an item's 104), and most of those of flat or
one-dimensional pictures (a plain colour, a gradient, stripes), whose bits are mostly rounding.  A
full-size plane (block factor 1) is hashed one by one with PDQ's running sums, which round more along a
long side, so there the margin grows with the square root of its longest side over ``LONG_SIDE``."""
LONG_SIDE = 500


def _rounding_margin(rows: int, cols: int, factor: int) -> float:
    """The margin under which a variant of a plane of this size is hashed again one by one."""
    if factor > 1:
        return ROUNDING_MARGIN
    return ROUNDING_MARGIN * max(1.0, math.sqrt(max(rows, cols) / LONG_SIDE))


def _crop_windows(lines: int, share: float) -> list[Window]:
    """(start, kept lines) of the crop windows of one share on an axis of ``lines``, one per anchor."""
    cut = round(lines * share)
    return [(round(cut * at), lines - cut) for at in CROP_ANCHORS]


def _crop_name(share: float, at_r: float, at_c: float) -> str:
    return f"crop{round(share * 100)}@{at_r:g},{at_c:g}"


def crops(plane: F32) -> dict[str, F32]:
    """{variant name: window of the plane} of every crop, in the order ``bank_variants`` gives them."""
    rows, cols = plane.shape
    out: dict[str, F32] = {}
    for share in CROP_SHARES:
        row_windows, col_windows = _crop_windows(rows, share), _crop_windows(cols, share)
        for at_r, (top, kept_r) in zip(CROP_ANCHORS, row_windows, strict=True):
            for at_c, (left, kept_c) in zip(CROP_ANCHORS, col_windows, strict=True):
                out[_crop_name(share, at_r, at_c)] = plane[top : top + kept_r, left : left + kept_c]
    return out


def rotations(plane: F32) -> dict[str, F32]:
    image = Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32), mode="F")
    out: dict[str, F32] = {}
    for angle in ROTATIONS:
        turned = image.rotate(angle, resample=Image.Resampling.BILINEAR, expand=False, fillcolor=0.0)
        out[f"rotate{angle:+g}"] = np.asarray(turned, dtype=np.float32)
    return out


def _hash_each(plane: F32, factor: int) -> dict[str, str]:
    """{variant name: PDQ hex} by ``hash_plane`` of every edited plane: the definition of the variants."""
    out: dict[str, str] = {}
    for name, edited in {**crops(plane), **rotations(plane)}.items():
        hashed = hash_plane(edited, factor)
        if hashed is not None:
            out[name] = hashed[0]
    return out


def bank_variants(picture: Picture) -> dict[str, str]:
    """{variant name: PDQ hex} of the standard edits of one picture (its own hash not included).

    The hashes are those of ``hash_plane`` of each plane of ``crops`` and ``rotations`` (``_hash_each``):
    computed from shared sample passes, and one by one where float rounding could tell them apart.
    Crops too small to hash are left out.
    """
    if picture.width < pdq.MIN_DIMENSION or picture.height < pdq.MIN_DIMENSION:
        return {}
    plane, factor = variant_plane(picture)
    rows, cols = plane.shape
    if factor == 1 and min(rows, cols) < SMALL_SIDE:
        return _hash_each(plane, factor)
    # From here every crop keeps at least 28 lines of a side (88% of 32), far above PDQ's minimum of 5:
    # all 104 variants are hashed.
    anchors = len(CROP_ANCHORS)
    per_share = anchors * anchors
    grids: F32 = np.empty((len(CROP_SHARES) * per_share + len(ROTATIONS), 64, 64), dtype=np.float32)
    names: list[str] = []
    for k, share in enumerate(CROP_SHARES):
        into = grids[k * per_share : (k + 1) * per_share].reshape(anchors, anchors, 64, 64)  # a view
        window_grids(plane, factor, _crop_windows(rows, share), _crop_windows(cols, share), out=into)
        names.extend(_crop_name(share, at_r, at_c) for at_r in CROP_ANCHORS for at_c in CROP_ANCHORS)
    turned = rotations(plane)
    for name, edited in turned.items():
        grids[len(names)] = sample_grids(edited, factor, mirrored=False)
        names.append(name)
    hexes, margins = grid_hexes(grids)
    out = dict(zip(names, hexes, strict=True))
    shaky = [names[k] for k in np.flatnonzero(margins < _rounding_margin(rows, cols, factor))]
    if shaky:
        edits = {**crops(plane), **turned}
        for name in shaky:
            hashed = hash_plane(edits[name], factor)
            if hashed is not None:
                out[name] = hashed[0]
    return out


def centred_crops(picture: Picture) -> dict[str, str]:
    """{variant name: PDQ hex} of the centred crops only (``crop6@0.5,0.5`` ...), each hashed by
    ``hash_plane`` (the same hashes ``bank_variants`` gives them): the edits a video's frames get."""
    if picture.width < pdq.MIN_DIMENSION or picture.height < pdq.MIN_DIMENSION:
        return {}
    plane, factor = variant_plane(picture)
    out: dict[str, str] = {}
    for name, window in crops(plane).items():
        if name.endswith("@0.5,0.5"):
            hashed = hash_plane(window, factor)
            if hashed is not None:
                out[name] = hashed[0]
    return out
