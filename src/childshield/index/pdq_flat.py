"""Exact PDQ range search by brute force: every stored hash is compared with every query.

Hashes are packed as four uint64 words; distance is XOR plus popcount, vectorised over the whole bank.
No candidate within the threshold can be missed.  This is the reference the faster indexes are tested
against, and fast enough for banks of up to a few million hashes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

U64 = npt.NDArray[np.uint64]
CHUNK = 1 << 18  # hashes compared per step: bounded temporary memory


def _raw(value: str) -> bytes:
    if len(value) != 64:
        raise ValueError(f"a PDQ hash is 64 hex digits, got {value[:80]!r}")
    return bytes.fromhex(value)


def pack_hex(values: Iterable[str]) -> U64:
    """(N, 4) uint64 words of 64-hex-digit PDQ hashes (most significant word first)."""
    raw = b"".join(_raw(v) for v in values)
    words = np.frombuffer(raw, dtype=">u8").astype(np.uint64)
    return words.reshape(-1, 4)


@dataclass(frozen=True, slots=True)
class Hit:
    query: int
    item: int
    distance: int


class PdqFlatIndex:
    """Items are (hash, threshold) pairs; a query hits every item within that item's threshold."""

    def __init__(self, hashes: U64, thresholds: Sequence[int] | npt.NDArray[np.integer]) -> None:
        if hashes.ndim != 2 or hashes.shape[1] != 4:
            raise ValueError("hashes must be an (N, 4) uint64 array")
        self.hashes = np.ascontiguousarray(hashes, dtype=np.uint64)
        self.thresholds = np.asarray(thresholds, dtype=np.int16)
        if self.thresholds.shape != (len(self.hashes),):
            raise ValueError("one threshold per hash")

    def __len__(self) -> int:
        return len(self.hashes)

    def distances(self, query: U64) -> npt.NDArray[np.int16]:
        """Hamming distance from one packed query (4 words) to every item."""
        out = np.empty(len(self.hashes), dtype=np.int16)
        for start in range(0, len(self.hashes), CHUNK):
            block = self.hashes[start : start + CHUNK]
            out[start : start + len(block)] = np.bitwise_count(block ^ query).sum(axis=1, dtype=np.int16)
        return out

    def search(self, queries: U64) -> list[Hit]:
        """Every (query, item) pair within the item's threshold, in query order then item order."""
        hits: list[Hit] = []
        if len(self.hashes) == 0:
            return hits
        for q, query in enumerate(np.atleast_2d(queries)):
            d = self.distances(query)
            for item in np.flatnonzero(d <= self.thresholds):
                hits.append(Hit(q, int(item), int(d[item])))
        return hits
