"""Video frames against Meta's vPDQ reference hashes: the Hamming distance of childshield's hash of each
frame to the reference's hash of the same frame, per sample video.

Meta's sample videos (``tmk/sample-videos`` of the ThreatExchange repository, benign clips) and its
published hashes of every frame (``vpdq/sample-hashes``) are read from ``--videos`` and ``--hashes``
(three of them ship in tests/data/vpdq, the default).  A reference made here by Meta's
``vpdq-hash-video -r 0`` can be given as ``--hashes`` too.  Every frame is hashed through the production
path (``hash_video``, every frame, none pruned), two ways:

* ``native``: the frame at its own size (childshield's default, as the reference does);
* ``box512``: ``Sampling(max_side=512)``, a box resize to 512 px first (childshield's default before).

Printed per sample and way: frames compared, mean and max distance, and the share within 10 bits, over
all frames and over frames of reference quality >= 50 and >= 80.

    python benchmarks/bench_vpdq_reference.py
    python benchmarks/bench_vpdq_reference.py --videos ~/ThreatExchange/tmk/sample-videos \\
        --hashes ~/ThreatExchange/vpdq/sample-hashes
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from childshield.hashing.service import HashOptions, hash_video
from childshield.media.video import Sampling

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "vpdq"
EVERY_FRAME = HashOptions(
    sampling=Sampling(rate=1000.0, scene_threshold=2.0), dedupe_distance=-1, video_min_quality=0
)
WAYS = {"native": EVERY_FRAME, "box512": replace(EVERY_FRAME, sampling=Sampling(1000.0, 2.0, max_side=512))}


def read_reference(path: Path) -> dict[int, tuple[int, str]]:
    out = {}
    for line in path.read_text().splitlines():
        number, quality, pdq, *_ = line.split(",")
        out[int(number)] = (int(quality), pdq)
    return out


def figures(distances: list[int]) -> dict[str, float]:
    d = np.array(distances)
    if not len(d):
        return {"frames": 0}
    return {
        "frames": len(d),
        "mean": round(float(d.mean()), 2),
        "max": int(d.max()),
        "within_10_pct": round(100 * float((d <= 10).mean()), 2),
    }


def _line(f: dict[str, float]) -> str:
    if not f["frames"]:
        return "   0 frames"
    return f"{f['frames']:4.0f} frames: mean {f['mean']:5.2f} max {f['max']:3.0f} {f['within_10_pct']:6.2f}%"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", type=Path, default=DATA)
    p.add_argument("--hashes", type=Path, default=DATA / "reference")
    p.add_argument("--ways", default="native,box512")
    p.add_argument("--json", type=Path, help="Also write every figure here.")
    args = p.parse_args(argv)
    results = []
    for video in sorted(args.videos.glob("*.mp4")):
        ref_path = args.hashes / f"{video.stem}.txt"
        if not ref_path.is_file():
            continue
        ref = read_reference(ref_path)
        data = video.read_bytes()
        for way in args.ways.split(","):
            started = time.perf_counter()
            hashed = hash_video(data, WAYS[way])
            seconds = time.perf_counter() - started
            rows = [(ref[f.index][0], (int(f.pdq or "0", 16) ^ int(ref[f.index][1], 16)).bit_count())
                    for f in hashed.frames if f.index in ref]  # fmt: skip
            row = {
                "video": video.stem,
                "size": f"{hashed.width}x{hashed.height}",
                "way": way,
                "all": figures([d for _, d in rows]),
                "q50": figures([d for q, d in rows if q >= 50]),
                "q80": figures([d for q, d in rows if q >= 80]),
                "seconds": round(seconds, 2),
            }
            results.append(row)
            shown = " | ".join(f"{k} {_line(row[k])}" for k in ("all", "q50", "q80"))
            print(f"{video.stem:32s} {row['size']:>9s} {way:6s} {shown}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
