"""PDQ index: childshield's PdqMihIndex against threatexchange's PDQIndex, same hashes, same queries, one run.

    python benchmarks/bench_index.py --sizes 1000000            # add 10000000 for the large run (~2 GB RAM)

Hashes are uniformly random (PDQ bits are balanced around the median, so chunks are near uniform);
queries are stored hashes with 20 random bits flipped (each has one true match within 31).  Reports build
time, save/load time (ours: .npy files mapped back), memory (RSS growth while building), single-query
latency (one query per call, median and p99) and batched throughput, and checks both indexes return the same
matches.  Pinned to one core for the query timings.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import statistics
import tempfile
import time

import numpy as np
from threatexchange.signal_type.pdq.pdq_index import PDQIndex

from childshield.index.pdq_mih import PdqMihIndex


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def hexes(words: np.ndarray) -> list[str]:
    return [bytes(row.astype(">u8").tobytes()).hex() for row in words]


def perturb(rng: np.random.Generator, rows: np.ndarray, bits: int) -> np.ndarray:
    out = rows.copy()
    for row in out:
        for b in rng.choice(256, bits, replace=False):
            row[b // 64] ^= np.uint64(1) << np.uint64(b % 64)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--queries", type=int, default=2000)
    args = parser.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    for n in args.sizes:
        rng = np.random.default_rng(n)
        words = rng.integers(0, 2**64 - 1, size=(n, 4), dtype=np.uint64, endpoint=True)
        queries = perturb(rng, words[rng.integers(0, n, args.queries)], 20)
        print(f"\n== {n:,} hashes, {args.queries} queries (20 bits from a stored hash), threshold 31 ==")

        gc.collect()
        before = rss_mb()
        t = time.perf_counter()
        ours = PdqMihIndex(words, np.full(n, 31))
        ours_build = time.perf_counter() - t
        ours_mem = rss_mb() - before
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            ours.save(tmp)
            save_s = time.perf_counter() - t
            t = time.perf_counter()
            loaded = PdqMihIndex.load(tmp)
            load_s = time.perf_counter() - t
            loaded.search_arrays(queries[:1])
            lat_ours = []
            for q in queries[:500]:
                t = time.perf_counter()
                loaded.search_arrays(q[None])
                lat_ours.append(time.perf_counter() - t)
            t = time.perf_counter()
            oq, oi, _ = loaded.search_arrays(queries)
            ours_batch = args.queries / (time.perf_counter() - t)
            ours_pairs = set(zip(oq.tolist(), oi.tolist(), strict=True))
            del loaded

        query_hex = hexes(queries)
        gc.collect()
        before = rss_mb()
        t = time.perf_counter()
        peer = PDQIndex(zip(hexes(words), range(n), strict=True))
        peer_build = time.perf_counter() - t
        peer_mem = rss_mb() - before
        lat_peer = []
        for qh in query_hex[:500]:
            t = time.perf_counter()
            peer.query(qh)
            lat_peer.append(time.perf_counter() - t)
        t = time.perf_counter()
        peer_pairs = {(k, m.metadata) for k, qh in enumerate(query_hex) for m in peer.query(qh)}
        peer_batch = args.queries / (time.perf_counter() - t)
        del peer

        def p(x: list[float], q: float) -> float:
            return sorted(x)[int(q * (len(x) - 1))] * 1e6

        print(f"{'':24}{'threatexchange PDQIndex':>26}{'childshield PdqMihIndex':>26}{'ratio':>9}")
        print(f"{'build':24}{peer_build:>24.2f} s{ours_build:>24.2f} s{peer_build / ours_build:>8.1f}x")
        print(f"{'memory (RSS growth)':24}{peer_mem:>23.0f} MB{ours_mem:>23.0f} MB")
        print(f"{'save / load':24}{'-':>26}{save_s:>14.2f} s / {load_s:.3f} s")
        lp, lo = statistics.median(lat_peer) * 1e6, statistics.median(lat_ours) * 1e6
        print(f"{'single query, median':24}{lp:>23.0f} us{lo:>23.0f} us{lp / lo:>8.1f}x")
        print(f"{'single query, p99':24}{p(lat_peer, 0.99):>23.0f} us{p(lat_ours, 0.99):>23.0f} us")
        print(
            f"{'throughput':24}{peer_batch:>21.0f} q/s{ours_batch:>21.0f} q/s{ours_batch / peer_batch:>8.1f}x"
        )
        same = {(q, i) for q, i in ours_pairs} == peer_pairs
        print(
            f"same matches: {same} ({len(ours_pairs)} pairs; every query's own source among them: "
            f"{all(any(q == k for q, _ in ours_pairs) for k in range(args.queries))})"
        )
    print(f"\npeak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
