"""Exact range search over PDQ hashes."""

from childshield.index.pdq_flat import PdqFlatIndex, pack_hex

__all__ = ["PdqFlatIndex", "pack_hex"]
