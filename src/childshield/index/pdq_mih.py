"""Exact PDQ range search that scales: multi-index hashing (C core), persisted, updated in place.

* Exact: every item within its threshold is found (pigeonhole over 16 chunks of 16 bits; candidates are
  verified on all 256 bits), proven against :class:`PdqFlatIndex` in the tests.
* Memory: 32 bytes per hash plus 64 bytes of chunk tables (about 1 GB for 10 million hashes).
* Updates: disabling an item takes effect at once (a mask); added items are searched by brute force, or
  when there are many, through small tables of their own, until :meth:`compact` folds them into the main
  tables.  No update needs a full rebuild to be visible.
* Persistence: :meth:`save` writes plain ``.npy`` files; :meth:`load` maps them, so a restart takes
  seconds whatever the size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from childshield.index.pdq_flat import Hit, PdqFlatIndex

try:
    from childshield.index import _mih  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - installs without a compiler use the flat index
    _mih = None

U64 = npt.NDArray[np.uint64]
CHUNKS = 16
MAX_CHUNK_RADIUS = 3  # thresholds up to 63; beyond, the flat search is used
DELTA_TABLES_FROM = 2048  # added items searched through tables of their own from this many


def chunk_values(hashes: U64) -> npt.NDArray[np.uint16]:
    out = np.empty((len(hashes), CHUNKS), dtype=np.uint16)
    for c in range(CHUNKS):
        shift = np.uint64(48 - 16 * (c % 4))
        out[:, c] = ((hashes[:, c // 4] >> shift) & np.uint64(0xFFFF)).astype(np.uint16)
    return out


class PdqMihIndex:
    """Items are (hash, threshold); ``search`` returns every item within its own threshold of a query."""

    def __init__(
        self,
        hashes: U64,
        thresholds: npt.ArrayLike,
        *,
        ids: npt.NDArray[np.uint32] | None = None,
        offsets: npt.NDArray[np.int64] | None = None,
        alive: npt.NDArray[np.uint8] | None = None,
    ) -> None:
        self.hashes = np.ascontiguousarray(hashes, dtype=np.uint64)
        self.thresholds = np.ascontiguousarray(thresholds, dtype=np.int16)
        n = len(self.hashes)
        if self.hashes.shape != (n, 4) or self.thresholds.shape != (n,):
            raise ValueError("hashes must be (N, 4) uint64 with one threshold per hash")
        self.alive = np.ones(n, dtype=np.uint8) if alive is None else np.array(alive, dtype=np.uint8)
        if ids is None or offsets is None:
            ids, offsets = self._tables(self.hashes)
        self.ids, self.offsets = ids, offsets
        self._added: list[tuple[U64, npt.NDArray[np.int16]]] = []
        self._added_alive: list[npt.NDArray[np.uint8]] = []
        self._delta: PdqMihIndex | None = None  # tables over the added items, built when searched

    @staticmethod
    def _tables(hashes: U64) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.int64]]:
        n = len(hashes)
        keys = chunk_values(hashes)
        ids = np.empty(CHUNKS * n, dtype=np.uint32)
        offsets = np.empty((CHUNKS, 65537), dtype=np.int64)
        for c in range(CHUNKS):
            ids[c * n : (c + 1) * n] = np.argsort(keys[:, c], kind="stable")
            offsets[c, 0] = c * n
            np.cumsum(np.bincount(keys[:, c], minlength=65536), out=offsets[c, 1:])
            offsets[c, 1:] += c * n
        return ids, offsets

    def __len__(self) -> int:
        return len(self.hashes) + sum(len(h) for h, _ in self._added)

    def all_hashes(self) -> U64:
        """Every item's hash, added items included, in item order."""
        if not self._added:
            return np.asarray(self.hashes)
        return np.concatenate([self.hashes, *(h for h, _ in self._added)])

    # -- updates ------------------------------------------------------------------------------
    def add(self, hashes: U64, thresholds: npt.ArrayLike) -> range:
        """Add items (searchable at once); returns their item numbers."""
        start = len(self)
        block = np.ascontiguousarray(hashes, dtype=np.uint64).reshape(-1, 4)
        self._added.append((block, np.asarray(thresholds, dtype=np.int16).reshape(-1)))
        self._added_alive.append(np.ones(len(block), dtype=np.uint8))
        self._delta = None
        return range(start, start + len(block))

    def disable(self, items: npt.ArrayLike) -> None:
        """Stop matching these items at once (no rebuild)."""
        self.set_alive(items, False)

    def set_alive(self, items: npt.ArrayLike, alive: bool) -> None:
        """Disable items, or enable them again, at once (no rebuild)."""
        flag = 1 if alive else 0
        for item in np.atleast_1d(np.asarray(items, dtype=np.int64)):
            if item < len(self.hashes):
                self.alive[item] = flag
                continue
            rest = int(item) - len(self.hashes)
            if self._delta is not None and 0 <= rest < len(self._delta):
                self._delta.alive[rest] = flag
            for (block, _), flags in zip(self._added, self._added_alive, strict=True):
                if rest < len(block):
                    flags[rest] = flag
                    break
                rest -= len(block)
            else:
                raise IndexError(f"no item {item}")

    def set_thresholds(self, thresholds: npt.ArrayLike) -> None:
        """Replace every item's threshold (added items included, in item order); -1 never matches."""
        values = np.ascontiguousarray(thresholds, dtype=np.int16)
        if values.shape != (len(self),):
            raise ValueError("one threshold per item")
        self.thresholds = values[: len(self.hashes)].copy()
        start = len(self.hashes)
        for k, (block, _) in enumerate(self._added):
            self._added[k] = (block, values[start : start + len(block)].copy())
            start += len(block)
        self._delta = None

    def compact(self) -> None:
        """Fold added items into the tables (a rebuild, done when convenient)."""
        if not self._added:
            return
        self.hashes = np.concatenate([self.hashes, *(h for h, _ in self._added)])
        self.thresholds = np.concatenate([self.thresholds, *(t for _, t in self._added)])
        self.alive = np.concatenate([self.alive, *self._added_alive])
        self._added, self._added_alive, self._delta = [], [], None
        self.ids, self.offsets = self._tables(self.hashes)

    # -- search --------------------------------------------------------------------------------
    def search_arrays(
        self, queries: U64, thresholds: npt.NDArray[np.int16] | None = None, *, approximate: bool = False
    ) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int64], npt.NDArray[np.int16]]:
        """(query, item, distance) arrays of every hit, sorted by query then item.

        ``thresholds`` (one per item, added items included) replaces the items' own for this search: a
        second, looser search over the same tables costs no second index.  ``approximate``: thresholds
        over 63 are searched at the cost of 63 (items beyond 63 are found when one of their 16-bit chunks
        is within 3 bits of the query's: about 99% of those within 80 when the differing bits are spread;
        everything within 63 is still found)."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.uint64)
        base = len(self.hashes)
        if thresholds is not None:
            thresholds = np.ascontiguousarray(thresholds, dtype=np.int16)
            if thresholds.shape != (len(self),):
                raise ValueError("one threshold per item")
        main = self.thresholds if thresholds is None else thresholds[:base]
        parts_q: list[npt.NDArray[np.int32]] = []
        parts_i: list[npt.NDArray[np.int64]] = []
        parts_d: list[npt.NDArray[np.int16]] = []
        if len(self.hashes) and int(main.max()) >= 0:
            top = int(main.max())
            radius = min(top // CHUNKS, MAX_CHUNK_RADIUS) if approximate else top // CHUNKS
            if _mih is not None and radius <= MAX_CHUNK_RADIUS:
                rq, ri, rd = _mih.search(
                    self.hashes, main, self.alive, self.ids, self.offsets, queries, radius, top
                )
                parts_q.append(np.frombuffer(rq, dtype=np.int32))
                parts_i.append(np.frombuffer(ri, dtype=np.int32).astype(np.int64))
                parts_d.append(np.frombuffer(rd, dtype=np.int16))
            else:
                self._flat_part(self.hashes, main, self.alive, 0, queries, parts_q, parts_i, parts_d)
        added = sum(len(block) for block, _ in self._added)
        if added >= DELTA_TABLES_FROM:  # many added items: their own small tables, no brute force
            if self._delta is None:
                self._delta = PdqMihIndex(
                    np.concatenate([h for h, _ in self._added]),
                    np.concatenate([t for _, t in self._added]),
                    alive=np.concatenate(self._added_alive),
                )
            q, i, d = self._delta.search_arrays(
                queries, None if thresholds is None else thresholds[base:], approximate=approximate
            )
            parts_q.append(q)
            parts_i.append(i + base)
            parts_d.append(d)
        else:
            for (block, thr), flags in zip(self._added, self._added_alive, strict=True):
                own = thr if thresholds is None else thresholds[base : base + len(block)]
                self._flat_part(block, own, flags, base, queries, parts_q, parts_i, parts_d)
                base += len(block)
        if not parts_q:
            return np.empty(0, np.int32), np.empty(0, np.int64), np.empty(0, np.int16)
        q, i, d = np.concatenate(parts_q), np.concatenate(parts_i), np.concatenate(parts_d)
        order = np.lexsort((i, q))
        return q[order], i[order], d[order]

    @staticmethod
    def _flat_part(
        hashes: U64,
        thresholds: npt.NDArray[np.int16],
        alive: npt.NDArray[np.uint8],
        base: int,
        queries: U64,
        parts_q: list[npt.NDArray[np.int32]],
        parts_i: list[npt.NDArray[np.int64]],
        parts_d: list[npt.NDArray[np.int16]],
    ) -> None:
        flat = PdqFlatIndex(hashes, np.where(alive > 0, thresholds, -1))
        hits = flat.search(queries)
        parts_q.append(np.array([h.query for h in hits], dtype=np.int32))
        parts_i.append(np.array([h.item + base for h in hits], dtype=np.int64))
        parts_d.append(np.array([h.distance for h in hits], dtype=np.int16))

    def search(self, queries: U64) -> list[Hit]:
        q, i, d = self.search_arrays(queries)
        return [Hit(int(a), int(b), int(c)) for a, b, c in zip(q, i, d, strict=True)]

    # -- persistence ---------------------------------------------------------------------------
    def save(self, folder: str | Path) -> None:
        self.compact()
        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        for name in ("hashes", "thresholds", "alive", "ids", "offsets"):
            np.save(path / f"{name}.npy", getattr(self, name))

    @classmethod
    def load(cls, folder: str | Path) -> PdqMihIndex:
        """Map a saved index (no rebuild; pages load on demand)."""
        path = Path(folder)
        arrays = {
            name: np.load(path / f"{name}.npy", mmap_mode="r")
            for name in ("hashes", "thresholds", "alive", "ids", "offsets")
        }
        n = len(arrays["hashes"])
        ids, offsets = arrays["ids"], arrays["offsets"]
        # The C search trusts these tables: check them once, so a damaged file is an error, not a crash.
        bounds = np.arange(CHUNKS, dtype=np.int64) * n
        if (
            ids.shape != (CHUNKS * n,)
            or offsets.shape != (CHUNKS, 65537)
            or (n and int(ids.max()) >= n)
            or not np.array_equal(offsets[:, 0], bounds)
            or not np.array_equal(offsets[:, -1], bounds + n)
            or bool((np.diff(offsets, axis=1) < 0).any())
        ):
            raise ValueError(f"{path} does not hold a consistent PDQ index")
        return cls(arrays["hashes"], arrays["thresholds"], ids=ids, offsets=offsets, alive=arrays["alive"])
