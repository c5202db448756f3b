"""The image formats childshield opens, and the decoders they need registered."""

from __future__ import annotations

import functools

from PIL import features

# Only these Pillow plugins ever see untrusted bytes: fewer parsers, smaller attack surface.
# MPO is how Pillow names JPEGs that carry extra pictures (phone cameras write them).
SUPPORTED_FORMATS: tuple[str, ...] = ("JPEG", "MPO", "PNG", "GIF", "WEBP", "BMP", "TIFF", "HEIF", "AVIF")

# Extensions that mark a file as an image when walking folders (content sniffing finds the rest).
IMAGE_EXTENSIONS = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".jpe",
        ".jfif",
        ".mpo",
        ".png",
        ".apng",
        ".gif",
        ".webp",
        ".bmp",
        ".dib",
        ".tif",
        ".tiff",
        ".heic",
        ".heif",
        ".hif",
        ".avif",
    }
)


@functools.cache
def register_decoders() -> tuple[str, ...]:
    """Register the decoders; returns the format names to pass to ``Image.open``."""
    # Import exactly the plugins we use, so no other parser is ever registered for untrusted input.
    from PIL import (  # noqa: F401
        BmpImagePlugin,
        GifImagePlugin,
        JpegImagePlugin,
        MpoImagePlugin,
        PngImagePlugin,
        TiffImagePlugin,
        WebPImagePlugin,
    )

    # MPO has no opener of its own: the JPEG opener returns it.
    available = ["JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF"]
    try:
        import pillow_heif

        pillow_heif.register_heif_opener()
        available.append("HEIF")
    except ImportError:  # pragma: no cover - pillow-heif is a declared dependency
        pass
    if features.check("avif"):
        from PIL import AvifImagePlugin  # noqa: F401

        available.append("AVIF")
    return tuple(available)


def sniff(head: bytes) -> str | None:
    """Format name from a file's first bytes, or None when it looks like no supported image."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:2] == b"BM":
        return "BMP"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"avis"):
            return "AVIF"
        if brand in (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"):
            return "HEIF"
    return None
