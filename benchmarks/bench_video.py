"""Video: decode-and-hash time against matching time, on a 1M-frame bank (benign generated frames only).

A ``--minutes`` long video (default 10) at ``--height`` (default 1080) and 30 fps is encoded once from
generated pictures (a new scene every 4 s, panning), and kept in ``--folder`` for later runs.  The bank
holds ``--frames`` frame hashes (default 1M): random 256-bit hashes stored as the frames of videos of
600 frames each (the shape of a bank of 10-minute videos at 1 fps), plus the known video itself.

Printed, each measured in this run:

* decoding the video with PyAV alone (every frame decoded, none converted);
* childshield's ``hash_video`` (decode, sample 1 fps + scene changes, PDQ, query variants);
* the peer: the same sampled frames hashed with ``pdqhash`` (the PyPI package), PDQ only;
* ``match_video`` of the hashed video against the bank (frames and variants through the index);
* the ratios: matching time / decode time, ours / pdqhash per frame.

    python benchmarks/bench_video.py --folder /tmp/benchvideo
    python benchmarks/bench_video.py --minutes 1 --frames 100000     # a quick look
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import av
import numpy as np

from benchlib import kept_database, random_pdq
from childshield.banks import create_bank
from childshield.banks.entries import add_outcomes, add_video_signal
from childshield.hashing.result import HashOutcome
from childshield.hashing.service import HashOptions, hash_video
from childshield.matching.matcher import Matcher
from childshield.matching.video import match_video
from childshield.media.video import Sampling, sample_frames
from childshield.signals.vpdq import FrameSignal
from childshield.store.db import open_database
from childshield.testing.corpus import generated_photo


def make_video(path: Path, minutes: float, height: int) -> None:
    width, height = (height * 16 // 9) // 2 * 2, height // 2 * 2
    fps, per_scene = 30, 4 * 30
    total = int(minutes * 60 * fps)
    scenes = [generated_photo(900 + k, width + 64, height) for k in range(total // per_scene + 1)]
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "crf": "23"})
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(total):
            picture = scenes[i // per_scene]
            shift = (i % per_scene) // 2  # a slow pan
            frame = av.VideoFrame.from_ndarray(
                np.ascontiguousarray(picture[:, shift : shift + width]), "rgb24"
            )
            for packet in stream.encode(frame.reformat(format="yuv420p")):
                out.mux(packet)
            if i % (fps * 60) == 0:
                print(f"  encoded {i / fps / 60:.0f} of {minutes:g} minutes", file=sys.stderr)
        for packet in stream.encode():
            out.mux(packet)


def make_bank(folder: Path, frames: int, known: bytes) -> str:
    url, db = kept_database(folder, "video", f"bank-{frames}.json")
    if db is None:
        return url
    create_bank(db, "videos")
    rng = np.random.default_rng(7)
    started = time.perf_counter()
    per_video = 600
    for v in range(frames // per_video):
        signal = [FrameSignal(h, 90, float(k), k) for k, h in enumerate(random_pdq(rng, per_video))]
        add_video_signal(db, "videos", signal, source_name=f"random-{v}")
        if v % 200 == 0:
            print(f"  {v * per_video:,} frames banked", file=sys.stderr)
    hashed = hash_video(known, HashOptions(bank_variants=True))
    add_outcomes(db, "videos", [HashOutcome("known.mp4", result=hashed)])
    print(f"  bank ready in {time.perf_counter() - started:.0f} s; building the index", file=sys.stderr)
    Matcher.load(db)
    db.close()
    (folder / f"bank-{frames}.json").write_text(json.dumps({"frames": frames}))
    return url


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--folder", type=Path, default=Path("/tmp/childshield-bench-video"))
    p.add_argument("--minutes", type=float, default=10)
    p.add_argument("--height", type=int, default=1080)
    p.add_argument("--frames", type=int, default=1_000_000)
    args = p.parse_args(argv)
    args.folder.mkdir(parents=True, exist_ok=True)
    video_path = args.folder / f"video-{args.minutes:g}m-{args.height}p.mp4"
    if not video_path.is_file():
        make_video(video_path, args.minutes, args.height)
    data = video_path.read_bytes()
    url = make_bank(args.folder, args.frames, data)

    started = time.perf_counter()
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        decoded = sum(1 for _ in container.decode(stream))
    decode_s = time.perf_counter() - started

    started = time.perf_counter()
    hashed = hash_video(data, HashOptions(variants=True))
    hash_s = time.perf_counter() - started

    import pdqhash

    pictures = [f.picture.pixels for f in sample_frames(data, Sampling())]
    started = time.perf_counter()
    for pixels in pictures:
        pdqhash.compute(pixels)
    peer_s = time.perf_counter() - started
    started = time.perf_counter()
    from childshield.media.decode import Picture
    from childshield.signals.pdq_picture import hash_picture

    for pixels in pictures:
        hash_picture(Picture(pixels, pixels.shape[1], pixels.shape[0], 1))
    ours_pdq_s = time.perf_counter() - started

    db = open_database(url)
    matcher = Matcher.load(db)
    match_video(matcher, hashed)  # warm
    started = time.perf_counter()
    rounds = 5
    for _ in range(rounds):
        found = match_video(matcher, hashed)
    match_s = (time.perf_counter() - started) / rounds
    db.close()
    kinds = [(v.kind, round(v.query_share or 0), round(v.item_share or 0)) for v in found.details]
    result = {
        "video": f"{args.minutes:g} min, {args.height}p30, {decoded} frames, {len(data) / 1e6:.1f} MB",
        "bank_frames": len(matcher.index),
        "decode_only_s": round(decode_s, 2),
        "hash_video_s": round(hash_s, 2),
        "frames_hashed": hashed.frame_count,
        "match_s": round(match_s, 3),
        "match_over_decode": round(match_s / decode_s, 4),
        "pdq_per_frame_ms": {
            "childshield": round(1000 * ours_pdq_s / len(pictures), 2),
            "pdqhash": round(1000 * peer_s / len(pictures), 2),
        },
        "pdqhash_over_childshield": round(peer_s / ours_pdq_s, 2),
        "matched": kinds,
    }
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
