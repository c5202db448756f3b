"""PDQ: Meta's 256-bit perceptual image hash.

Bits and quality equal the reference (the ``pdqhash`` binding of Meta's C++)
on the same pixels.  Hex strings use the order of the ``threatexchange``
package: 64 lowercase hex digits, most significant digit first, where bit ``k``
(``k = 16 * row + column`` of the 16x16 DCT block) has weight ``2**k``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from childshield.signals import _pdq_numpy

try:  # the C core is optional: an install without a compiler falls back to NumPy
    from childshield.signals import _pdqcore  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - exercised by installs without the extension
    _pdqcore = None

F32 = npt.NDArray[np.float32]

BITS = 256
HEX_LENGTH = 64
MIN_DIMENSION = 5
"""Images with a side shorter than this have no PDQ (quality 0), as in the reference."""
DEFAULT_MATCH_THRESHOLD = 31
MIN_USEFUL_QUALITY = 50


class Dihedral(enum.Enum):
    """The eight rotations and reflections, named as in Meta's reference."""

    ORIGINAL = "original"
    ROTATE90 = "rotate90"
    ROTATE180 = "rotate180"
    ROTATE270 = "rotate270"
    FLIPX = "flipx"
    FLIPY = "flipy"
    FLIP_PLUS1 = "flip_plus1"
    FLIP_MINUS1 = "flip_minus1"


@dataclass(frozen=True, slots=True)
class PdqHash:
    """A PDQ hash: 64 hex digits and the quality (0..100) of the image it came from."""

    hex: str
    quality: int

    def distance(self, other: PdqHash | str) -> int:
        return hamming(self.hex, other.hex if isinstance(other, PdqHash) else other)


def native_core() -> Any:
    """The compiled core module, or None when the package was installed without it."""
    return _pdqcore


def dct16(luma: F32, *, use_native: bool = True) -> tuple[F32, int]:
    """16x16 DCT block and quality of a float32 luma plane with both sides >= 5."""
    rows, cols = luma.shape
    if rows < MIN_DIMENSION or cols < MIN_DIMENSION:
        raise ValueError(f"PDQ needs both sides >= {MIN_DIMENSION} px, got {cols}x{rows}")
    if use_native and _pdqcore is not None:
        data = np.ascontiguousarray(luma, dtype=np.float32)
        raw, quality = _pdqcore.dct16(data, rows, cols)
        return np.frombuffer(raw, dtype=np.float32).reshape(16, 16), quality
    return _pdq_numpy.dct16(luma)


def luma_from_rgb(pixels: npt.NDArray[np.uint8], *, use_native: bool = True) -> F32:
    """Float32 luma of an (rows, cols, >=3) uint8 array; extra channels (alpha) are ignored."""
    rows, cols, channels = pixels.shape
    if use_native and _pdqcore is not None:
        data = np.ascontiguousarray(pixels, dtype=np.uint8)
        raw = _pdqcore.luma_from_rgb(data, rows, cols, channels)
        return np.frombuffer(raw, dtype=np.float32).reshape(rows, cols)
    return _pdq_numpy.luma_from_rgb(pixels)


def bits_from_dct(block: F32) -> npt.NDArray[np.bool_]:
    """256 bits: each DCT coefficient above the (lower) median of the 256."""
    flat = block.ravel()
    median = np.partition(flat, 127)[127]
    bits: npt.NDArray[np.bool_] = flat > median
    return bits


def hex_from_bits(bits: npt.NDArray[np.bool_]) -> str:
    return np.packbits(bits[::-1].astype(np.uint8)).tobytes().hex()


def bits_from_hex(value: str) -> npt.NDArray[np.bool_]:
    raw = bytes.fromhex(normalize_hex(value))
    return np.unpackbits(np.frombuffer(raw, dtype=np.uint8))[::-1].astype(bool)


def normalize_hex(value: str) -> str:
    """Lowercase, validated 64-digit PDQ hex; raises ValueError on anything else."""
    text = value.strip().lower()
    if len(text) != HEX_LENGTH or any(c not in "0123456789abcdef" for c in text):
        raise ValueError(f"a PDQ hash is {HEX_LENGTH} hex digits, got {value[:80]!r}")
    return text


def hamming(a: str, b: str) -> int:
    return (int(normalize_hex(a), 16) ^ int(normalize_hex(b), 16)).bit_count()


def dihedral_dcts(block: F32) -> dict[Dihedral, F32]:
    """DCT blocks of the 8 rotated/reflected images, derived from one block.

    Rotating or mirroring the image only transposes the DCT and flips the sign
    of odd-frequency rows or columns, so no pixels are touched.
    """
    i = np.arange(16)[:, None]
    j = np.arange(16)[None, :]
    odd_i = (i & 1).astype(bool)
    odd_j = (j & 1).astype(bool)
    odd_sum = ((i + j) & 1).astype(bool)
    neg = -block
    t = block.T
    neg_t = neg.T
    return {
        Dihedral.ORIGINAL: block,
        # B[j][i] = A[i][j] where j odd, else -A[i][j]
        Dihedral.ROTATE90: np.where(odd_j, block, neg).T,
        Dihedral.ROTATE180: np.where(odd_sum, neg, block),
        Dihedral.ROTATE270: np.where(odd_i, block, neg).T,
        Dihedral.FLIPX: np.where(odd_i, block, neg),
        Dihedral.FLIPY: np.where(odd_j, block, neg),
        Dihedral.FLIP_PLUS1: t,
        Dihedral.FLIP_MINUS1: np.where(odd_sum.T, neg_t, t),
    }


def hash_luma(luma: F32, *, use_native: bool = True) -> PdqHash:
    """PDQ of a float32 luma plane; quality 0 and all-zero bits below 5 px a side."""
    rows, cols = luma.shape
    if rows < MIN_DIMENSION or cols < MIN_DIMENSION:
        return PdqHash("0" * HEX_LENGTH, 0)
    block, quality = dct16(luma, use_native=use_native)
    return PdqHash(hex_from_bits(bits_from_dct(block)), quality)


def hash_luma_dihedral(luma: F32, *, use_native: bool = True) -> tuple[dict[Dihedral, str], int]:
    """The 8 dihedral PDQ hashes (hex) of a luma plane, and its quality."""
    rows, cols = luma.shape
    if rows < MIN_DIMENSION or cols < MIN_DIMENSION:
        return dict.fromkeys(Dihedral, "0" * HEX_LENGTH), 0
    block, quality = dct16(luma, use_native=use_native)
    return {d: hex_from_bits(bits_from_dct(b)) for d, b in dihedral_dcts(block).items()}, quality


def hash_rgb(pixels: npt.NDArray[np.uint8], *, use_native: bool = True) -> PdqHash:
    """PDQ of an (rows, cols, 3 or 4) uint8 array, exactly as ``pdqhash.compute``."""
    return hash_luma(luma_from_rgb(pixels, use_native=use_native), use_native=use_native)
