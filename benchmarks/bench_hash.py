"""Image hashing speed and accuracy: childshield against the peers, in the same run.

What is compared, on one generated corpus of JPEG files (benign images only):

* ``reference``: ``threatexchange``'s ``pdq_from_file`` (decode at full size, then ``pdqhash.compute``),
  the pipeline that hash lists are usually made with;
* ``pdqhash``: Pillow ``Image.open(...).convert("RGB")`` -> NumPy -> ``pdqhash.compute`` (plain pdqhash);
* ``childshield-pdq``: ``childshield.hashing.service.pdq_bytes`` (PDQ only: the same work as the reference);
* ``childshield-full``: ``childshield.hash_file`` (PDQ + MD5 + SHA-1 + SHA-256).

Every pipeline reads its file from disk on every call.  After the warm-up pass the files are in the OS
page cache, so the figures measure decoding and hashing, not the disk.

Run ``python benchmarks/bench_hash.py --help``; ``--quick`` is a smoke run.  Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import hashlib
import importlib.metadata
import itertools
import json
import os
import platform
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_CORPUS_DIR = HERE / ".corpus"
CORPUS_FORMAT = 1  # bump when the way files are generated changes, to rebuild caches
PIPELINES = ("reference", "pdqhash", "childshield-pdq", "childshield-full")
QUALITY_FLOOR = 80  # the design's accuracy promise holds on files of reference quality >= 80


# --------------------------------------------------------------------------- corpus


@dataclass(frozen=True)
class ImageClass:
    """One class of files in the corpus: how big, how made, how compressed."""

    name: str
    label: str
    sizes: tuple[tuple[int, int], ...]  # (width, height), cycled over the files
    generator: str  # "large_photo" or "generated_photo" (childshield.testing.corpus)
    jpeg_quality: int
    seed_base: int


CLASSES: dict[str, ImageClass] = {
    c.name: c
    for c in (
        ImageClass("12mp", "12 MP photos", ((4000, 3000), (3000, 4000)), "large_photo", 90, 1000),
        ImageClass("1mp", "1 MP photos", ((1155, 866),), "large_photo", 90, 2000),
        ImageClass("small", "small images", ((640, 480),), "generated_photo", 85, 3000),
    )
}


@dataclass
class ClassCorpus:
    image_class: ImageClass
    folder: Path
    files: list[Path]
    generated: int  # how many files this run had to make (the rest came from the cache)
    build_s: float

    @property
    def mean_bytes(self) -> float:
        return statistics.fmean(p.stat().st_size for p in self.files)


def _corpus_source_digest() -> str:
    """Digest of the generator module: a changed generator must not reuse old cached files."""
    from childshield.testing import corpus

    return hashlib.sha256(Path(corpus.__file__).read_bytes()).hexdigest()[:16]


def _skimage_version() -> str | None:
    # large_photo enlarges scikit-image's bundled photos when it is installed, so the files depend on it.
    try:
        return importlib.metadata.version("scikit-image")
    except importlib.metadata.PackageNotFoundError:
        return None


def _class_spec(c: ImageClass, seed: int) -> dict[str, Any]:
    return {
        "format": CORPUS_FORMAT,
        "generator": c.generator,
        "sizes": [list(s) for s in c.sizes],
        "jpeg_quality": c.jpeg_quality,
        "seed": c.seed_base + seed,
        "corpus_py": _corpus_source_digest(),
        "scikit_image": _skimage_version(),
    }


def _file_name(c: ImageClass, index: int) -> str:
    width, height = c.sizes[index % len(c.sizes)]
    return f"{c.name}-{index:04d}-{width}x{height}-q{c.jpeg_quality}.jpg"


def _make_jpeg(c: ImageClass, index: int, seed: int) -> bytes:
    from childshield.testing.corpus import encode, generated_photo, large_photo

    width, height = c.sizes[index % len(c.sizes)]
    make = large_photo if c.generator == "large_photo" else generated_photo
    pixels = make(c.seed_base + seed + index, width, height)
    # Pillow's defaults otherwise: baseline, 4:2:0 chroma subsampling, like most camera files.
    return encode(pixels, "JPEG", quality=c.jpeg_quality)


def build_class(c: ImageClass, root: Path, count: int, seed: int, rebuild: bool) -> ClassCorpus:
    """The first ``count`` files of a class, made once and cached under ``root/<class>/``."""
    started = time.perf_counter()
    folder = root / c.name
    manifest_path = folder / "manifest.json"
    spec = _class_spec(c, seed)
    cached_spec = None
    if manifest_path.exists() and not rebuild:
        with contextlib.suppress(ValueError, OSError):
            cached_spec = json.loads(manifest_path.read_text())
    if cached_spec != spec and folder.exists():
        shutil.rmtree(folder)  # stale (different generator or settings): start again
    folder.mkdir(parents=True, exist_ok=True)
    manifest_path.write_text(json.dumps(spec, indent=2) + "\n")

    files = []
    generated = 0
    for index in range(count):
        path = folder / _file_name(c, index)
        if not path.exists():
            print(f"  generating {path.name} ...", flush=True)
            tmp = path.with_suffix(".tmp")  # never leave a truncated file in the cache
            tmp.write_bytes(_make_jpeg(c, index, seed))
            tmp.replace(path)
            generated += 1
        files.append(path)
    return ClassCorpus(c, folder, files, generated, time.perf_counter() - started)


# --------------------------------------------------------------------------- pipelines


def make_pipelines() -> dict[str, Callable[[Path], Any]]:
    import numpy as np
    import pdqhash
    from PIL import Image
    from threatexchange.signal_type.pdq.pdq_hasher import pdq_from_file

    import childshield
    from childshield.hashing.service import pdq_bytes

    def reference(path: Path) -> Any:
        return pdq_from_file(path)

    def plain_pdqhash(path: Path) -> Any:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
        return pdqhash.compute(pixels)

    def childshield_pdq(path: Path) -> Any:
        return pdq_bytes(path.read_bytes())

    def childshield_full(path: Path) -> Any:
        return childshield.hash_file(path)

    return {
        "reference": reference,
        "pdqhash": plain_pdqhash,
        "childshield-pdq": childshield_pdq,
        "childshield-full": childshield_full,
    }


def hex_and_quality(pipeline: str, result: Any) -> tuple[str | None, int]:
    """A pipeline's raw result as (PDQ hex in threatexchange's order, quality); done outside the timing."""
    if pipeline == "reference":
        return result[0], int(result[1])
    if pipeline == "pdqhash":
        vector, quality = result
        # The reference's own conversion (threatexchange's pdq_hasher): bit string, most significant first.
        bits = "".join(str(int(b)) for b in vector)
        return f"{int(bits, 2):064x}", int(quality)
    if pipeline == "childshield-pdq":
        return result.hex, result.quality
    return result.pdq, result.pdq_quality


# --------------------------------------------------------------------------- pinning


def _thread_ids() -> list[int]:
    try:
        return [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        return [0]


def _set_affinity(cpus: set[int]) -> None:
    # On Linux the call applies to one thread, so set it on every thread (NumPy's BLAS pool included).
    for tid in _thread_ids():
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            os.sched_setaffinity(tid, cpus)


@contextlib.contextmanager
def pinned(core: int | None) -> Iterator[int | None]:
    """Run the block on one core (``core``, or the first allowed); yields the core, or None if unpinned."""
    if not hasattr(os, "sched_setaffinity"):
        yield None
        return
    original = os.sched_getaffinity(0)
    chosen = core if core is not None else min(original)
    if chosen not in original:
        sys.exit(f"--core {chosen}: not one of the CPUs this process may use ({sorted(original)})")
    _set_affinity({chosen})
    try:
        yield chosen
    finally:
        _set_affinity(original)


# --------------------------------------------------------------------------- single core


@dataclass
class Timing:
    image_class: str
    pipeline: str
    images: int
    passes_s: list[float]
    passes_cpu_s: list[float]
    images_per_s: float = 0.0
    ms_per_image: float = 0.0
    x_reference: float | None = None
    cpu_share: float = 0.0  # CPU time / wall time of the best pass: well under 1 means a busy core

    def finish(self) -> None:
        best = min(self.passes_s)
        self.images_per_s = self.images / best
        self.ms_per_image = 1000 * best / self.images
        best_index = self.passes_s.index(best)
        self.cpu_share = self.passes_cpu_s[best_index] / best


def _one_pass(fn: Callable[[Path], Any], files: Sequence[Path]) -> tuple[float, float, list[Any]]:
    gc.collect()
    out = []
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    for path in files:
        out.append(fn(path))
    wall = time.perf_counter() - t0
    return wall, time.process_time() - cpu0, out


def time_class(
    corpus: ClassCorpus, pipelines: dict[str, Callable[[Path], Any]], repeat: int
) -> tuple[list[Timing], dict[str, list[tuple[str | None, int]]]]:
    """Warm-up pass per pipeline, then ``repeat`` timed passes taken round-robin (so drift hits all alike)."""
    files = corpus.files
    hashes = {}
    for name, fn in pipelines.items():
        _, _, results = _one_pass(fn, files)
        hashes[name] = [hex_and_quality(name, r) for r in results]
    timings = {name: Timing(corpus.image_class.name, name, len(files), [], []) for name in pipelines}
    for _ in range(repeat):
        for name, fn in pipelines.items():
            wall, cpu, _ = _one_pass(fn, files)
            timings[name].passes_s.append(wall)
            timings[name].passes_cpu_s.append(cpu)
    for t in timings.values():
        t.finish()
    reference = timings.get("reference")
    if reference is not None:
        for t in timings.values():
            t.x_reference = t.images_per_s / reference.images_per_s
    return list(timings.values()), hashes


# --------------------------------------------------------------------------- accuracy


@dataclass
class Accuracy:
    image_class: str
    images: int
    mean_distance: float  # childshield-pdq vs reference, bits
    max_distance: int
    max_distance_q80: int | None  # over files of reference quality >= 80
    share_q80: float  # files of reference quality >= 80
    max_quality_diff: int
    pdqhash_max_distance: int  # plain pdqhash vs reference: 0 unless the pixels differ
    full_equals_pdq: bool  # hash_file's PDQ is pdq_bytes' PDQ


def accuracy(image_class: str, hashes: dict[str, list[tuple[str | None, int]]]) -> Accuracy:
    from childshield.signals.pdq import hamming

    zero = "0" * 64
    ref = hashes["reference"]
    ours = hashes["childshield-pdq"]
    distances = [hamming(o[0] or zero, r[0] or zero) for o, r in zip(ours, ref, strict=True)]
    good = [d for d, r in zip(distances, ref, strict=True) if r[1] >= QUALITY_FLOOR]
    plain = [hamming(p[0] or zero, r[0] or zero) for p, r in zip(hashes["pdqhash"], ref, strict=True)]
    return Accuracy(
        image_class=image_class,
        images=len(ref),
        mean_distance=statistics.fmean(distances),
        max_distance=max(distances),
        max_distance_q80=max(good) if good else None,
        share_q80=len(good) / len(ref),
        max_quality_diff=max(abs(o[1] - r[1]) for o, r in zip(ours, ref, strict=True)),
        pdqhash_max_distance=max(plain),
        full_equals_pdq=hashes["childshield-full"] == ours,
    )


# --------------------------------------------------------------------------- multi-core


@dataclass
class Scaling:
    workers: int
    items: int
    errors: int
    startup_calls_s: list[float]  # hash_many over one small file: the fixed cost of a call
    calls_s: list[float]  # hash_many over all items, the whole call
    best_call_s: float = 0.0
    startup_s: float = 0.0
    images_per_s: float = 0.0
    images_per_s_excl_startup: float = 0.0
    speedup: float = 1.0
    notes: list[str] = field(default_factory=list)


def _timed_hash_many(candidates: list[Any], workers: int) -> tuple[float, int]:
    from childshield.hashing.batch import hash_many
    from childshield.hashing.result import HashOutcome
    from childshield.hashing.service import HashOptions

    gc.collect()
    t0 = time.perf_counter()
    outcomes = list(hash_many(candidates, HashOptions(), workers=workers))
    wall = time.perf_counter() - t0
    errors = sum(1 for o in outcomes if not (isinstance(o, HashOutcome) and o.ok))
    return wall, errors


def scaling(
    corpus: ClassCorpus, probe: Path, workers_list: Sequence[int], items: int, repeat: int
) -> tuple[list[Scaling], float]:
    """``hash_many`` with k workers, unpinned, timing the whole call (pool start-up and shutdown included).

    The per-call start-up is shown apart: the best time of a call over one small file.  The first call
    of all also starts multiprocessing's forkserver; it is reported as ``cold_first_call_s``.
    """
    from childshield.hashing.discover import Candidate, discover

    wanted = {os.path.normpath(p) for p in corpus.files}
    found = [c for c in discover([str(corpus.folder)]) if os.path.normpath(c.path) in wanted]
    # More items than files so every worker gets several batches (the pool hands out batches of 8):
    # the same files again, read and hashed again each time.
    candidates = list(itertools.islice(itertools.cycle(found), max(items, len(found))))
    probe_candidates = [Candidate(str(probe), True)]

    cold, _ = _timed_hash_many(probe_candidates, 1)
    results = []
    for k in workers_list:
        startup = [_timed_hash_many(probe_candidates, k)[0] for _ in range(max(2, repeat))]
        calls = []
        errors = 0
        for _ in range(repeat):
            wall, failed = _timed_hash_many(candidates, k)
            calls.append(wall)
            errors = max(errors, failed)
        s = Scaling(k, len(candidates), errors, startup, calls)
        s.best_call_s = min(calls)
        s.startup_s = min(startup)
        s.images_per_s = len(candidates) / s.best_call_s
        steady = s.best_call_s - s.startup_s
        s.images_per_s_excl_startup = len(candidates) / steady if steady > 0 else float("nan")
        if len(candidates) < 2 * 8 * k:
            s.notes.append("fewer than 2 batches of 8 per worker: the tail limits the speed-up")
        results.append(s)
    base = results[0].images_per_s
    for s in results:
        s.speedup = s.images_per_s / base
    return results, cold


# --------------------------------------------------------------------------- environment


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def environment() -> dict[str, Any]:
    from PIL import features

    from childshield.signals import pdq

    # The module, not the function that childshield.media re-exports under the same name.
    decode = importlib.import_module("childshield.media.decode")

    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "python": platform.python_version(),
        "numpy": _version("numpy"),
        "pillow": _version("pillow"),
        "libjpeg_turbo": features.version("libjpeg_turbo"),
        "pdqhash": _version("pdqhash"),
        "threatexchange": _version("threatexchange"),
        "scikit_image": _version("scikit-image"),
        "childshield": _version("childshield"),
        "childshield_pdq_c_core": pdq.native_core() is not None,
        "childshield_jpeg_dc_decoder": getattr(decode, "_jpegdc", None) is not None,
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_allowed": allowed,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
    }


# --------------------------------------------------------------------------- output


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], left: int = 2) -> str:
    """Plain-text table: the first ``left`` columns left-aligned, the figures right-aligned."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def _parse_workers(text: str | None) -> list[int]:
    cpus = os.cpu_count() or 1
    if not text:
        return sorted({1, cpus})
    values = sorted({int(v) for v in text.split(",") if v.strip()})
    if not values or values[0] < 1:
        raise argparse.ArgumentTypeError("--workers takes positive integers, e.g. 1,2,4")
    return values if values[0] == 1 else [1, *values]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="Figures are best-of-N wall-clock times on this machine; compare ratios, not absolute rates.",
    )
    parser.add_argument("--count", type=int, help="files per class (default 12; 3 with --quick)")
    parser.add_argument(
        "--repeat", type=int, help="timed passes per pipeline, best kept (default 3; 1 with --quick)"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 files per class, 1 timed pass")
    parser.add_argument(
        "--classes",
        default=",".join(CLASSES),
        help=f"comma-separated classes to run (default: {','.join(CLASSES)})",
    )
    parser.add_argument(
        "--core", type=int, help="CPU to pin the single-core part to (default: first allowed)"
    )
    parser.add_argument(
        "--workers",
        help="comma-separated worker counts for the multi-core part (default: 1 and os.cpu_count())",
    )
    parser.add_argument(
        "--scaling-items",
        type=int,
        help="items per hash_many call (the 12 MP files, cycled; default: max(files, 16 x most workers))",
    )
    parser.add_argument("--no-scaling", action="store_true", help="skip the multi-core part")
    parser.add_argument(
        "--seed", type=int, default=0, help="offset added to every generator seed (default 0)"
    )
    parser.add_argument(
        "--corpus-dir", type=Path, default=DEFAULT_CORPUS_DIR, help="cache of generated files"
    )
    parser.add_argument("--rebuild", action="store_true", help="regenerate the corpus even when cached")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write every figure as JSON to PATH")
    args = parser.parse_args(argv)
    args.count = args.count if args.count is not None else (3 if args.quick else 12)
    args.repeat = args.repeat if args.repeat is not None else (1 if args.quick else 3)
    if args.count < 1 or args.repeat < 1:
        parser.error("--count and --repeat must be at least 1")
    args.classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    unknown = [c for c in args.classes if c not in CLASSES]
    if unknown or not args.classes:
        parser.error(f"unknown class(es) {unknown}; choose from {', '.join(CLASSES)}")
    if args.core is not None and hasattr(os, "sched_getaffinity"):
        allowed = os.sched_getaffinity(0)
        if args.core not in allowed:
            parser.error(f"--core {args.core}: not one of the CPUs this process may use ({sorted(allowed)})")
    try:
        args.workers = _parse_workers(args.workers)
    except (ValueError, argparse.ArgumentTypeError) as exc:
        parser.error(f"--workers: {exc}")
    return args


def _require_peers() -> None:
    missing = [m for m in ("pdqhash", "threatexchange") if _version(m) is None]
    if missing:
        sys.exit(f"missing {', '.join(missing)}: pip install -e '.[bench]'")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    _require_peers()
    report: dict[str, Any] = {"environment": environment()}
    env = report["environment"]
    print("childshield hashing benchmark")
    for key in ("python", "numpy", "pillow", "libjpeg_turbo", "pdqhash", "threatexchange", "scikit_image"):
        print(f"  {key:<28}{env[key]}")
    print(
        f"  {'childshield':<28}{env['childshield']} (PDQ C core: {env['childshield_pdq_c_core']}, "
        f"JPEG DC decoder: {env['childshield_jpeg_dc_decoder']})"
    )
    print(f"  {'cpu':<28}{env['cpu_model']}, {env['cpu_count']} CPUs ({env['cpus_allowed']} allowed)")
    if env["load_average"] is not None:
        print(f"  {'load average (1/5/15 min)':<28}{' '.join(f'{v:.2f}' for v in env['load_average'])}")
    report["config"] = {
        "count": args.count,
        "repeat": args.repeat,
        "quick": args.quick,
        "classes": args.classes,
        "seed": args.seed,
        "workers": args.workers,
    }

    # 1. Corpus.
    print(f"\ncorpus ({args.corpus_dir}, {args.count} files per class)")
    corpora = [
        build_class(CLASSES[c], args.corpus_dir, args.count, args.seed, args.rebuild) for c in args.classes
    ]
    report["corpus"] = {}
    rows = []
    for cc in corpora:
        c = cc.image_class
        sizes = ", ".join(f"{w}x{h}" for w, h in c.sizes)
        report["corpus"][c.name] = {
            "label": c.label,
            "files": len(cc.files),
            "sizes": [list(s) for s in c.sizes],
            "generator": c.generator,
            "jpeg_quality": c.jpeg_quality,
            "mean_bytes": cc.mean_bytes,
            "generated_now": cc.generated,
            "folder": str(cc.folder),
        }
        cached = "cached" if cc.generated == 0 else f"{cc.generated} made in {cc.build_s:.1f} s"
        rows.append(
            [
                c.name,
                c.label,
                sizes,
                f"q{c.jpeg_quality}",
                str(len(cc.files)),
                f"{cc.mean_bytes / 1e6:.2f} MB",
                cached,
            ]
        )
    print(_table(["class", "what", "pixels", "jpeg", "files", "mean size", "cache"], rows, left=4))

    # 2. Single-core throughput, and the hashes for 3.
    pipelines = make_pipelines()
    timings: list[Timing] = []
    accuracies: list[Accuracy] = []
    with pinned(args.core) as core:
        where = f"pinned to CPU {core}" if core is not None else "NOT pinned (no sched_setaffinity)"
        print(
            f"\nsingle core ({where}; 1 warm-up pass, best of {args.repeat}; files read from disk each call)"
        )
        for cc in corpora:
            t, hashes = time_class(cc, pipelines, args.repeat)
            timings.extend(t)
            accuracies.append(accuracy(cc.image_class.name, hashes))
    report["single_core"] = {"pinned_cpu": core, "timings": [asdict(t) for t in timings]}
    print(
        _table(
            ["class", "pipeline", "images/s", "ms/image", "x reference", "cpu/wall"],
            [
                [
                    t.image_class,
                    t.pipeline,
                    f"{t.images_per_s:.2f}",
                    f"{t.ms_per_image:.1f}",
                    f"{t.x_reference:.2f}" if t.x_reference is not None else "-",
                    f"{t.cpu_share:.2f}",
                ]
                for t in timings
            ],
        )
    )
    print(
        "  x reference: images/s over the reference pipeline's; cpu/wall well under 1.00 means a busy core."
    )

    # 3. Accuracy.
    report["accuracy"] = [asdict(a) for a in accuracies]
    print("\naccuracy (childshield-pdq vs reference, Hamming distance in bits)")
    print(
        _table(
            [
                "class",
                "files",
                "mean",
                "max",
                f"max q>={QUALITY_FLOOR}",
                f"share q>={QUALITY_FLOOR}",
                "max quality diff",
                "pdqhash max",
                "full == pdq",
            ],
            [
                [
                    a.image_class,
                    str(a.images),
                    f"{a.mean_distance:.2f}",
                    str(a.max_distance),
                    "-" if a.max_distance_q80 is None else str(a.max_distance_q80),
                    f"{a.share_q80:.0%}",
                    str(a.max_quality_diff),
                    str(a.pdqhash_max_distance),
                    "yes" if a.full_equals_pdq else "NO",
                ]
                for a in accuracies
            ],
        )
    )
    print(
        "  pdqhash max: plain pdqhash vs reference (0 expected: same pixels); "
        "full == pdq: hash_file's PDQ equals pdq_bytes'."
    )

    # 4. Multi-core scaling, unpinned (the pool's forkserver starts here, after the pin is lifted,
    # so its workers inherit every allowed CPU).
    if not args.no_scaling:
        big = next((cc for cc in corpora if cc.image_class.name == "12mp"), corpora[0])
        probe_class = next((cc for cc in corpora if cc.image_class.name == "small"), corpora[-1])
        items = args.scaling_items or max(len(big.files), 16 * max(args.workers))
        print(
            f"\nmulti-core: childshield.hashing.batch.hash_many on {big.image_class.label}, unpinned, "
            f"best of {args.repeat}"
        )
        print(
            f"  {items} items per call ({len(big.files)} files, cycled); the whole call is timed "
            "(pool start-up, hashing, shutdown)"
        )
        load_before = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
        if load_before is not None:
            print(
                f"  load average before: {' '.join(f'{v:.2f}' for v in load_before)} "
                "(other work on the machine lowers these figures)"
            )
        results, cold = scaling(big, probe_class.files[0], args.workers, items, args.repeat)
        in_process = next(
            (
                t.images_per_s
                for t in timings
                if t.image_class == big.image_class.name and t.pipeline == "childshield-full"
            ),
            None,
        )
        report["scaling"] = {
            "image_class": big.image_class.name,
            "load_average_before": load_before,
            "cold_first_call_s": cold,
            "in_process_single_core_images_per_s": in_process,
            "runs": [asdict(s) for s in results],
        }
        print(
            _table(
                [
                    "workers",
                    "items",
                    "call s",
                    "images/s",
                    "speed-up",
                    "start-up s",
                    "images/s excl. start-up",
                    "errors",
                ],
                [
                    [
                        str(s.workers),
                        str(s.items),
                        f"{s.best_call_s:.2f}",
                        f"{s.images_per_s:.2f}",
                        f"{s.speedup:.2f}",
                        f"{s.startup_s:.3f}",
                        f"{s.images_per_s_excl_startup:.2f}",
                        str(s.errors),
                    ]
                    for s in results
                ],
            )
        )
        print(
            f"  start-up s: best whole call over one small file (pool start, 1 hash, shutdown); "
            f"the very first call, which also starts the forkserver, took {cold:.3f} s."
        )
        if in_process is not None:
            print(f"  in-process childshield-full on one pinned core: {in_process:.2f} images/s.")
        for s in results:
            for note in s.notes:
                print(f"  note (workers={s.workers}): {note}")

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
