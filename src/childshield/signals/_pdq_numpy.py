"""Pure-NumPy PDQ core: the fallback when the C core is not built.

Bit-exact with the reference like the C core, only slower.  The reference's box
filter keeps one float32 running sum per row (or column) that alternately adds
the entering pixel and subtracts the leaving one.  Here that sequence of
operations is laid out as an array (entering values, negated leaving values)
and summed with ``np.add.accumulate``, which rounds after every step in float32
exactly as the sequential C loop does; subtracting ``x`` and adding ``-x`` are
the same IEEE operation.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]


@functools.cache
def dct_matrix() -> F32:
    """The 16x64 DCT-II rows PDQ keeps, computed in double and rounded like the reference."""
    scale = float(np.float32(math.sqrt(2.0 / 64.0)))
    m = np.empty((16, 64), dtype=np.float32)
    for i in range(16):
        for j in range(64):
            m[i, j] = np.float32(scale * math.cos((math.pi / 2.0 / 64.0) * (i + 1) * (2 * j + 1)))
    return m


def jarosz_window(old_dim: int) -> int:
    """Box window for one of PDQ's two tent passes down to 64 samples."""
    return (old_dim + 2 * 64 - 1) // (2 * 64)


@functools.lru_cache(maxsize=128)
def _box_plan(n: int, window: int) -> tuple[npt.NDArray[np.intp], F32, npt.NDArray[np.intp], F32]:
    """Operation order of one running-sum box filter of length ``n``.

    Returns (index of the value each step adds, its sign, steps after which an
    output is written, the window size it is divided by).
    """
    half = (window + 2) // 2
    index: list[int] = []
    sign: list[float] = []
    out_after: list[int] = []
    counts: list[int] = []
    right = left = size = 0
    for phase_steps, adds, subs, writes in (
        (half - 1, True, False, False),
        (window - half + 1, True, False, True),
        (n - window, True, True, True),
        (half - 1, False, True, True),
    ):
        for _ in range(phase_steps):
            if adds:
                index.append(right)
                sign.append(1.0)
                right += 1
                size += 0 if subs else 1
            if subs:
                index.append(left)
                sign.append(-1.0)
                left += 1
                size -= 0 if adds else 1
            if writes:
                out_after.append(len(index) - 1)
                counts.append(size)
    return (
        np.asarray(index, dtype=np.intp),
        np.asarray(sign, dtype=np.float32)[:, None],
        np.asarray(out_after, dtype=np.intp),
        np.asarray(counts, dtype=np.float32)[:, None],
    )


def _box_axis0(x: F32, window: int) -> F32:
    index, sign, out_after, counts = _box_plan(x.shape[0], window)
    steps = x[index]
    steps *= sign
    np.add.accumulate(steps, axis=0, out=steps)
    out = steps[out_after]
    out /= counts
    return out


def quality(block64: F32) -> int:
    """PDQ's image-domain quality: count of significant gradients, 0..100."""
    hundred, full = np.float32(100), np.float32(255)
    dv = ((block64[:-1, :] - block64[1:, :]) * hundred) / full
    dh = ((block64[:, :-1] - block64[:, 1:]) * hundred) / full
    total = int(np.abs(dv.astype(np.int32)).sum() + np.abs(dh.astype(np.int32)).sum())
    return min(total // 90, 100)


def dct16(luma: F32) -> tuple[F32, int]:
    """16x16 DCT block and quality of a float32 luma plane (rows, cols >= 5)."""
    rows, cols = luma.shape
    if rows == 64 and cols == 64:
        block = np.array(luma, dtype=np.float32)
    else:
        x = np.ascontiguousarray(luma.T, dtype=np.float32)  # axis 0 runs along rows
        for _ in range(2):
            x = _box_axis0(x, jarosz_window(cols))
            x = _box_axis0(np.ascontiguousarray(x.T), jarosz_window(rows)).T
            x = np.ascontiguousarray(x)
        filtered = x.T
        ri = ((np.arange(64) + 0.5) * rows / 64).astype(np.intp)
        ci = ((np.arange(64) + 0.5) * cols / 64).astype(np.intp)
        block = np.ascontiguousarray(filtered[np.ix_(ri, ci)])
    q = quality(block)
    d = dct_matrix()
    # T = D @ A and B = T @ D.T, summing over k in order, rounding each product.
    t = np.add.accumulate(d[:, :, None] * block[None, :, :], axis=1)[:, -1, :]
    b = np.add.accumulate(t[:, None, :] * d[None, :, :], axis=2)[:, :, -1]
    return np.ascontiguousarray(b, dtype=np.float32), q


def luma_from_rgb(pixels: npt.NDArray[np.uint8]) -> F32:
    """Float32 luma as the pdqhash binding computes it (in double, then rounded)."""
    r, g, b = pixels[:, :, 0], pixels[:, :, 1], pixels[:, :, 2]
    luma: F32 = (r * 0.299 + g * 0.587 + b * 0.114).astype(np.float32)
    return luma
