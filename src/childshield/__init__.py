"""childshield: find known child sexual abuse material by hash, report it, and get it removed.

The public API is small::

    import childshield
    result = childshield.hash_file("photo.jpg")
    result.pdq, result.pdq_quality, result.sha256

Its names are imported when first used (PEP 562): ``import childshield`` and ``childshield.__version__``
load neither NumPy nor the image decoders, so the ``childshield`` command starts quickly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Each public name and the module it comes from, imported on first use.
_LAZY: dict[str, str] = {
    "FrameHash": "childshield.hashing",
    "HashOptions": "childshield.hashing",
    "HashResult": "childshield.hashing",
    "hash_bytes": "childshield.hashing",
    "hash_file": "childshield.hashing",
    "MediaError": "childshield.media.errors",
    "PdqHash": "childshield.signals.pdq",
}

if TYPE_CHECKING:
    from childshield.hashing import FrameHash, HashOptions, HashResult, hash_bytes, hash_file
    from childshield.media.errors import MediaError
    from childshield.signals.pdq import PdqHash
else:

    def __getattr__(name: str) -> object:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        import importlib

        value = getattr(importlib.import_module(module), name)
        globals()[name] = value  # the next look-up is a plain attribute
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


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
