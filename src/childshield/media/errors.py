"""Why a file could not be hashed: one precise exception per cause."""

from __future__ import annotations

from childshield.errors import Invalid


class MediaError(Invalid):
    """A file could not be hashed.  ``str(error)`` is a short message for people."""


class UnreadableFile(MediaError):
    """The path could not be read (missing, not a regular file, permission, I/O error)."""


class EmptyFile(MediaError):
    """The file has no bytes."""


class FileTooLarge(MediaError):
    """The file is bigger than the configured byte limit, so it was not read."""


class NotAnImage(MediaError):
    """The bytes are not in any supported image format."""


class ImageTooLarge(MediaError):
    """The image has more pixels than the configured limit; refused before decoding."""


class CorruptImage(MediaError):
    """The image is truncated or its data is damaged."""


class UnsupportedImage(MediaError):
    """A recognised format with a feature (mode, codec) that cannot be decoded here."""
