"""ORB local features and their geometric verification: a second check, independent of PDQ.

A bank item built from media keeps up to :data:`BANK_FEATURES` ORB keypoints of its picture (grayscale,
longer side at most :data:`SIDE` px).  A scanned file whose PDQ comes near an item but not within the
threshold (a watermark, a larger crop) is checked against it: descriptors are matched with Lowe's ratio
test, one to one, then RANSAC fits a similarity (turn, uniform scale, shift).  The copy is the item when
enough matches agree on one transform **and** they spread over enough of the item's picture: two unrelated
pictures that carry the same overlay (a logo, a watermark, a meme template) agree on many points too, but
only within the overlay's small area.

Stored as bytes (:func:`pack`): a 10-byte header, then 32 bytes of descriptor and two int16 coordinates in
1/16 px per keypoint, about 18 KB per item.  Measured in ``benchmarks/bench_second_check.py``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import numpy.typing as npt

from childshield.media.decode import Picture
from childshield.signals.pdq_picture import luma

U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]

KIND = "orb1"
SIDE = 512
"""ORB runs on the picture downscaled so that its longer side is at most this many pixels."""
BANK_FEATURES = 500
QUERY_FEATURES = 1000
"""A query keeps more points than a bank item: an overlay hides some of the item's, the rest must be found."""
FALLBACK_BELOW = 100
"""Flat pictures: with fewer keypoints than this, detect again with a lower corner threshold."""
FAST_LOW = 5
RATIO = 0.8
MIN_GOOD = 6
RANSAC_PX = 5.0
MAX_SCALE = 8.0
THUMB = 64
"""Bank items also keep a tiny gray thumbnail (longer side this many pixels, at most 4 KB) for the
photometric part of the check: after the transform is found, the copy must also look like the item
outside the region where the matched points lie."""
CELL = 8
TEXTURE = 4.0
"""A thumbnail cell counts when its gray levels vary by at least this much (standard deviation)."""
AGREE = 0.5
"""A cell agrees when the copy's pixels correlate with the item's at least this much."""

_HEADER = struct.Struct("<4sHHHBB")
_MAGIC = b"ORB1"
_COORD = 16.0  # coordinates stored in 1/16 px


@dataclass(frozen=True, slots=True)
class OrbFeatures:
    width: int
    height: int
    """Size of the (downscaled) picture the points are in."""
    points: F32
    """(n, 2) x, y."""
    descriptors: U8
    """(n, 32)."""
    image: U8 | None = None
    """A bank item's gray thumbnail (stored); a query's gray plane (not stored)."""

    def __len__(self) -> int:
        return len(self.points)


@dataclass(frozen=True, slots=True)
class Verification:
    inliers: int
    """Descriptor matches consistent with one similarity transform (0 when none was found)."""
    area: float
    """Share of the bank picture covered by the convex hull of the inlier points (0..1)."""
    agreement: float = 0.0
    """Share (0..1) of the item thumbnail's textured cells where the copy, brought into the item's frame
    by the transform, shows the same texture: low for unrelated pictures that share an overlay."""


def available() -> bool:
    """Whether OpenCV can be imported (the check is skipped, with a note, where it cannot)."""
    try:
        _cv2()
    except ImportError:
        return False
    return True


@cache
def _cv2() -> Any:
    import cv2

    cv2.setNumThreads(1)  # one picture at a time per process: callers parallelise over files
    return cv2


@cache
def _detector(features: int, fast_threshold: int) -> Any:
    return _cv2().ORB_create(nfeatures=features, fastThreshold=fast_threshold)


def gray_plane(picture: Picture) -> U8:
    """The picture in 8-bit gray, longer side at most :data:`SIDE` px (area-averaged)."""
    cv2 = _cv2()
    plane = np.clip(np.rint(luma(picture.pixels)), 0, 255).astype(np.uint8)
    rows, cols = plane.shape
    scale = SIDE / max(rows, cols)
    if scale < 1:
        size = (max(1, round(cols * scale)), max(1, round(rows * scale)))
        plane = cv2.resize(plane, size, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(plane)


def thumbnail(gray: U8) -> U8:
    rows, cols = gray.shape
    scale = min(1.0, THUMB / max(rows, cols))
    size = (max(1, round(cols * scale)), max(1, round(rows * scale)))
    out: U8 = _cv2().resize(gray, size, interpolation=_cv2().INTER_AREA)
    return np.ascontiguousarray(out)


def extract(gray: U8, features: int, image: U8 | None = None) -> OrbFeatures:
    """ORB keypoints and descriptors of an 8-bit gray plane (``image`` is kept with them)."""
    rows, cols = gray.shape
    keypoints, desc = _detector(features, 20).detectAndCompute(gray, None)
    if len(keypoints) < FALLBACK_BELOW:
        keypoints, desc = _detector(features, FAST_LOW).detectAndCompute(gray, None)
    if desc is None or not keypoints:
        return OrbFeatures(cols, rows, np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8), image)
    points = np.array([k.pt for k in keypoints], dtype=np.float32).reshape(-1, 2)
    return OrbFeatures(cols, rows, points, np.ascontiguousarray(desc, dtype=np.uint8), image)


def picture_features(picture: Picture, features: int = BANK_FEATURES) -> OrbFeatures:
    """A bank item's features, with its thumbnail."""
    gray = gray_plane(picture)
    return extract(gray, features, thumbnail(gray))


def query_features(picture: Picture) -> tuple[OrbFeatures, OrbFeatures]:
    """A scanned picture's features, and its mirror's (ORB is not mirror invariant), each with its plane."""
    gray = gray_plane(picture)
    mirrored = np.ascontiguousarray(gray[:, ::-1])
    return extract(gray, QUERY_FEATURES, gray), extract(mirrored, QUERY_FEATURES, mirrored)


def pack(features: OrbFeatures) -> bytes:
    n = len(features)
    coords: npt.NDArray[np.int16] = np.clip(np.rint(features.points * _COORD), -32768, 32767).astype("<i2")
    thumb = features.image if features.image is not None else np.zeros((0, 0), np.uint8)
    th, tw = thumb.shape
    if tw > 255 or th > 255:
        raise ValueError("ORB features: thumbnail too large")
    header: bytes = _HEADER.pack(_MAGIC, features.width, features.height, n, tw, th)
    return header + bytes(features.descriptors.tobytes()) + bytes(coords.tobytes()) + bytes(thumb.tobytes())


def unpack(data: bytes) -> OrbFeatures:
    """Raises ValueError for bytes that are not packed features."""
    if len(data) < _HEADER.size:
        raise ValueError("ORB features: too short")
    magic, width, height, n, tw, th = _HEADER.unpack_from(data)
    if magic != _MAGIC or len(data) != _HEADER.size + 36 * n + tw * th or not width or not height:
        raise ValueError("ORB features: damaged or of another format")
    start = _HEADER.size
    desc = np.frombuffer(data, dtype=np.uint8, count=32 * n, offset=start).reshape(n, 32)
    coords = np.frombuffer(data, dtype="<i2", count=2 * n, offset=start + 32 * n).reshape(n, 2)
    thumb = None
    if tw and th:
        thumb = np.frombuffer(data, dtype=np.uint8, count=tw * th, offset=start + 36 * n).reshape(th, tw)
    return OrbFeatures(width, height, coords.astype(np.float32) / _COORD, desc, thumb)


def verify(query: OrbFeatures, bank: OrbFeatures) -> Verification:
    """How well ``query`` maps onto ``bank`` by one similarity transform."""
    none = Verification(0, 0.0)
    if len(query) < MIN_GOOD or len(bank) < 2:
        return none
    cv2 = _cv2()
    dist, idx = cv2.batchDistance(
        query.descriptors, bank.descriptors, cv2.CV_32S, normType=cv2.NORM_HAMMING, K=2
    )
    good = np.flatnonzero(dist[:, 0] < RATIO * dist[:, 1])
    if len(good) < MIN_GOOD:
        return none
    # one to one: where several query points chose the same bank point, the closest keeps it
    order = good[np.argsort(dist[good, 0], kind="stable")]
    _, first = np.unique(idx[order, 0], return_index=True)
    keep = order[first]
    if len(keep) < MIN_GOOD:
        return none
    src = query.points[keep].reshape(-1, 1, 2)
    dst = bank.points[idx[keep, 0]].reshape(-1, 1, 2)
    model, mask = cv2.estimateAffinePartial2D(
        src, dst, method=cv2.RANSAC, ransacReprojThreshold=RANSAC_PX, maxIters=2000, confidence=0.995
    )
    if model is None or mask is None:
        return none
    scale = float(np.hypot(model[0, 0], model[1, 0]))
    if not 1 / MAX_SCALE <= scale <= MAX_SCALE:
        return none
    inside = dst.reshape(-1, 2)[mask.ravel() > 0]
    if len(inside) < 3:
        return Verification(len(inside), 0.0)
    hull = cv2.convexHull(inside.astype(np.float32))
    area = float(cv2.contourArea(hull)) / float(bank.width * bank.height)
    return Verification(len(inside), min(1.0, area), _agreement(query, bank, model))


def _agreement(query: OrbFeatures, bank: OrbFeatures, model: npt.NDArray[np.float64]) -> float:
    """Share of the bank thumbnail's textured cells (8x8 px) where the query, warped into its frame,
    shows the same texture (correlation >= :data:`AGREE`).  Correlation ignores brightness, contrast and
    gray edits, and a semi-transparent watermark still shows the texture under it; an opaque overlay
    shared by unrelated pictures agrees only over its own cells."""
    cv2 = _cv2()
    if query.image is None or bank.image is None:
        return 0.0
    th, tw = bank.image.shape
    scale = np.array([[tw / bank.width, 0, 0], [0, th / bank.height, 0], [0, 0, 1]])
    to_thumb = scale @ np.vstack([model, [0, 0, 1]])
    # Shrink the query by area averaging first (as the thumbnail was made): a warp that shrinks by 7x
    # would sample single pixels and alias fine textures (grass, brick) into noise.
    factor = min(1.0, float(np.hypot(to_thumb[0, 0], to_thumb[1, 0])))
    rows, cols = query.image.shape
    size = (max(1, round(cols * factor)), max(1, round(rows * factor)))
    small = cv2.resize(query.image, size, interpolation=cv2.INTER_AREA)
    shrink = np.array([[cols / size[0], 0, 0], [0, rows / size[1], 0], [0, 0, 1]])
    to_thumb = (to_thumb @ shrink)[:2]
    warped = cv2.warpAffine(small, to_thumb, (tw, th), flags=cv2.INTER_LINEAR).astype(np.float64)
    covered = cv2.warpAffine(np.full(small.shape, 255, np.uint8), to_thumb, (tw, th)) == 255
    rows, cols = th // CELL, tw // CELL
    if not rows or not cols:  # a thumbnail under one cell: nothing to compare
        return 0.0
    size = (rows, CELL, cols, CELL)
    a = warped[: rows * CELL, : cols * CELL].reshape(size).transpose(0, 2, 1, 3).reshape(rows * cols, -1)
    b = bank.image[: rows * CELL, : cols * CELL].astype(np.float64)
    b = b.reshape(size).transpose(0, 2, 1, 3).reshape(rows * cols, -1)
    cover = covered[: rows * CELL, : cols * CELL].reshape(size).transpose(0, 2, 1, 3).reshape(rows * cols, -1)
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    sa, sb = np.sqrt((a * a).sum(axis=1)), np.sqrt((b * b).sum(axis=1))
    textured = (sb / CELL >= TEXTURE) & (cover.mean(axis=1) >= 0.75)
    if not textured.any():
        return 0.0
    corr = (a * b).sum(axis=1) / np.maximum(sa * sb, 1e-9)
    return float((corr[textured] >= AGREE).mean())
