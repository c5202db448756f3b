"""Scan throughput: `childshield scan` over generated photos against a bank built from some of them.

    python benchmarks/bench_scan.py [--count 1000] [--known 200] [--workers N]

Images are 1280x960 JPEGs (quality 88, from ``testing.corpus.generated_photo``) cached under
benchmarks/.corpus/scan/; the bank lives in a temporary SQLite database.  Prints files/s for the whole
command (start-up, bank load, hashing, matching, output) and the number of matched files, which must equal
--known.  No peer runs here: scanning has no drop-in equivalent in the peers; hashing and matching are
compared with them in bench_hash.py (and, when the index lands, bench_index.py).
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

from childshield.testing.corpus import encode, generated_photo


def build(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(count):
        path = folder / f"scan-{k:05d}.jpg"
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(encode(generated_photo(10_000 + k, 1280, 960), "JPEG", quality=88))
            tmp.rename(path)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--known", type=int, default=200)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    folder = Path(__file__).parent / ".corpus" / "scan"
    started = time.perf_counter()
    paths = build(folder, args.count)
    print(f"corpus: {len(paths)} files in {folder} ({time.perf_counter() - started:.1f} s to make or check)")
    with tempfile.TemporaryDirectory() as tmp:
        known = Path(tmp) / "known"
        known.mkdir()
        for p in paths[: args.known]:
            (known / p.name).symlink_to(p)
        env = {**os.environ, "CHILDSHIELD_DATABASE_URL": f"sqlite:///{tmp}/bench.db"}
        cli = [sys.executable, "-m", "childshield.cli"]
        subprocess.run([*cli, "bank", "create", "known"], env=env, check=True, capture_output=True)
        t = time.perf_counter()
        subprocess.run([*cli, "bank", "add", "known", str(known)], env=env, check=True, capture_output=True)
        print(f"bank add: {args.known} files in {time.perf_counter() - t:.2f} s")
        t = time.perf_counter()
        proc = subprocess.run(
            [*cli, "scan", str(folder), "--format", "jsonl", "--workers", str(args.workers)],
            env=env,
            capture_output=True,
            text=True,
        )
        elapsed = time.perf_counter() - t
    matched = {json.loads(line)["path"] for line in proc.stdout.splitlines()}
    print(
        f"scan: {len(paths)} files, {len(matched)} matched (expected {args.known}), exit {proc.returncode}, "
        f"{elapsed:.2f} s, {len(paths) / elapsed:.1f} files/s with {args.workers} workers"
    )
    print(f"extrapolated: 100,000 such files in {100_000 / (len(paths) / elapsed) / 60:.1f} min")


if __name__ == "__main__":
    main()
