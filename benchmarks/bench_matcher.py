"""Matcher restart and updates at scale: a bank of N PDQ hashes in SQLite, opened again and again.

    python benchmarks/bench_matcher.py --sizes 1000000      # add 10000000 for the large run (~4 GB disk)

Steps, each timed in a fresh process so nothing is cached in memory but the OS page cache:
1. import N random PDQ hashes with ``bank import`` code (``import_rows``), one transaction;
2. first open: the index is built from the database rows and saved beside the database;
3. restart: the saved index is mapped and caught up (nothing to catch up);
4. 10,000 entries added and 1,000 disabled, then a restart: the index catches up, no rebuild;
5. queries through the matcher (index search plus the database read of each hit's details):
   single-query latency and ``match_many`` throughput.
Peer, same hashes: threatexchange's ``PDQIndex`` built, serialized with its own ``serialize`` and read
back with ``deserialize`` (its restart).  RSS growth is reported for each open.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench_index import hexes, perturb

CHILD = r"""
import json, os, sys, time
t0 = time.perf_counter()
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
base = rss()
from childshield.store.db import open_database
from childshield.matching import Matcher
db = open_database(sys.argv[1])
t1 = time.perf_counter()
matcher = Matcher.load(db)
t2 = time.perf_counter()
out = {"open_s": t2 - t1, "process_s": t2 - t0, "rss_mb": rss() - base, "items": len(matcher.index)}
if len(sys.argv) > 2:
    queries = json.load(open(sys.argv[2]))
    lat = []
    for q in queries[:200]:
        s = time.perf_counter(); r = matcher.match("pdq", q); lat.append(time.perf_counter() - s)
        assert r.matched, q
    s = time.perf_counter()
    results = matcher.match_many([("pdq", q, None) for q in queries])
    out["batch_s"] = time.perf_counter() - s
    out["matched"] = sum(r.matched for r in results)
    out["single_us"] = sorted(lat)[len(lat) // 2] * 1e6
print(json.dumps(out))
"""


def child(url: str, queries: Path | None = None) -> dict[str, float]:
    args = [sys.executable, "-c", CHILD, url] + ([str(queries)] if queries else [])
    proc = subprocess.run(args, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.splitlines()[-1])


def run(n: int, queries_count: int, folder: Path) -> None:
    from sqlalchemy import select

    from childshield.banks import create_bank
    from childshield.banks.entries import import_rows, set_entry_state
    from childshield.banks.formats import Parsed, SignalRow
    from childshield.store.db import open_database
    from childshield.store.models import Entry, EntryState, SignalType

    rng = np.random.default_rng(n)
    words = rng.integers(0, 2**64 - 1, size=(n + 10_000, 4), dtype=np.uint64, endpoint=True)
    url = f"sqlite:///{folder / 'bench.db'}"
    reuse = (folder / "bench.db").exists()
    db = open_database(url)
    if not reuse:
        create_bank(db, "known")

    def parsed(block: np.ndarray) -> Parsed:
        return Parsed([SignalRow(k + 1, SignalType.PDQ, h, None, ()) for k, h in enumerate(hexes(block))], [])

    if not reuse:
        t = time.perf_counter()
        report = import_rows(db, "known", parsed(words[:n]), source_name="bench")
        took = time.perf_counter() - t
        print(f"import: {report.added:,} entries in {took:.1f} s ({report.added / took:,.0f}/s)")

    first = child(url)
    print(f"first open (build from rows, save): {first['open_s']:.2f} s, RSS +{first['rss_mb']:.0f} MB")
    again = child(url)
    print(f"restart (saved index, mapped): {again['open_s']:.2f} s, RSS +{again['rss_mb']:.0f} MB")
    size = sum(f.stat().st_size for f in (folder / "bench.db.index").rglob("*") if f.is_file())
    print(f"saved index on disk: {size / 2**20:.0f} MB")

    import_rows(db, "known", parsed(words[n:]), source_name="bench-more")
    step = max(1, n // 1000)
    with db.session() as session:  # every step-th entry (reading all 10 million rows would take minutes)
        some = [
            {"entry_id": e, "signal": sig}
            for e, sig in session.execute(
                select(Entry.id, Entry.signal).where(Entry.id % step == 0).order_by(Entry.id).limit(1000)
            )
        ]
    t = time.perf_counter()
    for r in some:
        set_entry_state(db, "known", int(r["entry_id"]), EntryState.DISABLED, "bench")
    per_disable = (time.perf_counter() - t) / len(some)
    print(f"disable: {per_disable * 1e3:.1f} ms per entry (one transaction each)")
    disabled = {r["signal"] for r in some}
    db.close()

    sources = [
        k
        for k in rng.integers(0, n + 10_000, queries_count * 2)
        if hexes(words[k : k + 1])[0] not in disabled
    ]
    live = hexes(perturb(rng, words[np.asarray(sources[:queries_count])], 20))  # each has a live match
    qfile = folder / "queries.json"
    qfile.write_text(json.dumps(live))
    caught = child(url, qfile)
    print(
        f"restart after 10,000 added and {len(some)} disabled (catch-up, no rebuild): "
        f"{caught['open_s']:.2f} s, {int(caught['items']):,} items"
    )
    print(
        f"matcher queries: single {caught['single_us']:.0f} µs median; match_many "
        f"{len(live) / caught['batch_s']:,.0f} q/s ({int(caught['matched'])}/{len(live)} matched)"
    )

    from threatexchange.signal_type.pdq.pdq_index import PDQIndex

    t = time.perf_counter()
    peer = PDQIndex.build((h, k) for k, h in enumerate(hexes(words[:n])))
    build = time.perf_counter() - t
    path = folder / "peer.pickle"
    t = time.perf_counter()
    with path.open("wb") as f:
        peer.serialize(f)
    save = time.perf_counter() - t
    del peer
    t = time.perf_counter()
    with path.open("rb") as f:
        PDQIndex.deserialize(f)
    load = time.perf_counter() - t
    print(f"peer PDQIndex: build {build:.2f} s, serialize {save:.2f} s, deserialize (restart) {load:.2f} s")
    print(f"restart ratio (peer deserialize / our restart): {load / again['open_s']:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--reuse", help="Folder with bench.db from an interrupted run of one size.")
    args = parser.parse_args()
    for n in args.sizes:
        print(f"\n== {n:,} PDQ entries ==")
        if args.reuse:  # a folder holding the bench.db of an earlier run of the same size (no import)
            run(n, args.queries, Path(args.reuse))
            continue
        with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
            run(n, args.queries, Path(tmp))


if __name__ == "__main__":
    main()
