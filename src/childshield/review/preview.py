"""What a reviewer's browser receives: a still, re-encoded picture, blurred and gray unless revealed.

The blur is applied here, on the server, so the unblurred picture never reaches a browser until the
reviewer asks for it (and the reveal is recorded).  Every view is a still (the first frame: nothing
plays by itself), scaled to at most ``MAX_SIDE`` pixels, stripped of metadata, re-encoded as JPEG.
"""

from __future__ import annotations

import io

from PIL import Image, ImageFilter, ImageOps

from childshield.media.decode import DecodeLimits, open_checked
from childshield.media.errors import CorruptImage, MediaError
from childshield.media.video import Sampling, VideoLimits, is_video, sample_frames

MAX_SIDE = 768
BLUR_REFERENCE = 512
"""The blur radius is given for a picture this wide, and scaled with the picture's size."""


def _video_still(data: bytes, limits: DecodeLimits) -> Image.Image:
    """A video's first frame (videos never play in the review UI)."""
    sampling = Sampling(rate=0, scene_threshold=2.0, max_side=MAX_SIDE)
    for frame in sample_frames(data, sampling, VideoLimits(max_pixels=limits.max_pixels)):
        return Image.fromarray(frame.picture.pixels)
    raise CorruptImage("the video has no frame to show")  # pragma: no cover - sample_frames raises first


def render(data: bytes, *, blur: int, reveal: bool, limits: DecodeLimits | None = None) -> bytes:
    """A JPEG to show: blurred by ``blur`` (at 512 pixels wide) and gray, or, revealed, as it is."""
    limits = limits or DecodeLimits()
    image = _video_still(data, limits) if is_video(data[:1024]) else open_checked(data, limits)
    try:
        if image.format == "JPEG":
            image.draft("RGB", (MAX_SIDE, MAX_SIDE))
        image.seek(0)
        image = ImageOps.exif_transpose(image.convert("RGBA" if "A" in image.mode else "RGB"))
        image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
        if image.mode == "RGBA":  # transparent parts shown on mid gray
            back = Image.new("RGB", image.size, (128, 128, 128))
            back.paste(image, mask=image.getchannel("A"))
            image = back
        if not reveal:
            image = image.convert("L")
            radius = max(1.0, blur * max(image.size) / BLUR_REFERENCE)
            image = image.filter(ImageFilter.GaussianBlur(radius))
        out = io.BytesIO()
        image.save(out, "JPEG", quality=85)
        return out.getvalue()
    except MediaError:
        raise
    except Exception as exc:  # the file was hashed once, but a hostile one may still fail here
        raise CorruptImage(f"cannot render a preview ({type(exc).__name__})") from None
