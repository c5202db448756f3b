"""Video hashing speed from the command line, against Meta's vPDQ reference tool, on generated benign
videos encoded with PyAV (and any others given).

Each video is hashed at 1 frame/s, best of ``--repeat`` runs, taken round-robin so that load on the
machine hits every way alike:

* ``reference``: Meta's ``vpdq-hash-video -r 1`` (build it yourself from ThreatExchange's ``vpdq/cpp``
  and give its path as ``--reference``; nothing of it is kept here);
* ``cli``: ``childshield hash VIDEO --format vpdq`` in a new process, start-up included;
* ``cli-base``: the same with ``--baseline``'s sources (e.g. an older commit's ``src/``), side by side;
* ``in-process``: ``childshield.hash_file`` in this process (what the API does per upload);
* ``cli-all``: one ``childshield hash VIDEO... --format jsonl --frames`` for all the videos (the same
  frames hashed; start-up paid once, one worker per core), against the sum of the others' per-video
  times.

Printed per video and way: seconds and times real time (video seconds / wall seconds); over all the videos,
also each way's speed as a share of the reference's (measured in the same run: compare those on a loaded
machine, not the seconds).  The generated
videos are made once and kept in ``--folder``.

    python benchmarks/bench_video_cli.py --reference ~/vpdq/cpp/build/apps/vpdq-hash-video
    python benchmarks/bench_video_cli.py --videos tests/data/vpdq/*.mp4
    python benchmarks/bench_video_cli.py --videos DIR/*.mp4 --reference PATH --baseline /tmp/old/src
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np

from childshield.hashing.service import hash_file
from childshield.testing.corpus import generated_photo

GENERATED = (  # (name, width, height, seconds): the shapes of Meta's samples, and 1080p
    ("sd-portrait-20s", 480, 720, 20),
    ("hd-10s", 1280, 720, 10),
    ("fhd-30s", 1920, 1080, 30),
)


def make_video(path: Path, width: int, height: int, seconds: int, fps: int = 30) -> None:
    """A new generated scene every 4 s, panning slowly, H.264 (libx264 ``veryfast``, CRF 23)."""
    scenes = [generated_photo(700 + k, width + 64, height) for k in range(seconds // 4 + 1)]
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps, options={"preset": "veryfast", "crf": "23"})
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(seconds * fps):
            picture = scenes[i // (4 * fps)]
            shift = (i % (4 * fps)) // 2
            frame = av.VideoFrame.from_ndarray(
                np.ascontiguousarray(picture[:, shift : shift + width]), "rgb24"
            )
            for packet in stream.encode(frame.reformat(format="yuv420p")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def duration(path: Path) -> float:
    with av.open(str(path)) as container:
        return float(container.duration or 0) / av.time_base


PYCACHE = "/tmp/childshield-bench-pycache"
"""Byte-code of the sources timed, kept outside the tree: a command is timed as an installed package runs
(pip compiles on install), not compiling every module at each start (``PYTHONDONTWRITEBYTECODE``)."""


def command_env(pythonpath: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = PYCACHE
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    return env


def compile_sources(pythonpath: str | None = None) -> None:
    """Write the byte-code of the childshield that ``pythonpath`` (or this environment) imports."""
    find = "import childshield, os; print(os.path.dirname(childshield.__file__))"
    env = command_env(pythonpath)
    folder = subprocess.run([sys.executable, "-c", find], env=env, check=True, capture_output=True, text=True)
    subprocess.run([sys.executable, "-m", "compileall", "-q", folder.stdout.strip()], env=env, check=True)


def run(way: str, path: Path, reference: str | None, baseline: str | None = None) -> float:
    started = time.perf_counter()
    if way == "reference":
        assert reference is not None
        subprocess.run([reference, "-i", str(path), "-o", os.devnull, "-r", "1"], check=True)
    elif way in ("cli", "cli-base"):
        command = [sys.executable, "-m", "childshield.cli", "hash", str(path), "--format", "vpdq"]
        env = command_env(None if way == "cli" else baseline)
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=env)
    else:
        hash_file(path)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--folder", type=Path, default=Path("/tmp/childshield-bench-video-cli"))
    p.add_argument("--videos", type=Path, nargs="*", default=None, help="Hash these instead.")
    p.add_argument("--reference", help="Meta's vpdq-hash-video, built from ThreatExchange's vpdq/cpp.")
    p.add_argument("--baseline", help="Also time `cli` with this PYTHONPATH (an older src/), as cli-base.")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    if args.videos:
        videos = list(args.videos)
    else:
        args.folder.mkdir(parents=True, exist_ok=True)
        videos = []
        for name, width, height, seconds in GENERATED:
            path = args.folder / f"{name}.mp4"
            if not path.is_file():
                make_video(path, width, height, seconds)
            videos.append(path)
    ways = (["reference"] if args.reference else []) + ["cli"] + (["cli-base"] if args.baseline else [])
    ways.append("in-process")
    compile_sources()
    if args.baseline:
        compile_sources(args.baseline)
    best: dict[tuple[str, str], float] = {}
    for _ in range(args.repeat):
        for path in videos:
            for way in ways:
                seconds = run(way, path, args.reference, args.baseline)
                key = (path.name, way)
                best[key] = min(best.get(key, seconds), seconds)
    together: dict[str, float] = {}
    command = [sys.executable, "-m", "childshield.cli", "hash", *map(str, videos), "--format", "jsonl",
               "--frames"]  # fmt: skip
    for _ in range(args.repeat):
        for way in ["cli-all"] + (["cli-all-base"] if args.baseline else []):
            env = command_env(None if way == "cli-all" else args.baseline)
            started = time.perf_counter()
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=env)
            seconds = time.perf_counter() - started
            together[way] = min(together.get(way, seconds), seconds)
    rows = []
    totals: dict[str, float] = {}
    length = 0.0
    for path in videos:
        video_s = duration(path)
        length += video_s
        for way in ways:
            s = best[(path.name, way)]
            totals[way] = totals.get(way, 0.0) + s
            rows.append({"video": path.name, "video_s": round(video_s, 2), "way": way, "wall_s": round(s, 3),
                         "x_real_time": round(video_s / s, 1)})  # fmt: skip
            print(f"{path.name:36s} {video_s:6.1f} s  {way:10s} {s:6.2f} s  {video_s / s:6.1f}x real time")
    totals |= together
    for way, s in totals.items():
        versus = f"  {totals['reference'] / s:5.2f} of the reference's speed" if "reference" in totals else ""
        print(f"{'all':36s} {length:6.1f} s  {way:10s} {s:6.2f} s  {length / s:6.1f}x real time{versus}")
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, {os.cpu_count()} CPUs")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "totals": totals, "load": load}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
