"""PDQ from a reduced image, as if the full-size image had been hashed.

PDQ shrinks every image to 64x64 samples with two passes of box filters (a
tent) and then keeps one pixel in each 64th.  That filter is linear and
separable, so each of the 64 samples of an axis is a fixed weighting of the
full-size pixels of that axis.  When only block averages of the image are at
hand (a JPEG decoded at 1/2, 1/4 or 1/8 scale in the DCT domain, or a box
reduction of any other format), each block's weight is the sum of the
full-size weights over the pixels it covers.  The 64x64 samples then come out
as ``Kr . plane . Kc^T`` and go to quality and DCT exactly as in PDQ.

The only approximation is the variation inside each block, which the wide
tent barely sees: on 12-megapixel photos decoded at 1/8 scale the hash is
within a few bits of the full-size reference (see docs/benchmarks.md).
"""

from __future__ import annotations

import functools

import numpy as np
import numpy.typing as npt

from childshield.signals import pdq
from childshield.signals._pdq_numpy import jarosz_window

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

SAMPLES = 64
# A reduction keeps the box filter's window at least this many blocks wide;
# below that the tent is too coarse on the block grid to follow the reference.
MIN_BLOCKS_PER_WINDOW = 3


def reduction_factor(width: int, height: int, *, allowed: tuple[int, ...] = (8, 4, 2)) -> int:
    """Largest allowed factor that keeps PDQ's box windows >= 3 blocks wide (1: no reduction)."""
    window = jarosz_window(min(width, height))
    for factor in allowed:
        if factor * MIN_BLOCKS_PER_WINDOW <= window:
            return factor
    return 1


def _tent_rows(n: int) -> F64:
    """The 64 rows of PDQ's two-pass box filter on an axis of ``n`` pixels, as weights (64, n)."""
    window = jarosz_window(n)
    half = (window + 2) // 2
    o = np.arange(n)
    lo = np.maximum(o - (window - half), 0)  # inclusive window of output o, clipped at the edges
    hi = np.minimum(o + half - 1, n - 1)
    count = (hi - lo + 1).astype(np.float64)
    picked = ((np.arange(SAMPLES) + 0.5) * n / SAMPLES).astype(np.intp)
    first = np.zeros((SAMPLES, n))
    for row, i in enumerate(picked):
        first[row, lo[i] : hi[i] + 1] = 1.0 / count[i]
    # Second pass: weight of x = sum of first[o] / count[o] over outputs o whose window holds x.
    scaled = np.concatenate([np.zeros((SAMPLES, 1)), np.cumsum(first / count[None, :], axis=1)], axis=1)
    x = np.arange(n)
    o_lo = np.maximum(x - half + 1, 0)
    o_hi = np.minimum(x + (window - half), n - 1)
    out: F64 = scaled[:, o_hi + 1] - scaled[:, o_lo]
    return out


@functools.lru_cache(maxsize=512)
def block_kernel(n: int, factor: int, blocks: int) -> F32:
    """Weights (64, blocks) of block averages of ``factor`` pixels on an axis of ``n`` full pixels."""
    if blocks != -(-n // factor):
        raise ValueError(f"{blocks} blocks of {factor} do not cover {n} pixels")
    tent = _tent_rows(n)
    edges = np.minimum(np.arange(blocks + 1) * factor, n)
    sums = np.concatenate([np.zeros((SAMPLES, 1)), np.cumsum(tent, axis=1)], axis=1)
    # A block's average stands for each of its pixels, so its weight is the sum of theirs.
    kernel = sums[:, edges[1:]] - sums[:, edges[:-1]]
    out = np.ascontiguousarray(kernel, dtype=np.float32)
    out.setflags(write=False)
    return out


def samples64(plane: F32, full_width: int, full_height: int, factor: int, *, use_native: bool = True) -> F32:
    """PDQ's 64x64 samples of the full image, from a plane of ``factor``-pixel block averages."""
    rows, cols = plane.shape
    kr = block_kernel(full_height, factor, rows)
    kc = block_kernel(full_width, factor, cols)
    core = pdq.native_core()
    data = np.ascontiguousarray(plane, dtype=np.float32)
    if use_native and core is not None:
        kct = np.ascontiguousarray(kc.T)
        raw = core.block64(data, rows, cols, kr, kct)
        return np.frombuffer(raw, dtype=np.float32).reshape(SAMPLES, SAMPLES)
    out: F32 = (kr.astype(np.float64) @ data.astype(np.float64) @ kc.T.astype(np.float64)).astype(np.float32)
    return out


def hash_reduced(
    plane: F32, full_width: int, full_height: int, factor: int, *, use_native: bool = True
) -> tuple[F32, int]:
    """DCT block and quality of the full image, computed from its reduced luma plane."""
    if full_width < pdq.MIN_DIMENSION or full_height < pdq.MIN_DIMENSION:
        raise ValueError("image too small for PDQ")
    block = samples64(plane, full_width, full_height, factor, use_native=use_native)
    # A 64x64 input skips PDQ's own filter: quality and DCT only, as in the reference.
    return pdq.dct16(block, use_native=use_native)
