"""Start-up of the ``childshield`` command, beside the interpreter's own (issue 17.7).

    python benchmarks/bench_startup.py                  # 1M stored PDQ hashes, median of 9 runs each
    python benchmarks/bench_startup.py --hashes 100000 --runs 5

Each command runs in a fresh process and its wall time is taken from start to exit; the median of
``--runs`` runs is printed with its ratio to ``python -c pass`` and the time over it (what childshield
itself costs).  ``match --pdq`` runs against a database of ``--hashes`` random PDQ hashes (benign random
numbers, as in bench_matcher.py), built once in ``--folder`` (default /tmp/childshield-bench-startup) and
kept for later runs; one untimed ``match`` first builds the saved index beside the database, so the timed
runs are the everyday case: start, open the database, map the saved index, search, print.
Where the figures come from, module by module: ``python -X importtime -m childshield.cli --version``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchlib import kept_database, random_pdq

READY = "startup.ready"


def build(folder: Path, count: int) -> tuple[str, str]:
    """The database URL with ``count`` stored hashes, and a query a few bits from one of them."""
    folder.mkdir(parents=True, exist_ok=True)
    url, db = kept_database(folder, f"startup-{count}", f"{READY}.{count}")
    rng = np.random.default_rng(count)
    hashes = random_pdq(rng, count)
    if db is not None:
        from childshield.banks import create_bank
        from childshield.banks.entries import import_rows
        from childshield.banks.formats import Parsed, SignalRow
        from childshield.store.models import SignalType

        started = time.perf_counter()
        create_bank(db, "known")
        rows = [SignalRow(k + 1, SignalType.PDQ, h, None, ()) for k, h in enumerate(hashes)]
        import_rows(db, "known", Parsed(rows, []), source_name="bench")
        db.close()
        (folder / f"{READY}.{count}").write_text("")
        print(f"built {count:,} stored hashes in {time.perf_counter() - started:.0f} s: {url}")
    target = int(hashes[count // 2], 16) ^ 0b1011  # 3 bits off a stored hash: a near match
    return url, f"{target:064x}"


def wall(command: list[str], runs: int, ok: tuple[int, ...] = (0,)) -> float:
    """Median wall time of ``runs`` runs, in seconds, after one untimed run."""
    times = []
    for k in range(runs + 1):
        started = time.perf_counter()
        proc = subprocess.run(command, capture_output=True, text=True)
        took = time.perf_counter() - started
        if proc.returncode not in ok:
            raise SystemExit(f"{' '.join(command)} exited {proc.returncode}: {proc.stderr[-2000:]}")
        if k:
            times.append(took)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hashes", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/childshield-bench-startup"))
    args = parser.parse_args()

    program = shutil.which("childshield", path=str(Path(sys.executable).parent)) or "childshield"
    url, query = build(args.folder, args.hashes)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    print(f"runs: median of {args.runs} (after one untimed run)\n")

    base = wall([sys.executable, "-c", "pass"], args.runs)
    cases = [
        ("childshield --version", [program, "--version"], (0,)),
        ("childshield --help", [program, "--help"], (0,)),
        (
            f"childshield match --pdq (at {args.hashes:,} hashes)",
            [program, "match", "--pdq", query, "--db", url],
            (3,),  # matched
        ),
    ]
    width = max(len(name) for name, _, _ in cases)
    print(f"{'python -c pass':<{width}}  {base:6.3f} s   1.0x")
    for name, command, ok in cases:
        took = wall(command, args.runs, ok)
        print(f"{name:<{width}}  {took:6.3f} s  {took / base:4.1f}x  (+{took - base:.3f} s over python)")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
