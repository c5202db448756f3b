"""Component benchmark: our JPEG DC decoder against libjpeg-turbo's 1/8-scale decode, and our PDQ core
against pdqhash on the same pixel arrays.  Same process, same inputs, best of N; prints ratios.

    python benchmarks/bench_components.py [--corpus benchmarks/.corpus/12mp] [--repeat 5]

Run benchmarks/bench_hash.py once first to build the cached corpus (or point --corpus at any JPEG folder).
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pdqhash
from PIL import Image

from childshield.media import _jpegdc  # type: ignore[attr-defined]
from childshield.signals import pdq


def best_ms(fn: Callable[[], object], repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times) * 1000


def libjpeg_eighth(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        w, h = im.size
        im.draft("L", (w // 8, h // 8))
        im.load()
        return np.asarray(im)


def ours_eighth(data: bytes) -> np.ndarray:
    raw, _, _, cols, rows = _jpegdc.dc_luma(data)
    return np.frombuffer(raw, dtype=np.uint8).reshape(rows, cols)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", type=Path, default=Path(__file__).parent / ".corpus" / "12mp")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    files = sorted(args.corpus.glob("*.jpg"))
    if not files:
        raise SystemExit(f"no JPEGs in {args.corpus}: run benchmarks/bench_hash.py first")

    print(f"JPEG luma at 1/8 scale, {len(files)} files from {args.corpus}")
    total_ours = total_lib = 0.0
    for path in files:
        data = path.read_bytes()
        assert np.array_equal(ours_eighth(data), libjpeg_eighth(data)), path
        total_ours += best_ms(lambda d=data: ours_eighth(d), args.repeat)
        total_lib += best_ms(lambda d=data: libjpeg_eighth(d), args.repeat)
    n = len(files)
    print(f"  libjpeg-turbo (Pillow draft)  {total_lib / n:7.2f} ms/image")
    print(f"  childshield _jpegdc           {total_ours / n:7.2f} ms/image   {total_lib / total_ours:.2f}x")
    print("  outputs identical on every file")

    print("PDQ on the same pixel array (RGB uint8 -> hash), 500x375 and 1000x750")
    for size in [(500, 375), (1000, 750)]:
        with Image.open(files[0]) as im:
            pixels = np.ascontiguousarray(np.asarray(im.convert("RGB").resize(size)))
        assert pdq.hash_rgb(pixels).hex == f"{int(''.join(map(str, pdqhash.compute(pixels)[0])), 2):064x}"
        ref = best_ms(lambda p=pixels: pdqhash.compute(p), args.repeat * 4)
        ours_c = best_ms(lambda p=pixels: pdq.hash_rgb(p), args.repeat * 4)
        ours_np = best_ms(lambda p=pixels: pdq.hash_rgb(p, use_native=False), args.repeat)
        print(
            f"  {size[0]}x{size[1]}: pdqhash {ref:6.2f} ms   childshield C {ours_c:6.2f} ms"
            f" ({ref / ours_c:.2f}x)   childshield NumPy fallback {ours_np:6.2f} ms"
            f" ({ref / ours_np:.2f}x)   bits identical"
        )


if __name__ == "__main__":
    main()
