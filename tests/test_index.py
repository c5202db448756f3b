"""The multi-index-hashing PDQ index: never misses an item within its threshold (vs brute force)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from childshield.index.pdq_flat import PdqFlatIndex
from childshield.index.pdq_mih import PdqMihIndex

pytest.importorskip("childshield.index._mih", reason="C extension not built")

RNG = np.random.default_rng(42)


def rand(n: int) -> np.ndarray:
    return RNG.integers(0, 2**64 - 1, size=(n, 4), dtype=np.uint64, endpoint=True)


def perturb(hashes: np.ndarray, bits: int) -> np.ndarray:
    out = hashes.copy()
    for row in out:
        for b in RNG.choice(256, bits, replace=False):
            row[b // 64] ^= np.uint64(1) << np.uint64(b % 64)
    return out


def triples(hits: list) -> list[tuple[int, int, int]]:
    return sorted((h.query, h.item, h.distance) for h in hits)


@pytest.mark.parametrize("max_threshold", [0, 15, 31, 32, 47, 63, 80])
def test_equals_brute_force_on_clustered_data(max_threshold: int) -> None:
    centres = rand(6)
    items = perturb(np.repeat(centres, 300, axis=0), 10)  # dense clusters: many near neighbours
    thresholds = RNG.integers(0, max_threshold + 1, len(items))
    thresholds[:10] = max_threshold
    queries = np.concatenate([perturb(items[RNG.integers(0, len(items), 60)], 14), rand(10)])
    mih = PdqMihIndex(items, thresholds)
    flat = PdqFlatIndex(items, thresholds)
    assert triples(mih.search(queries)) == triples(flat.search(queries))


def test_edge_31_and_32_with_bits_spread_over_the_hash() -> None:
    base = rand(1)
    items, expected = [], []
    for k in range(40):
        spread = RNG.choice(256, 32, replace=False)
        at31, at32 = base.copy(), base.copy()
        for b in spread[:31]:
            at31[0, b // 64] ^= np.uint64(1) << np.uint64(b % 64)
        at32[:] = at31
        at32[0, spread[31] // 64] ^= np.uint64(1) << np.uint64(spread[31] % 64)
        items += [at31[0], at32[0]]
        expected.append(2 * k)
    index = PdqMihIndex(np.array(items), np.full(len(items), 31))
    hits = index.search(base)
    assert [h.item for h in hits] == expected and {h.distance for h in hits} == {31}


def test_random_bank_and_queries_near_items() -> None:
    items = rand(20_000)
    thresholds = np.full(len(items), 31)
    queries = perturb(items[:200], 25)
    mih = PdqMihIndex(items, thresholds)
    found = mih.search(queries)
    assert triples(found) == triples(PdqFlatIndex(items, thresholds).search(queries))
    assert {(h.query, h.item) for h in found} >= {(k, k) for k in range(200)}


def test_add_disable_compact_and_persist(tmp_path: Path) -> None:
    items = rand(3000)
    index = PdqMihIndex(items, np.full(len(items), 31))
    extra = rand(50)
    added = index.add(extra, np.full(50, 31))
    assert list(added) == list(range(3000, 3050))
    assert [h.item for h in index.search(extra[7])] == [3007]  # searchable before any rebuild
    index.disable([5, 3010])
    assert index.search(items[5]) == [] and index.search(extra[10]) == []  # at once
    assert [h.item for h in index.search(items[6])] == [6]
    before = triples(index.search(np.concatenate([items[:50], extra])))
    index.save(tmp_path / "idx")
    loaded = PdqMihIndex.load(tmp_path / "idx")
    assert len(loaded) == 3050
    assert triples(loaded.search(np.concatenate([items[:50], extra]))) == before
    loaded.disable([6])  # a loaded (memory-mapped) index still takes updates
    assert loaded.search(items[6]) == []


def test_many_added_items_get_tables_of_their_own_and_stay_exact() -> None:
    """Past DELTA_TABLES_FROM added items the index searches them through their own tables: same hits as
    brute force over everything, with per-item thresholds, disables before and after those tables exist,
    and re-enabled items."""
    rng = np.random.default_rng(9)
    items = rand(2000)
    index = PdqMihIndex(items, rng.integers(0, 48, 2000))
    blocks = [rand(n) for n in (900, 1500, 40)]
    thresholds = [rng.integers(0, 48, len(b)) for b in blocks]
    for block, thr in zip(blocks, thresholds, strict=True):
        index.add(block, thr)
    index.disable([3, 2100, 4000])
    every = np.concatenate([items, *blocks])
    queries = np.concatenate([perturb(every[rng.integers(0, len(every), 60)], 18), rand(5)])

    def expected() -> list[tuple[int, int, int]]:
        limits = np.concatenate([index.thresholds, *(t for _, t in index._added)]).astype(np.int32)
        alive = np.concatenate([index.alive, *index._added_alive])
        return triples(PdqFlatIndex(every, np.where(alive > 0, limits, -1)).search(queries))

    assert triples(index.search(queries)) == expected()
    assert index._delta is not None  # the added items were searched through their own tables
    index.disable([2500, 3950])  # after the tables exist
    index.set_alive([2100], True)
    assert triples(index.search(queries)) == expected()
    hit = index.search(every[2500])
    assert 2500 not in [h.item for h in hit]


def test_empty_index() -> None:
    index = PdqMihIndex(np.empty((0, 4), dtype=np.uint64), np.empty(0))
    assert index.search(rand(3)) == []
    index.add(rand(1), [31])
    assert len(index) == 1


def test_a_damaged_saved_index_is_refused(tmp_path: Path) -> None:
    index = PdqMihIndex(rand(500), np.full(500, 31))
    index.save(tmp_path / "idx")
    ids = np.load(tmp_path / "idx" / "ids.npy")
    ids[17] = 10_000  # points past the end of the hashes
    np.save(tmp_path / "idx" / "ids.npy", ids)
    with pytest.raises(ValueError, match="consistent"):
        PdqMihIndex.load(tmp_path / "idx")
