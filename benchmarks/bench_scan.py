"""Scan throughput: `childshield scan` over generated photos against a bank built from some of them.

    python benchmarks/bench_scan.py [--count 1000] [--known 200] [--workers N]
    python benchmarks/bench_scan.py --count 100000 --distinct 1000 --known 20   # the 100,000-file run

Images are 1280x960 JPEGs (quality 88, from ``testing.corpus.generated_photo``) cached under
benchmarks/.corpus/scan/ (or scan-<distinct>/); the bank lives in a temporary SQLite database.  With
``--distinct D``, D photos are generated and every other file is one of them with a unique JPEG comment
inserted after the start marker: different bytes and digests, the same pixels, the same work to scan
(read, decode, hash, match), at a fraction of the time to make.  The bank holds the first --known photos,
so the files expected to match are those made from them.  Prints files/s for the whole
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


def build(folder: Path, count: int, distinct: int | None = None) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    distinct = distinct or count
    paths = []
    for k in range(count):
        path = (
            folder / f"{k // 1000:03d}" / f"scan-{k:06d}.jpg"
            if count > 1000
            else folder / f"scan-{k:05d}.jpg"
        )
        if not path.exists():
            path.parent.mkdir(exist_ok=True)
            if k < distinct:
                data = encode(generated_photo(10_000 + k, 1280, 960), "JPEG", quality=88)
            else:
                base = paths[k % distinct].read_bytes()
                note = f"variant {k}".encode()
                data = base[:2] + b"\xff\xfe" + (len(note) + 2).to_bytes(2, "big") + note + base[2:]
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
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
    parser.add_argument("--distinct", type=int, default=None, help="Distinct photos (default: all).")
    args = parser.parse_args()
    name = "scan" if args.distinct is None else f"scan-{args.distinct}"
    folder = Path(__file__).parent / ".corpus" / name
    started = time.perf_counter()
    paths = build(folder, args.count, args.distinct)
    print(f"corpus: {len(paths)} files in {folder} ({time.perf_counter() - started:.1f} s to make or check)")
    with tempfile.TemporaryDirectory() as tmp:
        known = Path(tmp) / "known"
        known.mkdir()
        for p in paths[: args.known]:
            (known / p.name).symlink_to(p)
        distinct = args.distinct or args.count
        expected = sum(1 for k in range(len(paths)) if k % distinct < args.known)
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
        f"scan: {len(paths)} files, {len(matched)} matched (expected {expected}), exit {proc.returncode}, "
        f"{elapsed:.2f} s, {len(paths) / elapsed:.1f} files/s with {args.workers} workers"
    )
    print(f"extrapolated: 100,000 such files in {100_000 / (len(paths) / elapsed) / 60:.1f} min")


if __name__ == "__main__":
    main()
