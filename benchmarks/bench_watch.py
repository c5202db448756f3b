"""Live streams: how soon a known picture shown in a 1080p30 stream is alerted, and the CPU a stream costs.

A ``--seconds`` long 1080p30 H.264 stream (default 120 s) is made once from generated pictures (a new
scene every few seconds, panning), with a known picture shown ``--shows`` times (3 s each) at odd
moments.  Each of ``--streams`` local FFmpeg-based senders (own processes, through PyAV) sends it as
MPEG-TS over TCP on loopback, packet by packet at its time, as a live encoder would.  This process
watches every stream at 1 frame/s plus scene changes, against a bank of ``--hashes`` random PDQ hashes
(default 1M) plus the known picture.

Printed: per show, the delay from the moment the sender sent the picture's first frame to the alert
(p50, p95, max over all streams); the CPU this process used (all its threads: FFmpeg's decoders,
sampling, hashing, matching) per stream, in cores; frames decoded and hashed.

    python benchmarks/bench_watch.py                    # one stream
    python benchmarks/bench_watch.py --streams 2
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

from benchlib import kept_database, random_pdq
from childshield.banks import create_bank
from childshield.banks.entries import add_outcomes, import_rows
from childshield.banks.formats import Parsed, SignalRow
from childshield.hashing.result import HashOutcome
from childshield.hashing.service import HashOptions, hash_bytes
from childshield.matching.holder import MatcherHolder
from childshield.store.db import open_database
from childshield.store.models import SignalType
from childshield.stream.manager import Watches
from childshield.stream.watch import Alert, WatchConfig
from childshield.testing.corpus import encode, generated_photo
from childshield.testing.streams import TcpSender

FPS = 30


def make_stream(path: Path, seconds: int, shows: int, known: np.ndarray) -> list[float]:
    """Encode the stream; returns when the known picture is shown (seconds)."""
    import av

    height, width = known.shape[:2]
    rng = np.random.default_rng(3)
    starts = sorted(rng.uniform(5, seconds - 5, size=shows))
    starts = [round(s * FPS) / FPS for s in starts]
    starts = [s for n, s in enumerate(starts) if n == 0 or s - starts[n - 1] > 6]
    scenes = [generated_photo(3000 + k, width + 96, height) for k in range(seconds // 4 + 2)]
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=FPS, options={"preset": "ultrafast", "g": str(FPS)})
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(seconds * FPS):
            t = i / FPS
            if any(s <= t < s + 3 for s in starts):
                picture = known
            else:
                shift = (i % (4 * FPS)) // 2
                picture = np.ascontiguousarray(scenes[i // (4 * FPS)][:, shift : shift + width])
            frame = av.VideoFrame.from_ndarray(picture, "rgb24").reformat(format="yuv420p")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return starts


def make_bank(folder: Path, hashes: int, known: np.ndarray) -> str:
    url, db = kept_database(folder, "watch", f"bank-{hashes}.json")
    if db is None:
        return url
    create_bank(db, "shared")
    rng = np.random.default_rng(5)
    for first in range(0, hashes, 200_000):
        hexes = random_pdq(rng, min(200_000, hashes - first))
        rows = [SignalRow(first + k + 1, SignalType.PDQ, h) for k, h in enumerate(hexes)]
        import_rows(db, "shared", Parsed(rows=rows), source_name="random")
        print(f"  {first + len(rows):,} hashes", file=sys.stderr)
    create_bank(db, "known")
    photo = hash_bytes(encode(known, "PNG"), HashOptions(bank_variants=True))
    add_outcomes(db, "known", [HashOutcome("known.png", result=photo)])
    db.close()
    (folder / f"bank-{hashes}.json").write_text("{}")
    return url


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--folder", type=Path, default=Path("/tmp/childshield-bench-watch"))
    p.add_argument("--seconds", type=int, default=120)
    p.add_argument("--shows", type=int, default=15)
    p.add_argument("--height", type=int, default=1080)
    p.add_argument("--hashes", type=int, default=1_000_000)
    p.add_argument("--streams", type=int, default=1)
    args = p.parse_args(argv)
    args.folder.mkdir(parents=True, exist_ok=True)
    width = args.height * 16 // 9 // 2 * 2
    known = generated_photo(4321, width, args.height)
    video_path = args.folder / f"stream-{args.seconds}s-{args.height}p.mp4"
    starts_path = video_path.with_suffix(".json")
    if not video_path.is_file():
        print("  encoding the stream", file=sys.stderr)
        starts_path.write_text(json.dumps(make_stream(video_path, args.seconds, args.shows, known)))
    starts = json.loads(starts_path.read_text())
    url = make_bank(args.folder, args.hashes, known)
    db = open_database(url)
    holder = MatcherHolder(db, refresh_seconds=60)
    holder.run(lambda m: None)
    video = video_path.read_bytes()

    alerts: list[tuple[Alert, float]] = []
    watches = Watches(db, holder, on_alert=lambda a, d: alerts.append((a, time.time())))
    config = WatchConfig(read_timeout=10, realert_after=4.0, max_reconnects=50)
    senders = [TcpSender(video) for _ in range(args.streams)]
    for s in senders:
        s.__enter__()
    time.sleep(1.0)  # the senders listen
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    wall0 = time.monotonic()
    for n, s in enumerate(senders):
        watches.start(s.url, f"stream-{n}", config)
    deadline = time.monotonic() + args.seconds + 20
    while time.monotonic() < deadline and not all(s.state in ("ended", "failed") for s in watches.statuses()):
        if all(sender.rounds >= 1 for sender in senders):
            break
        time.sleep(0.5)
    time.sleep(2.0)
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    wall = time.monotonic() - wall0
    statuses = watches.statuses()
    watches.close()
    for s in senders:
        s.__exit__(None, None, None)
    db.close()

    delays: list[float] = []
    missed = 0
    for n, sender in enumerate(senders):
        stream_id = f"stream-{n}"
        for start in starts:
            sent = [wall for t, wall in sender.sent_at.items() if start - 1e-3 <= t < start + 3]
            found = [
                at
                for a, at in alerts
                if a.stream_id == stream_id and start - 0.05 <= a.stream_time < start + 3
            ]
            if not sent or not found:
                missed += 1
                continue
            delays.append(min(found) - min(sent))
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    result = {
        "stream": f"{args.height}p{FPS} H.264, {args.seconds} s, the known picture shown {len(starts)} times",
        "streams": args.streams,
        "bank_hashes": args.hashes + 1,
        "alert_delay_s": {
            "p50": round(percentile(delays, 50), 3),
            "p95": round(percentile(delays, 95), 3),
            "max": round(max(delays, default=float("nan")), 3),
            "shows_alerted": len(delays),
            "shows_missed": missed,
        },
        "cpu_cores_per_stream": round(cpu / wall / args.streams, 3),
        "wall_s": round(wall, 1),
        "frames_decoded": [s.frames_decoded for s in statuses],
        "frames_hashed": [s.frames_hashed for s in statuses],
        "states": [s.state for s in statuses],
    }
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
