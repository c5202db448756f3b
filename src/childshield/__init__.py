"""childshield: find known child sexual abuse material by hash, report it, and get it removed.

The public API is small::

    import childshield
    result = childshield.hash_file("photo.jpg")
    result.pdq, result.pdq_quality, result.sha256
"""

from typing import Any

from childshield.hashing import FrameHash, HashOptions, HashResult, hash_bytes, hash_file
from childshield.media.errors import MediaError
from childshield.signals.pdq import PdqHash

__version__ = "0.1.0"


def match_signal(
    signal_type: str, value: str, *, quality: int | None = None, db_url: str | None = None
) -> Any:
    """Match one signal against the banks of the database (default: the embedded SQLite).

    Opens the banks on every call (their PDQ index is saved, so that is quick); for many calls load a
    ``childshield.matching.Matcher`` once and use its ``match_many``.
    """
    from childshield.matching import Matcher
    from childshield.store import open_database

    db = open_database(db_url)
    try:
        return Matcher.load(db).match(signal_type, value, quality=quality)
    finally:
        db.close()


def scan_bytes(data: bytes, *, db_url: str | None = None, options: HashOptions | None = None) -> Any:
    """Hash media given as bytes and match every signal against the banks; returns a ``ScanResult``."""
    from childshield.matching import Matcher
    from childshield.matching.scan import scan_bytes as scan
    from childshield.store import open_database

    db = open_database(db_url)
    try:
        return scan(Matcher.load(db), data, options)
    finally:
        db.close()


__all__ = [
    "FrameHash",
    "HashOptions",
    "HashResult",
    "MediaError",
    "PdqHash",
    "__version__",
    "hash_bytes",
    "hash_file",
    "match_signal",
    "scan_bytes",
]
