"""Seeded generators of benign, photo-like images.

Tests and benchmarks never use real material: "known" images are generated
here or taken from packages that bundle benign photos (scikit-image), and hash
lists are built from them.  Every generator takes a seed, so a corpus is the
same on every machine.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

U8 = npt.NDArray[np.uint8]

_SKIMAGE_PHOTOS = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "motorcycle_left",
    "cat",
    "immunohistochemistry",
)


def fractal_noise(
    rng: np.random.Generator, height: int, width: int, beta: float = 2.0
) -> npt.NDArray[np.float32]:
    """1/f^beta noise in [0, 1]: the power spectrum of natural photos."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    radius = np.sqrt(fx * fx + fy * fy)
    radius[0, 0] = 1.0
    spectrum = (rng.normal(size=radius.shape) + 1j * rng.normal(size=radius.shape)) / radius ** (beta / 2)
    spectrum[0, 0] = 0
    field = np.fft.irfft2(spectrum, s=(height, width))
    lo, hi = np.percentile(field, [0.5, 99.5])
    out: npt.NDArray[np.float32] = np.clip((field - lo) / (hi - lo + 1e-12), 0, 1).astype(np.float32)
    return out


def generated_photo(seed: int, width: int = 640, height: int = 480) -> U8:
    """A photo-like RGB image: coloured fractal texture, soft shapes, a light gradient and sensor noise."""
    rng = np.random.default_rng(seed)
    img = np.empty((height, width, 3), dtype=np.float32)
    base = fractal_noise(rng, height, width, beta=rng.uniform(1.6, 2.4))
    tint = rng.uniform(0.2, 1.0, size=3)
    for c in range(3):
        detail = fractal_noise(rng, height, width, beta=rng.uniform(1.2, 2.0))
        img[:, :, c] = 255 * (0.65 * base * tint[c] + 0.35 * detail)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    for _ in range(int(rng.integers(3, 9))):
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        ry, rx = rng.uniform(0.05, 0.35) * height, rng.uniform(0.05, 0.35) * width
        mask = np.clip(1.5 - np.sqrt(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2), 0, 1)
        img += mask[:, :, None] * rng.uniform(-90, 90, size=3)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * xx / width + np.sin(angle) * yy / height) * rng.uniform(-60, 60)
    img += ramp[:, :, None]
    img += rng.normal(0, rng.uniform(1.5, 5), size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


@functools.cache
def _skimage_photo(name: str) -> U8 | None:
    try:
        from skimage import data  # optional: bundled benign photos
    except ImportError:
        return None
    try:
        arr = np.asarray(getattr(data, name)())
    except Exception:  # a dataset that needs a download is not available offline
        return None
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=2)
    return np.ascontiguousarray(arr[:, :, :3]).astype(np.uint8)


def bundled_photos() -> list[tuple[str, U8]]:
    """scikit-image's bundled benign photos, when scikit-image is installed."""
    found = [(name, _skimage_photo(name)) for name in _SKIMAGE_PHOTOS]
    return [(name, arr) for name, arr in found if arr is not None]


def large_photo(seed: int, width: int, height: int) -> U8:
    """A large photo-like image with realistic fine detail (and so a realistic JPEG size).

    A bundled photo (or a generated one) is enlarged, then fine fractal texture
    and sensor noise are added so the file carries as much detail per pixel as a
    camera photo rather than the smoothness of an upscale.
    """
    rng = np.random.default_rng(seed)
    photos = bundled_photos()
    base = photos[seed % len(photos)][1] if photos else generated_photo(seed, 640, 480)
    img = np.asarray(
        Image.fromarray(base).resize((width, height), Image.Resampling.BICUBIC), dtype=np.float32
    )
    texture = fractal_noise(rng, height, width, beta=1.4) - 0.5
    img += texture[:, :, None] * rng.uniform(25, 45)
    img += rng.normal(0, 3.0, size=(height, width, 1))
    return np.clip(img, 0, 255).astype(np.uint8)


def corpus(count: int, seed: int = 0, width: int = 640, height: int = 480) -> Iterator[tuple[str, U8]]:
    """Bundled photos first (resized to the requested size), then generated ones."""
    made = 0
    for name, arr in bundled_photos():
        if made >= count:
            return
        yield name, np.asarray(Image.fromarray(arr).resize((width, height), Image.Resampling.BICUBIC))
        made += 1
    while made < count:
        yield f"generated-{seed + made}", generated_photo(seed + made, width, height)
        made += 1


def encode(pixels: U8 | Image.Image, fmt: str, **options: object) -> bytes:
    """Encode pixels (or a Pillow image) in a format Pillow (or pillow-heif, for HEIF) writes."""
    image = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)
    if fmt.upper() in ("HEIF", "HEIC"):
        import pillow_heif

        pillow_heif.register_heif_opener()
        fmt = "HEIF"
    buf = io.BytesIO()
    image.save(buf, format=fmt, **options)
    return buf.getvalue()


def write_examples(folder: Path, count: int = 6, seed: int = 2024) -> list[Path]:
    """A handful of small benign images in several formats (the README's demo folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    formats = [("JPEG", "jpg", {"quality": 88}), ("PNG", "png", {}), ("WEBP", "webp", {"quality": 85})]
    written = []
    for k in range(count):
        fmt, ext, options = formats[k % len(formats)]
        path = folder / f"example-{k + 1:02d}.{ext}"
        path.write_bytes(encode(generated_photo(seed + k, 320, 240), fmt, **options))
        written.append(path)
    return written
