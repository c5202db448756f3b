"""childshield: find known child sexual abuse material by hash, report it, and get it removed.

The public API is small::

    import childshield
    result = childshield.hash_file("photo.jpg")
    result.pdq, result.pdq_quality, result.sha256
"""

from childshield.hashing import FrameHash, HashOptions, HashResult, hash_bytes, hash_file
from childshield.media.errors import MediaError
from childshield.signals.pdq import PdqHash

__version__ = "0.1.0"

__all__ = [
    "FrameHash",
    "HashOptions",
    "HashResult",
    "MediaError",
    "PdqHash",
    "__version__",
    "hash_bytes",
    "hash_file",
]
