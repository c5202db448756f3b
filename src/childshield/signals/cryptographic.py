"""Cryptographic digests (MD5, SHA-1, SHA-256): exact-copy signals of a file's bytes."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

ALGORITHMS = ("md5", "sha1", "sha256")
HEX_LENGTHS = {"md5": 32, "sha1": 40, "sha256": 64}


@dataclass(frozen=True, slots=True)
class Digests:
    md5: str
    sha1: str
    sha256: str


def digests(data: bytes) -> Digests:
    view = memoryview(data)
    return Digests(
        hashlib.md5(view, usedforsecurity=False).hexdigest(),
        hashlib.sha1(view, usedforsecurity=False).hexdigest(),
        hashlib.sha256(view).hexdigest(),
    )


def normalize_hex(algorithm: str, value: str) -> str:
    """Lowercase, validated hex digest for ``algorithm``; raises ValueError otherwise."""
    length = HEX_LENGTHS[algorithm]
    text = value.strip().lower()
    if len(text) != length or any(c not in "0123456789abcdef" for c in text):
        raise ValueError(f"an {algorithm.upper()} digest is {length} hex digits, got {value[:80]!r}")
    return text
