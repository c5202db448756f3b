"""ORB local features and their verification: a second check of PDQ candidates, independent of PDQ.

A bank item built from media keeps up to :data:`BANK_FEATURES` ORB keypoints of its picture (grayscale,
longer side at most :data:`SIDE` px, spread over a grid) and one small signature per grid cell.  A scanned
file whose PDQ comes near an item but not within the threshold (a watermark, a larger crop) is checked
against it: descriptors are matched with Lowe's ratio test, one to one, then RANSAC fits a similarity
(turn, uniform scale, shift).  The copy is the item when enough matches agree on one transform, they
spread over enough of the item's picture, **and** the copy, brought into the item's frame, has the same
cell signatures over most of the item's textured cells: two unrelated pictures that carry the same
overlay (a logo, a watermark, a meme template) agree on many points too, but only in the overlay's cells.

Stored as bytes (:func:`pack`): a 10-byte header, 32 bytes of descriptor and two int16 coordinates in
1/16 px per keypoint, then 36 two-byte cell signatures: about 18 KB per item.  No pixels are kept: a cell
signature is the signs of a few DCT coefficients, the same kind of information as a PDQ hash.  Like hash
lists, stored features are sensitive data (local descriptors can be partly inverted into a coarse
picture): they stay in the bank's database and are never exported.  Measured in
``benchmarks/bench_second_check.py``.
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
MIN_SIDE = 32
"""Pictures with a side under this many pixels get no keypoints."""
OVERSAMPLE = 3
"""Keypoints detected per keypoint kept, so that every part of the picture can get its share."""
RATIO = 0.8
MIN_GOOD = 6
RANSAC_PX = 5.0
MAX_SCALE = 8.0
GRID = 6
"""Keypoints are spread over, and the agreement counted on, a GRID x GRID grid of cells."""
CELL_BITS = 15
"""Each cell's signature: the signs of its 15 lowest-frequency DCT coefficients (DC left out), so it
ignores brightness and contrast; the 16th bit says whether the cell has texture at all."""
CELL_AGREE = 3
"""A cell agrees when its signature and the copy's differ in at most this many bits (unrelated cells
differ in about 7.5; 3 keeps pictures that only share an overlay apart, measured)."""
TEXTURE = 4.0
"""A cell has texture when its gray levels vary by at least this much (standard deviation)."""
CELL_COVERED = 0.95
"""Only cells the copy covers this fully are compared (a crop removes the rest)."""

_HEADER = struct.Struct("<4sHHH")
_MAGIC = b"ORB1"
_COORD = 16.0  # coordinates stored in 1/16 px
_POPCOUNT16 = (
    np.unpackbits(np.arange(1 << 16, dtype=np.uint16).view(np.uint8))
    .reshape(-1, 16)
    .sum(axis=1, dtype=np.int8)
)  # set bits of every 16-bit value (NumPy: a list of 65,536 bin() took 15 ms of every import)


@dataclass(frozen=True, slots=True)
class OrbFeatures:
    width: int
    height: int
    """Size of the (downscaled) picture the points are in."""
    points: F32
    """(n, 2) x, y."""
    descriptors: U8
    """(n, 32)."""
    cells: npt.NDArray[np.uint16] | None = None
    """A bank item's cell signatures (GRID * GRID, see CELL_BITS): stored."""
    plane: U8 | None = None
    """A query's gray plane, to bring into an item's frame: never stored."""

    def __len__(self) -> int:
        return len(self.points)


@dataclass(frozen=True, slots=True)
class Verification:
    inliers: int
    """Descriptor matches consistent with one similarity transform (0 when none was found)."""
    area: float
    """Share of the bank picture covered by the convex hull of the inlier points (0..1)."""
    agreement: float = 0.0
    """Share (0..1) of the item's textured cells (those the copy covers) whose signature the copy, brought
    into the item's frame by the transform, matches: low for unrelated pictures sharing an overlay, which
    agree only over the overlay's cells."""


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


def extract(gray: U8, features: int) -> OrbFeatures:
    """ORB keypoints and descriptors of an 8-bit gray plane, spread over the picture (see _spread)."""
    rows, cols = gray.shape
    keypoints, desc = [], None
    if min(rows, cols) >= MIN_SIDE:  # ORB's pyramid and border need room; smaller pictures have none
        try:
            keypoints, desc = _detector(OVERSAMPLE * features, 20).detectAndCompute(gray, None)
            if len(keypoints) < FALLBACK_BELOW:
                keypoints, desc = _detector(OVERSAMPLE * features, FAST_LOW).detectAndCompute(gray, None)
        except _cv2().error:  # a picture OpenCV cannot work on: no features, never a failed scan
            keypoints, desc = [], None
    if desc is None or not keypoints:
        return OrbFeatures(cols, rows, np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8))
    points = np.array([k.pt for k in keypoints], dtype=np.float32).reshape(-1, 2)
    response = np.array([k.response for k in keypoints], dtype=np.float32)
    keep = _spread(points, response, features, cols, rows)
    return OrbFeatures(cols, rows, points[keep], np.ascontiguousarray(desc[keep], dtype=np.uint8))


def _spread(points: F32, response: F32, features: int, cols: int, rows: int) -> npt.NDArray[np.int64]:
    """The strongest keypoints of each GRID x GRID cell first (an equal share each), then the strongest
    of the rest.  Without it one strongly textured region (a logo, an overlay, foliage) takes nearly all
    the keypoints, and the rest of the picture could not be checked."""
    if len(points) <= features:
        return np.arange(len(points))
    cx = np.minimum((points[:, 0] * GRID / cols).astype(np.int64), GRID - 1)
    cy = np.minimum((points[:, 1] * GRID / rows).astype(np.int64), GRID - 1)
    cell = cy * GRID + cx
    order = np.lexsort((-response, cell))  # by cell, strongest first within each
    rank = np.empty(len(points), dtype=np.int64)
    starts = np.searchsorted(cell[order], np.arange(GRID * GRID))
    rank[order] = np.arange(len(points)) - starts[cell[order]]
    share = features // (GRID * GRID)
    first = np.flatnonzero(rank < share)
    rest = np.flatnonzero(rank >= share)
    rest = rest[np.argsort(-response[rest], kind="stable")][: max(0, features - len(first))]
    return np.sort(np.concatenate([first, rest]))


def picture_features(picture: Picture, features: int = BANK_FEATURES) -> OrbFeatures:
    """A bank item's keypoints and cell signatures."""
    gray = gray_plane(picture)
    found = extract(gray, features)
    return OrbFeatures(found.width, found.height, found.points, found.descriptors, cell_signatures(gray))


def query_features(picture: Picture) -> tuple[OrbFeatures, OrbFeatures]:
    """A scanned picture's features, and its mirror's (ORB is not mirror invariant), with their planes."""
    gray = gray_plane(picture)
    mirrored = np.ascontiguousarray(gray[:, ::-1])
    return _with_plane(gray), _with_plane(mirrored)


def _with_plane(plane: U8) -> OrbFeatures:
    found = extract(plane, QUERY_FEATURES)
    return OrbFeatures(found.width, found.height, found.points, found.descriptors, plane=plane)


def cell_signatures(gray: U8, covered: npt.NDArray[np.bool_] | None = None) -> npt.NDArray[np.uint16]:
    """GRID x GRID cell signatures of a gray plane (see CELL_BITS); with ``covered``, cells not covered
    enough get no texture bit."""
    cv2 = _cv2()
    rows, cols = gray.shape
    r_edges = np.linspace(0, rows, GRID + 1).round().astype(int)
    c_edges = np.linspace(0, cols, GRID + 1).round().astype(int)
    out = np.zeros(GRID * GRID, dtype=np.uint16)
    weights = (1 << np.arange(CELL_BITS)).astype(np.uint16)
    for i in range(GRID):
        for j in range(GRID):
            cell = gray[r_edges[i] : r_edges[i + 1], c_edges[j] : c_edges[j + 1]]
            if cell.size < 4:
                continue
            if covered is not None:
                part = covered[r_edges[i] : r_edges[i + 1], c_edges[j] : c_edges[j + 1]]
                if part.mean() < CELL_COVERED:
                    continue
            small = cv2.resize(cell, (16, 16), interpolation=cv2.INTER_AREA).astype(np.float32)
            coefficients = cv2.dct(small)[:4, :4].ravel()[1:]
            value = int((weights * (coefficients > 0)).sum())
            if float(cell.std()) >= TEXTURE:
                value |= 1 << CELL_BITS
            out[i * GRID + j] = value
    return out


def pack(features: OrbFeatures) -> bytes:
    n = len(features)
    coords: npt.NDArray[np.int16] = np.clip(np.rint(features.points * _COORD), -32768, 32767).astype("<i2")
    cells = features.cells if features.cells is not None else np.zeros(GRID * GRID, np.uint16)
    header: bytes = _HEADER.pack(_MAGIC, features.width, features.height, n)
    body = bytes(features.descriptors.tobytes()) + bytes(coords.tobytes())
    return header + body + bytes(cells.astype("<u2").tobytes())


def unpack(data: bytes) -> OrbFeatures:
    """Raises ValueError for bytes that are not packed features."""
    if len(data) < _HEADER.size:
        raise ValueError("ORB features: too short")
    magic, width, height, n = _HEADER.unpack_from(data)
    if magic != _MAGIC or len(data) != _HEADER.size + 36 * n + 2 * GRID * GRID or not width or not height:
        raise ValueError("ORB features: damaged or of another format")
    start = _HEADER.size
    desc = np.frombuffer(data, dtype=np.uint8, count=32 * n, offset=start).reshape(n, 32)
    coords = np.frombuffer(data, dtype="<i2", count=2 * n, offset=start + 32 * n).reshape(n, 2)
    cells = np.frombuffer(data, dtype="<u2", count=GRID * GRID, offset=start + 36 * n).astype(np.uint16)
    return OrbFeatures(width, height, coords.astype(np.float32) / _COORD, desc, cells)


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
    """Share of the item's textured cells, among those the copy covers, whose signature the copy (brought
    into the item's frame) matches within CELL_AGREE bits.  The item's side is its stored signatures:
    no pixels of a known item are ever kept."""
    if query.plane is None or bank.cells is None:
        return 0.0
    cv2 = _cv2()
    size = (bank.width, bank.height)
    warped = cv2.warpAffine(query.plane, model, size, flags=cv2.INTER_LINEAR)
    covered = cv2.warpAffine(np.full(query.plane.shape, 255, np.uint8), model, size) == 255
    mine = cell_signatures(warped, covered)
    flag = np.uint16(1 << CELL_BITS)
    counted = ((bank.cells & flag) > 0) & ((mine & flag) > 0)
    if not counted.any():
        return 0.0
    differ = _POPCOUNT16[(bank.cells ^ mine) & np.uint16(flag - 1)]
    return float((differ[counted] <= CELL_AGREE).mean())
