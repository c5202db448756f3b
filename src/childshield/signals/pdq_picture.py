"""PDQ of a decoded picture: bit-exact at full size, emulated on block averages when reduced."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from childshield.media.decode import Picture
from childshield.signals import pdq, pdq_reduced
from childshield.signals._pdq_numpy import jarosz_window


def max_reduction(width: int, height: int) -> int:
    """Largest block size whose averages still reproduce PDQ's filter closely (1: none)."""
    return max(1, jarosz_window(min(width, height)) // pdq_reduced.MIN_BLOCKS_PER_WINDOW)


def luma(pixels: npt.NDArray[np.uint8] | npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Float32 luma with the reference's arithmetic (gray levels map to themselves)."""
    if pixels.ndim == 3:
        return pdq.luma_from_rgb(np.asarray(pixels, dtype=np.uint8))
    return np.asarray(pixels, dtype=np.float32)


def hash_picture(
    picture: Picture, *, dihedral: bool = False
) -> tuple[str | None, int, dict[str, str] | None]:
    """(hex or None, quality, dihedral hexes or None) for one picture.

    Pictures with a side under 5 px have no PDQ and quality 0, as in the reference.
    """
    if picture.width < pdq.MIN_DIMENSION or picture.height < pdq.MIN_DIMENSION:
        return None, 0, None
    plane = luma(picture.pixels)
    if picture.factor == 1:
        block, quality = pdq.dct16(plane)
    else:
        block, quality = pdq_reduced.hash_reduced(plane, picture.width, picture.height, picture.factor)
    hex_value = pdq.hex_from_bits(pdq.bits_from_dct(block))
    variants = None
    if dihedral:
        variants = {
            d.value: pdq.hex_from_bits(pdq.bits_from_dct(b)) for d, b in pdq.dihedral_dcts(block).items()
        }
    return hex_value, quality, variants
