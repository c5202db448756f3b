"""Hashing service: files and bytes in, typed results out."""

from childshield.hashing.result import FrameHash, HashOutcome, HashResult
from childshield.hashing.service import HashOptions, hash_bytes, hash_file

__all__ = ["FrameHash", "HashOptions", "HashOutcome", "HashResult", "hash_bytes", "hash_file"]
