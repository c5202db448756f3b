"""Media: decode untrusted files safely and quickly into pixels."""

from childshield.media.decode import DecodedImage, DecodeLimits, Picture, decode
from childshield.media.errors import (
    CorruptImage,
    EmptyFile,
    FileTooLarge,
    ImageTooLarge,
    MediaError,
    NotAnImage,
    UnreadableFile,
    UnsupportedImage,
)

__all__ = [
    "CorruptImage",
    "DecodeLimits",
    "DecodedImage",
    "EmptyFile",
    "FileTooLarge",
    "ImageTooLarge",
    "MediaError",
    "NotAnImage",
    "Picture",
    "UnreadableFile",
    "UnsupportedImage",
    "decode",
]
