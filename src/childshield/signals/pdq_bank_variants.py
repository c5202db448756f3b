"""Bank-side PDQ variants: hashes of standard edits of a known image, stored beside its own hash.

Query-side variants (``pdq_variants``) undo edits that can be undone from the copy alone (turns,
borders).  Crops and small rotations cannot: the copy has lost the cut-off part.  When a bank is built
from media the original is at hand, so the bank stores hashes of cropped and slightly rotated versions of
it, and a copy edited that way lands near one of them.

The grid is chosen for PDQ's sensitivity, not for one benchmark: a crop of about 2% of one side moves a
PDQ hash by about 30 bits, a rotation of about 2.5 degrees likewise; the variants are spaced so that
any crop of up to about 12% per axis, anchored anywhere, and any rotation up to about 7 degrees is
within half a step of one of them.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from PIL import Image

from childshield.media.decode import Picture
from childshield.signals import pdq
from childshield.signals.pdq_variants import hash_plane, variant_plane

F32 = npt.NDArray[np.float32]

CROP_SHARES = (0.03, 0.06, 0.09, 0.12)
"""Share of each axis cut away (per axis, split between its two sides by the anchor)."""
CROP_ANCHORS = (0.0, 0.25, 0.5, 0.75, 1.0)
"""Where the kept window sits on each axis: 0 at the start (the cut is all at the end), 1 at the end."""
ROTATIONS = (-6.0, -3.0, 3.0, 6.0)
"""Degrees, counter-clockwise; corners filled with black, as image editors do by default."""


def crops(plane: F32) -> dict[str, F32]:
    rows, cols = plane.shape
    out: dict[str, F32] = {}
    for share in CROP_SHARES:
        cut_r, cut_c = round(rows * share), round(cols * share)
        for at_r in CROP_ANCHORS:
            for at_c in CROP_ANCHORS:
                top, left = round(cut_r * at_r), round(cut_c * at_c)
                window = plane[top : top + rows - cut_r, left : left + cols - cut_c]
                out[f"crop{round(share * 100)}@{at_r:g},{at_c:g}"] = window
    return out


def rotations(plane: F32) -> dict[str, F32]:
    image = Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32), mode="F")
    out: dict[str, F32] = {}
    for angle in ROTATIONS:
        turned = image.rotate(angle, resample=Image.Resampling.BILINEAR, expand=False, fillcolor=0.0)
        out[f"rotate{angle:+g}"] = np.asarray(turned, dtype=np.float32)
    return out


def bank_variants(picture: Picture) -> dict[str, str]:
    """{variant name: PDQ hex} of the standard edits of one picture (its own hash not included)."""
    if picture.width < pdq.MIN_DIMENSION or picture.height < pdq.MIN_DIMENSION:
        return {}
    plane, factor = variant_plane(picture)
    out: dict[str, str] = {}
    for name, window in {**crops(plane), **rotations(plane)}.items():
        hashed = hash_plane(window, factor)
        if hashed is not None:
            out[name] = hashed[0]
    return out
