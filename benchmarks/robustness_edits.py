"""Named image edits ("attacks") for the robustness benchmark (``bench_robustness.py``).

Every edit takes an RGB ``uint8`` array of shape ``(H, W, 3)`` (a Pillow image is accepted too) and a seed,
and returns a new RGB ``uint8`` array.  The same input and seed always give the same output: where an edit
has a free choice (which corner a crop keeps, where a watermark sits) the choice is drawn from
``numpy.random.default_rng(seed)``.

``EDITS`` maps each name to its function, in the order the benchmark reports them.  ``original`` (no
change) is included as a control: its false matches are near-duplicates inside the corpus itself.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageEnhance, ImageFont

U8 = npt.NDArray[np.uint8]
ImageLike = U8 | Image.Image
Edit = Callable[[U8, int], U8]

WATERMARK_TEXT = "(c) childshield sample"


def as_rgb(image: ImageLike) -> U8:
    """An RGB ``uint8`` array of shape (H, W, 3) from an array (gray, RGB or RGBA) or a Pillow image."""
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=2)
    return np.ascontiguousarray(arr[:, :, :3], dtype=np.uint8)


def _pil(image: ImageLike) -> Image.Image:
    return Image.fromarray(as_rgb(image), "RGB")


def original(image: ImageLike, seed: int) -> U8:
    """No edit: the control row."""
    return as_rgb(image).copy()


def _crop(image: ImageLike, seed: int, fraction: float) -> U8:
    """Keep a window of (1 - fraction) of each side, shifted toward a seeded corner (80/20 margin split)."""
    arr = as_rgb(image)
    rng = np.random.default_rng(seed)
    height, width = arr.shape[:2]
    cut_h, cut_w = round(height * fraction), round(width * fraction)
    top = round(cut_h * (0.2 if rng.integers(2) else 0.8))
    left = round(cut_w * (0.2 if rng.integers(2) else 0.8))
    return arr[top : top + height - cut_h, left : left + width - cut_w].copy()


def crop5(image: ImageLike, seed: int) -> U8:
    """Remove 5% of each dimension, off-centre (80% of the margin on one side, 20% on the other)."""
    return _crop(image, seed, 0.05)


def crop10(image: ImageLike, seed: int) -> U8:
    """Remove 10% of each dimension, off-centre (80% of the margin on one side, 20% on the other)."""
    return _crop(image, seed, 0.10)


def pad20(image: ImageLike, seed: int) -> U8:
    """Place the image on a black canvas 20% larger in each dimension (a 10% border on every side)."""
    arr = as_rgb(image)
    height, width = arr.shape[:2]
    pad_h, pad_w = round(height * 0.1), round(width * 0.1)
    return np.pad(arr, ((pad_h, pad_h), (pad_w, pad_w), (0, 0)), mode="constant", constant_values=0)


def mirror(image: ImageLike, seed: int) -> U8:
    """Horizontal flip (left-right mirror)."""
    return np.ascontiguousarray(as_rgb(image)[:, ::-1])


def rot90(image: ImageLike, seed: int) -> U8:
    """Rotate by 90 degrees counter-clockwise (the canvas turns with it)."""
    return np.ascontiguousarray(np.rot90(as_rgb(image)))


def _rotate(image: ImageLike, degrees: float) -> U8:
    rotated = _pil(image).rotate(
        degrees, resample=Image.Resampling.BICUBIC, expand=False, fillcolor=(0, 0, 0)
    )
    return np.asarray(rotated, dtype=np.uint8).copy()


def rot_plus5(image: ImageLike, seed: int) -> U8:
    """Rotate 5 degrees counter-clockwise, same canvas size (corners cut), black fill, bicubic."""
    return _rotate(image, 5.0)


def rot_minus5(image: ImageLike, seed: int) -> U8:
    """Rotate 5 degrees clockwise, same canvas size (corners cut), black fill, bicubic."""
    return _rotate(image, -5.0)


def watermark(image: ImageLike, seed: int) -> U8:
    """A semi-transparent white box with dark text over ~20% of the area, at a seeded corner."""
    base = _pil(image).convert("RGBA")
    width, height = base.size
    rng = np.random.default_rng(seed)
    box_w, box_h = round(width * 0.5), round(height * 0.4)  # 0.5 * 0.4 = 20% of the image
    margin_x, margin_y = round(width * 0.04), round(height * 0.04)
    x0 = margin_x if rng.integers(2) else width - margin_x - box_w
    y0 = margin_y if rng.integers(2) else height - margin_y - box_h
    overlay = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    draw.rectangle((x0, y0, x0 + box_w - 1, y0 + box_h - 1), fill=(255, 255, 255, 140))
    font_size = max(8, box_h // 6)
    font = ImageFont.load_default(size=font_size)
    words = WATERMARK_TEXT.split()
    lines = [" ".join(words[:2]), " ".join(words[2:])]
    y = y0 + box_h // 4
    for line in lines:
        draw.text((x0 + box_w // 10, y), line, font=font, fill=(20, 20, 20, 200))
        y += round(font_size * 1.4)
    return np.asarray(Image.alpha_composite(base, overlay).convert("RGB"), dtype=np.uint8).copy()


def grayscale(image: ImageLike, seed: int) -> U8:
    """Convert to gray (Pillow's ITU-R 601 luma), then back to 3 identical channels."""
    return np.asarray(_pil(image).convert("L").convert("RGB"), dtype=np.uint8).copy()


def brightness_contrast(image: ImageLike, seed: int) -> U8:
    """Brightness x1.3, then contrast x0.8 (Pillow ImageEnhance)."""
    brighter = ImageEnhance.Brightness(_pil(image)).enhance(1.3)
    return np.asarray(ImageEnhance.Contrast(brighter).enhance(0.8), dtype=np.uint8).copy()


def jpeg30(image: ImageLike, seed: int) -> U8:
    """Re-encode as JPEG at quality 30 (Pillow defaults: 4:2:0 chroma subsampling) and decode."""
    buf = io.BytesIO()
    _pil(image).save(buf, format="JPEG", quality=30)
    with Image.open(io.BytesIO(buf.getvalue())) as decoded:
        return np.asarray(decoded.convert("RGB"), dtype=np.uint8).copy()


def _resize(image: ImageLike, scale: float) -> U8:
    img = _pil(image)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    return np.asarray(img.resize(size, Image.Resampling.BICUBIC), dtype=np.uint8).copy()


def resize_half(image: ImageLike, seed: int) -> U8:
    """Downscale to half of each side (bicubic)."""
    return _resize(image, 0.5)


def resize_double(image: ImageLike, seed: int) -> U8:
    """Upscale to twice each side (bicubic)."""
    return _resize(image, 2.0)


EDITS: dict[str, Edit] = {
    "original": original,
    "crop5": crop5,
    "crop10": crop10,
    "pad20": pad20,
    "mirror": mirror,
    "rot90": rot90,
    "rot+5": rot_plus5,
    "rot-5": rot_minus5,
    "watermark": watermark,
    "grayscale": grayscale,
    "brightness_contrast": brightness_contrast,
    "jpeg30": jpeg30,
    "resize0.5": resize_half,
    "resize2": resize_double,
}
"""Every edit by name, in report order: array (H, W, 3) uint8 and seed in, array out."""


OVERLAY_SEED = 4242


def shared_overlay(image: ImageLike, seed: int = OVERLAY_SEED) -> U8:
    """The same opaque, textured badge (shapes, stripes and text, about 15% of the area) at the same place
    on every picture: what unrelated pictures share when they carry one logo, watermark or meme frame.
    Not an edit for recall: the benchmark checks that such pictures do not match each other's items."""
    base = _pil(image)
    width, height = base.size
    bw, bh = round(width * 0.42), round(height * 0.36)
    x0, y0 = width - bw - round(width * 0.03), height - bh - round(height * 0.03)
    rng = np.random.default_rng(seed)  # the same badge whatever the picture
    badge = Image.new("RGB", (420, 360), (240, 200, 40))
    draw = ImageDraw.Draw(badge)
    for k in range(0, 420, 24):
        draw.line((k, 0, k + 120, 360), fill=(30, 30, 120), width=6)
    for _ in range(14):
        x, y = int(rng.integers(0, 380)), int(rng.integers(0, 320))
        r = int(rng.integers(12, 50))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.integers(2):
            draw.ellipse((x, y, x + r, y + r), fill=colour, outline=(0, 0, 0), width=3)
        else:
            draw.rectangle((x, y, x + r, y + r), fill=colour, outline=(255, 255, 255), width=3)
    font = ImageFont.load_default(size=44)
    draw.rectangle((20, 120, 400, 240), fill=(250, 250, 250))
    draw.text((34, 130), "SAMPLE", font=font, fill=(10, 10, 10))
    draw.text((34, 182), "OVERLAY 7", font=font, fill=(160, 20, 20))
    base.paste(badge.resize((bw, bh), Image.Resampling.BICUBIC), (x0, y0))
    return np.asarray(base, dtype=np.uint8).copy()


def apply(name: str, image: ImageLike, seed: int = 0) -> U8:
    """Apply the edit called ``name``; raises ``KeyError`` for an unknown name."""
    return EDITS[name](as_rgb(image), seed)
