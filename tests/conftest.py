"""Shared fixtures: benign generated images standing in for known material."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from childshield.testing.corpus import encode, generated_photo, large_photo

pytest_plugins = ["db_fixtures"]  # the `db` fixture: SQLite and PostgreSQL


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    """A 640x480 photo-like RGB image."""
    return generated_photo(7, 640, 480)


@pytest.fixture(scope="session")
def file_corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Photo-like files of several sizes and formats, as a camera or a platform would write them."""
    root = tmp_path_factory.mktemp("corpus")
    sizes = [
        (4000, 3000),
        (3000, 4000),
        (2048, 1536),
        (1600, 1200),
        (1155, 866),
        (1920, 1080),
        (800, 600),
        (640, 480),
        (2500, 1700),
        (1280, 1280),
    ]
    rng = np.random.default_rng(11)
    paths: list[Path] = []
    for k, (w, h) in enumerate(sizes):
        if k % 3 == 2:
            pixels = np.asarray(Image.fromarray(generated_photo(100 + k, 800, 600)).resize((w, h)))
        else:
            pixels = large_photo(k, w, h)
        quality = int(rng.integers(80, 96))
        path = root / f"photo{k:02d}.jpg"
        path.write_bytes(encode(pixels, "JPEG", quality=quality))
        paths.append(path)
        if k % 4 == 1:
            png = root / f"photo{k:02d}.png"
            png.write_bytes(encode(pixels, "PNG", compress_level=1))
            paths.append(png)
        if k % 4 == 3:
            webp = root / f"photo{k:02d}.webp"
            webp.write_bytes(encode(pixels, "WEBP", quality=90))
            paths.append(webp)
    progressive = root / "progressive.jpg"
    progressive.write_bytes(encode(large_photo(42, 3000, 2000), "JPEG", quality=90, progressive=True))
    paths.append(progressive)
    return paths
