"""Prototype: a second, independent check of PDQ candidates with ORB local features and RANSAC.

Benign images only (scikit-image's bundled photos and seeded generated photos, via ``bench_robustness``).
The corpora, the known/unknown split, the edits and the PDQ hashes are those of ``bench_robustness.py``,
imported from it, so the figures line up with its report.

1. Bank side: ORB keypoints and descriptors of every known original (grayscale, downscaled so the longer
   side is at most ``--side`` px, ``--nfeatures`` features).  Bytes per item = 32 per descriptor plus
   4 per keypoint (x, y as two int16 in 1/16 px, enough for RANSAC at this scale).
2. Query side: the same for every edited image (known and unknown halves, every edit), and for its
   horizontal mirror (ORB is not mirror invariant).
3. Verification of a (query, bank item) pair: nearest and second-nearest bank descriptor by Hamming
   distance for every query descriptor, Lowe's ratio test (``--match ratio``) or a cross check
   (``--match cross``), one-to-one, then ``cv2.estimateAffinePartial2D`` with RANSAC (a similarity:
   turn, uniform scale, shift).  The score is the number of inliers (the larger of the plain and the
   mirrored query); a pair with fewer than ``--min-good`` matches, or a transform scaling by more than
   8x, scores 0.  Rule: accept when inliers >= K.
4. Every query is checked against every bank item.  Reported per edit: the inlier counts of true pairs
   (edited known image vs its own original) against the largest over false pairs (edited unknown image
   vs any bank item; edited known image vs any other bank item), recall and false matches for several K,
   and the smallest K with zero false matches over all edits.
5. The combination the product would use: accept when ``PDQ <= 31 (childshield-both)`` OR
   ``(PDQ <= D AND inliers >= K)``, for several D (256 = no PDQ gate), at the smallest K with zero false
   matches for that D.
6. Times: ORB extraction per image, verification per pair.

The exhaustive all-pairs check uses a numba kernel when numba is importable (a few ns per descriptor
pair); otherwise OpenCV's ``cv2.batchDistance`` per pair (the path a product would use on a handful of
candidates, timed separately on a sample of pairs, and compared with the kernel's scores).

Examples::

    python benchmarks/proto_orb.py --corpus skimage
    python benchmarks/proto_orb.py --corpus skimage --corpus generated --count 200 --save /tmp/orb.npz

False matches here are strict: an edited known image verified against ANY other bank item counts, even
when its own original is verified too (``bench_robustness`` counts only those missing their own).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bench_robustness import (
    DEFAULT_CACHE_DIR,
    EDITS,
    METHODS,
    CorpusImage,
    MethodTiming,
    Sample,
    drop_exact_duplicates,
    edit_seed,
    hash_all,
    load_generated,
    load_skimage,
    min_distances,
    split,
)

try:
    import cv2
except ImportError as exc:  # pragma: no cover - a benchmark-only dependency
    raise SystemExit("proto_orb needs OpenCV: pip install opencv-python-headless") from exc

U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]
I32 = npt.NDArray[np.int32]

PDQ_METHOD = "childshield-both"
PDQ_THRESHOLD = 31
BIG = 10_000  # "no distance" in the kernel's outputs


# --------------------------------------------------------------------------- features


@dataclass
class Features:
    """ORB keypoint positions (in the downscaled image) and their 32-byte descriptors."""

    pts: F32  # (n, 2)
    desc: U8  # (n, 32)

    @property
    def n(self) -> int:
        return len(self.pts)


def to_gray(rgb: U8, side: int) -> U8:
    gray = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    h, w = gray.shape
    scale = side / max(h, w)
    if scale < 1:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    return gray


def orb_features(orb: cv2.ORB, gray: U8, low: cv2.ORB | None = None, fallback: int = 0) -> Features:
    """ORB on ``gray``; with ``low`` (a lower FAST threshold), again when fewer than ``fallback`` points."""
    keypoints, desc = orb.detectAndCompute(gray, None)
    if low is not None and len(keypoints) < fallback:
        keypoints, desc = low.detectAndCompute(gray, None)
    if desc is None or not keypoints:
        return Features(np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8))
    pts = np.array([k.pt for k in keypoints], dtype=np.float32)
    return Features(pts, np.ascontiguousarray(desc, dtype=np.uint8))


# --------------------------------------------------------------------------- matching


def _make_kernel():  # type: ignore[no-untyped-def]
    """Nearest, second-nearest (per bank item) and reverse-nearest descriptors, or None without numba."""
    try:
        from numba import njit, types
        from numba.extending import intrinsic
    except ImportError:
        return None

    @intrinsic
    def popcount64(typingctx, x):  # type: ignore[no-untyped-def]
        def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
            return builder.ctpop(args[0])

        return types.uint64(types.uint64), codegen

    @njit(cache=False, nogil=True)
    def kernel(q, bank, starts, ends, best, d1, d2, rev):  # type: ignore[no-untyped-def]
        """q (nq, 4) u64; bank (NB, 4) u64; item j owns rows starts[j]:ends[j].
        Out: best/d1/d2 (nq, items): global index of the nearest bank row in item j, its distance and the
        second distance; rev (NB,): the nearest query row of every bank row."""
        nq = q.shape[0]
        revd = np.empty(bank.shape[0], np.int32)
        for j in range(starts.shape[0]):
            for b in range(starts[j], ends[j]):
                revd[b] = BIG
                rev[b] = -1
            for i in range(nq):
                a0, a1, a2, a3 = q[i, 0], q[i, 1], q[i, 2], q[i, 3]
                m1 = BIG
                m2 = BIG
                bi = -1
                for b in range(starts[j], ends[j]):
                    d = np.int32(
                        popcount64(a0 ^ bank[b, 0])
                        + popcount64(a1 ^ bank[b, 1])
                        + popcount64(a2 ^ bank[b, 2])
                        + popcount64(a3 ^ bank[b, 3])
                    )
                    if d < m1:
                        m2 = m1
                        m1 = d
                        bi = b
                    elif d < m2:
                        m2 = d
                    if d < revd[b]:
                        revd[b] = d
                        rev[b] = i
                best[i, j] = bi
                d1[i, j] = m1
                d2[i, j] = m2

    return kernel


@dataclass
class Bank:
    feats: list[Features]
    words: npt.NDArray[np.uint64]  # (NB, 4)
    pts: F32  # (NB, 2)
    starts: npt.NDArray[np.int64]
    ends: npt.NDArray[np.int64]

    @classmethod
    def build(cls, feats: list[Features]) -> Bank:
        counts = np.array([f.n for f in feats], dtype=np.int64)
        ends = np.cumsum(counts)
        desc = np.concatenate([f.desc for f in feats]) if ends[-1] else np.zeros((0, 32), np.uint8)
        pts = np.concatenate([f.pts for f in feats]) if ends[-1] else np.zeros((0, 2), np.float32)
        return cls(feats, np.ascontiguousarray(desc).view(np.uint64), pts, ends - counts, ends)


@dataclass
class Verifier:
    match: str
    ratio: float
    min_good: int
    ransac_px: float
    ransac_seconds: float = 0.0
    ransac_calls: int = 0

    def select(
        self, d1: npt.NDArray, d2: npt.NDArray, best: npt.NDArray, crossok: npt.NDArray
    ) -> npt.NDArray:
        """Boolean mask of accepted (query row, item) nearest matches."""
        if self.match == "ratio":
            return d1 < self.ratio * d2
        if self.match == "cross":
            return crossok
        return (d1 < self.ratio * d2) & crossok

    def inliers(self, qpts: F32, bpts: F32, qidx: I32, bidx: I32, dist: npt.NDArray) -> int:
        """One-to-one (best distance wins), then RANSAC similarity; the number of inliers."""
        if len(qidx) < self.min_good:
            return 0
        order = np.argsort(dist, kind="stable")
        _, first = np.unique(bidx[order], return_index=True)
        keep = order[first]
        if len(keep) < self.min_good:
            return 0
        src = qpts[qidx[keep]].reshape(-1, 1, 2)
        dst = bpts[bidx[keep]].reshape(-1, 1, 2)
        start = time.perf_counter()
        model, mask = cv2.estimateAffinePartial2D(
            src, dst, method=cv2.RANSAC, ransacReprojThreshold=self.ransac_px, maxIters=2000, confidence=0.995
        )
        self.ransac_seconds += time.perf_counter() - start
        self.ransac_calls += 1
        if model is None or mask is None:
            return 0
        scale = float(np.hypot(model[0, 0], model[1, 0]))
        if not 1 / 8 <= scale <= 8:
            return 0
        return int(mask.sum())

    # ---- exhaustive path: one kernel call per query variant against the whole bank
    def score_all(self, kernel, q: Features, bank: Bank) -> I32:  # type: ignore[no-untyped-def]
        n_items = len(bank.starts)
        out = np.zeros(n_items, dtype=np.int32)
        if q.n == 0 or len(bank.words) == 0:
            return out
        best = np.empty((q.n, n_items), np.int64)
        d1 = np.empty((q.n, n_items), np.int32)
        d2 = np.empty((q.n, n_items), np.int32)
        rev = np.empty(len(bank.words), np.int32)
        kernel(q.desc.view(np.uint64), bank.words, bank.starts, bank.ends, best, d1, d2, rev)
        rows = np.arange(q.n)[:, None]
        crossok = (best >= 0) & (rev[np.maximum(best, 0)] == rows)
        good = self.select(d1, d2, best, crossok) & (best >= 0)
        counts = good.sum(axis=0)
        for j in np.flatnonzero(counts >= self.min_good):
            qi = np.flatnonzero(good[:, j]).astype(np.int32)
            out[j] = self.inliers(q.pts, bank.pts, qi, (best[qi, j]).astype(np.int32), d1[qi, j])
        return out

    # ---- product path: one candidate pair with OpenCV only
    def score_pair(self, q: Features, b: Features) -> int:
        if q.n < 2 or b.n < 2:
            return 0
        dist, idx = cv2.batchDistance(q.desc, b.desc, cv2.CV_32S, normType=cv2.NORM_HAMMING, K=2)
        d1, d2, best = dist[:, 0], dist[:, 1], idx[:, 0]
        crossok = np.zeros(q.n, dtype=bool)
        if self.match != "ratio":
            _, ridx = cv2.batchDistance(b.desc, q.desc, cv2.CV_32S, normType=cv2.NORM_HAMMING, K=1)
            crossok = ridx[best, 0] == np.arange(q.n)
        good = self.select(d1, d2, best, crossok)
        qi = np.flatnonzero(good).astype(np.int32)
        return self.inliers(q.pts, b.pts, qi, best[qi].astype(np.int32), d1[qi])


# --------------------------------------------------------------------------- the run


@dataclass
class Timer:
    seconds: float = 0.0
    count: int = 0

    def ms(self) -> float:
        return 1000 * self.seconds / self.count if self.count else float("nan")


@dataclass
class Results:
    known: list[CorpusImage]
    unknown: list[CorpusImage]
    edits: list[str]
    inl: dict[str, I32] = field(default_factory=dict)  # edit -> (queries, items) inliers, max of mirror
    inl_plain: dict[str, I32] = field(default_factory=dict)  # without the mirror variant
    pdq: dict[str, npt.NDArray[np.int16]] = field(default_factory=dict)  # edit -> (queries, items)
    bank_counts: list[int] = field(default_factory=list)
    timers: dict[str, Timer] = field(default_factory=dict)
    sample_pairs: list[tuple[Features, Features, int, int]] = field(default_factory=list)
    bank_feats: list[Features] = field(default_factory=list)
    verifier: Verifier | None = None


def run(
    args: argparse.Namespace, known: list[CorpusImage], unknown: list[CorpusImage], edits: list[str]
) -> Results:
    cv2.setNumThreads(1)
    res = Results(known, unknown, edits)
    t = res.timers = {k: Timer() for k in ("bank_orb", "query_orb", "all_pairs", "pdq", "edit")}
    orb = cv2.ORB_create(nfeatures=args.nfeatures)
    low = cv2.ORB_create(nfeatures=args.nfeatures, fastThreshold=args.fast_low) if args.fallback else None
    verifier = Verifier(args.match, args.ratio, args.min_good, args.ransac_px)
    kernel = None if args.no_numba else _make_kernel()
    if kernel is None:
        print("  numba not importable: all pairs with cv2.batchDistance (slow)", file=sys.stderr)

    def extract(rgb: U8, timer: Timer, mirror: bool) -> list[Features]:
        start = time.perf_counter()
        gray = to_gray(rgb, args.side)
        out = [orb_features(orb, gray, low, args.fallback)]
        if mirror:
            out.append(orb_features(orb, np.ascontiguousarray(gray[:, ::-1]), low, args.fallback))
        timer.seconds += time.perf_counter() - start
        timer.count += len(out)
        return out

    bank_feats = [extract(im.pixels, t["bank_orb"], False)[0] for im in known]
    bank = Bank.build(bank_feats)
    res.bank_counts = [f.n for f in bank_feats]
    method = METHODS[PDQ_METHOD]
    originals = [Sample(im.key, im.pixels) for im in known]
    pdq_bank = hash_all(method, originals, True, MethodTiming())
    if kernel is not None:  # compile outside the timers
        verifier.score_all(kernel, bank_feats[0], bank)

    rng = np.random.default_rng(args.seed)
    queries_src = known + unknown
    nk = len(known)
    for edit in edits:
        start = time.perf_counter()
        samples = [
            Sample(im.key, EDITS[edit](im.pixels, edit_seed(args.seed, im.key, edit))) for im in queries_src
        ]
        t["edit"].seconds += time.perf_counter() - start
        start = time.perf_counter()
        pdq_q = hash_all(method, samples, False, MethodTiming())
        res.pdq[edit] = min_distances(pdq_q, pdq_bank, method.bits)
        t["pdq"].seconds += time.perf_counter() - start
        t["pdq"].count += len(samples)
        inl = np.zeros((len(samples), nk), np.int32)
        inl_plain = np.zeros_like(inl)
        for qi, s in enumerate(samples):
            variants = extract(s.pixels, t["query_orb"], True)
            if kernel is not None:
                start = time.perf_counter()
                scores = [verifier.score_all(kernel, v, bank) for v in variants]
                t["all_pairs"].seconds += time.perf_counter() - start
                t["all_pairs"].count += nk
            else:
                start = time.perf_counter()
                scores = [np.array([verifier.score_pair(v, b) for b in bank_feats]) for v in variants]
                t["all_pairs"].seconds += time.perf_counter() - start
                t["all_pairs"].count += nk
            inl_plain[qi] = scores[0]
            inl[qi] = np.maximum(scores[0], scores[1])
            # keep a few pairs for timing the OpenCV (product) path: the true pair and a random item
            if rng.random() < args.timing_share:
                picks = ([qi] if qi < nk else []) + [int(rng.integers(nk))]
                for j in picks:
                    res.sample_pairs.append((variants[0], variants[1], j, int(inl[qi, j])))
        res.inl[edit] = inl
        res.inl_plain[edit] = inl_plain
        print(f"  {edit:<20} done", file=sys.stderr)
    res.timers["ransac"] = Timer(verifier.ransac_seconds, verifier.ransac_calls)
    res.bank_feats = bank_feats
    res.verifier = verifier
    return res


# --------------------------------------------------------------------------- analysis


def outcome(accept: npt.NDArray[np.bool_], nk: int) -> tuple[float, int, int]:
    """Recall, false matches of unknown queries (any item), of known queries (any other item)."""
    eye = np.eye(nk, dtype=bool)
    recall = float(accept[:nk][eye].mean()) if nk else 0.0
    fm_unknown = int(accept[nk:].any(axis=1).sum())
    fm_known = int((accept[:nk] & ~eye).any(axis=1).sum())
    return recall, fm_unknown, fm_known


def false_mask(shape: tuple[int, int], nk: int) -> npt.NDArray[np.bool_]:
    mask = np.ones(shape, dtype=bool)
    mask[np.arange(nk), np.arange(nk)] = False
    return mask


def zero_fm_k(res: Results, gate: int | None, inl: dict[str, I32] | None = None) -> int:
    """Smallest K with no false pair accepted by the ORB branch (pairs already PDQ-accepted excluded)."""
    inl = inl or res.inl
    nk = len(res.known)
    worst = 0
    for edit in res.edits:
        m = false_mask(inl[edit].shape, nk)
        if gate is not None:
            p = res.pdq[edit]
            m &= (p <= gate) & (p > PDQ_THRESHOLD)
        if m.any():
            worst = max(worst, int(inl[edit][m].max()))
    return worst + 1


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def combined(res: Results, edit: str, d: int, k: int) -> npt.NDArray[np.bool_]:
    p = res.pdq[edit]
    return (p <= PDQ_THRESHOLD) | ((p <= d) & (res.inl[edit] >= k))


def report(res: Results, args: argparse.Namespace) -> None:
    nk, nu = len(res.known), len(res.unknown)
    ks = [int(k) for k in args.ks.split(",")]
    ds = [int(d) for d in args.ds.split(",")]
    eye = np.eye(nk, dtype=bool)
    attacks = [e for e in res.edits if e != "original"]
    counts = np.array(res.bank_counts)
    n_bytes = counts * (32 + 4)
    print(
        f"\nbank: {nk} items, ORB nfeatures={args.nfeatures} side<={args.side}: keypoints per item mean"
        f" {counts.mean():.0f} (min {counts.min()}, max {counts.max()}); bytes per item mean"
        f" {n_bytes.mean():.0f}, max {n_bytes.max()} (32 B descriptor + 4 B position per keypoint)"
    )
    print(
        f"queries: {nk + nu} per edit x {len(res.edits)} edits, each also mirrored; match={args.match}"
        f" ratio={args.ratio} min_good={args.min_good} ransac={args.ransac_px}px"
        f" fallback=<{args.fallback} kp -> FAST {args.fast_low}"
    )

    print(
        "\nORB only: inliers of TRUE pairs (min/p10/median) vs the largest over FALSE pairs"
        " (falseU: unknown->any item, falseK: known->other item); recall at K"
    )
    print(
        f"{'edit':<20}{'true min/p10/med':>18}{'falseU':>7}{'falseK':>7}"
        + "".join(f"{'K=' + str(k):>7}" for k in ks)
    )
    totals = {k: [0, 0] for k in ks}
    for edit in res.edits:
        inl = res.inl[edit]
        own = inl[:nk][eye]
        fu = int(inl[nk:].max()) if nu else 0
        fk = int(inl[:nk][~eye].max()) if nk > 1 else 0
        cells = []
        for k in ks:
            r, u, kk = outcome(inl >= k, nk)
            totals[k][0] += u
            totals[k][1] += kk
            cells.append(pct(r))
        dist = f"{own.min()}/{np.percentile(own, 10):.0f}/{np.median(own):.0f}"
        print(f"{edit:<20}{dist:>18}{fu:>7}{fk:>7}" + "".join(f"{c:>7}" for c in cells))
    means = [pct(np.mean([outcome(res.inl[e] >= k, nk)[0] for e in attacks])) for k in ks]
    print(f"{'mean (edits)':<52}" + "".join(f"{m:>7}" for m in means))
    print(f"{'false matches U+K':<52}" + "".join(f"{f'{u}+{kk}':>7}" for u, kk in totals.values()))
    k0 = zero_fm_k(res, None)
    k0_plain = zero_fm_k(res, None, res.inl_plain)
    print(
        f"smallest K with zero false matches over all edits: ORB only K={k0}"
        f" (without the mirror variant: K={k0_plain})"
    )

    print(
        f"\nCombined: PDQ<={PDQ_THRESHOLD} ({PDQ_METHOD}) OR (PDQ<=D AND inliers>=K); K = the larger of"
        " the ORB-only K and the smallest K with zero false matches from the ORB branch for that D; then"
        " K=max(that, --margin-k)"
    )
    # the gate leaves few false pairs to learn K from: never go below the ORB-only K
    alone = {d: zero_fm_k(res, d) for d in ds}
    chosen = {d: max(alone[d], k0) for d in ds}
    print(
        "smallest zero-false-match K from the gated pairs alone: "
        + ", ".join(f"D={d}: {k}" for d, k in alone.items())
    )
    rules: list[tuple[str, int, int]] = [("PDQ<=31", PDQ_THRESHOLD, BIG)]
    for d in ds:
        rules.append((f"D={d},K={chosen[d]}", d, chosen[d]))
    for d in ds:
        k = max(chosen[d], args.margin_k)
        if k != chosen[d]:
            rules.append((f"D={d},K={k}", d, k))
    w = max(13, *(len(r[0]) + 2 for r in rules))
    print(f"{'edit':<20}" + "".join(f"{r[0]:>{w}}" for r in rules))
    fm_tot = [[0, 0] for _ in rules]
    rec_sum = [0.0 for _ in rules]
    for edit in res.edits:
        cells = []
        for c, (_, d, k) in enumerate(rules):
            r, u, kk = outcome(combined(res, edit, d, k), nk)
            fm_tot[c][0] += u
            fm_tot[c][1] += kk
            if edit != "original":
                rec_sum[c] += r
            cells.append(pct(r))
        print(f"{edit:<20}" + "".join(f"{c:>{w}}" for c in cells))
    print(f"{'mean (edits)':<20}" + "".join(f"{pct(v / max(1, len(attacks))):>{w}}" for v in rec_sum))
    print(f"{'false matches U+K':<20}" + "".join(f"{f'{u}+{kk}':>{w}}" for u, kk in fm_tot))
    n_false = sum(int(false_mask(res.pdq[e].shape, nk).sum()) for e in res.edits)
    shares = []
    for d in ds:
        n = sum(
            int((false_mask(res.pdq[e].shape, nk) & (res.pdq[e] > PDQ_THRESHOLD) & (res.pdq[e] <= d)).sum())
            for e in res.edits
        )
        shares.append(f"D={d}: {n}/{n_false} = {n / n_false:.2e}")
    print("false pairs in the gate 31 < PDQ <= D (ORB checks per query per bank item): " + ", ".join(shares))

    t = res.timers
    print("\ntimes (single thread, nice 19 on a shared 2-core machine)")
    print(
        f"  ORB extraction (gray + downscale + detectAndCompute): bank {t['bank_orb'].ms():.2f} ms/image,"
        f" query {t['query_orb'].ms():.2f} ms/variant (2 variants per query)"
    )
    print(
        f"  all-pairs scoring (numba kernel + RANSAC, both variants): {t['all_pairs'].ms():.3f} ms/pair"
        f" over {t['all_pairs'].count} pairs; RANSAC {t['ransac'].ms():.3f} ms/call x {t['ransac'].count}"
    )
    print(f"  PDQ ({PDQ_METHOD} query incl. PNG encode/decode + min distances): {t['pdq'].ms():.1f} ms/query")
    if res.sample_pairs and res.verifier is not None:
        v = res.verifier
        same = exact = 0
        tt = {True: Timer(), False: Timer()}
        for qa, qb, j, expected in res.sample_pairs:
            start = time.perf_counter()
            got = max(v.score_pair(qa, res.bank_feats[j]), v.score_pair(qb, res.bank_feats[j]))
            timer = tt[expected >= args.min_good]
            timer.seconds += time.perf_counter() - start
            timer.count += 1
            exact += got == expected
            same += (got >= args.margin_k) == (expected >= args.margin_k)
        n = len(res.sample_pairs)
        print(
            "  product path (cv2.batchDistance + ratio + RANSAC, plain + mirror):"
            f" {tt[False].ms():.2f} ms/pair when unrelated ({tt[False].count} pairs),"
            f" {tt[True].ms():.2f} ms/pair when it reaches RANSAC ({tt[True].count}); same score as the"
            f" kernel {exact}/{n}, same decision at K={args.margin_k} {same}/{n}"
        )


def save(res: Results, path: Path) -> None:
    arrays: dict[str, npt.NDArray] = {"bank_counts": np.array(res.bank_counts)}
    for e in res.edits:
        arrays[f"inl/{e}"] = res.inl[e]
        arrays[f"inl_plain/{e}"] = res.inl_plain[e]
        arrays[f"pdq/{e}"] = res.pdq[e]
    arrays["known"] = np.array([im.key for im in res.known])
    arrays["unknown"] = np.array([im.key for im in res.unknown])
    np.savez_compressed(path, **arrays)
    print(f"saved {path}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", action="append", choices=("skimage", "generated"), help="default: skimage")
    p.add_argument("--count", type=int, default=20, help="generated images (default 20)")
    p.add_argument("--size", default="640x480", help="generated image size WxH")
    p.add_argument("--gen-seed", type=int, default=7000)
    p.add_argument("--max-side", type=int, default=1024)
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--edits", default=",".join(EDITS))
    p.add_argument("--nfeatures", type=int, default=500)
    p.add_argument("--side", type=int, default=512, help="ORB on images downscaled to this longer side")
    p.add_argument("--fallback", type=int, default=100, help="fewer points: retry at --fast-low (0: off)")
    p.add_argument(
        "--fast-low", type=int, default=5, help="FAST threshold of the retry (default 5; ORB's is 20)"
    )
    p.add_argument("--match", choices=("ratio", "cross", "both"), default="ratio")
    p.add_argument("--ratio", type=float, default=0.8)
    p.add_argument("--min-good", type=int, default=6, help="fewer matches: score 0 without RANSAC")
    p.add_argument("--ransac-px", type=float, default=5.0)
    p.add_argument("--ks", default="8,10,12,15,20,25")
    p.add_argument("--ds", default="64,80,96,256")
    p.add_argument("--margin-k", type=int, default=20, help="a stricter K to report as well")
    p.add_argument("--timing-share", type=float, default=0.1, help="share of queries timed on the cv2 path")
    p.add_argument("--no-numba", action="store_true", help="score all pairs with cv2 (slow)")
    p.add_argument("--save", type=Path, help="save the inlier and PDQ matrices (.npz)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    edits = [e.strip() for e in args.edits.split(",") if e.strip()]
    for e in edits:
        if e not in EDITS:
            raise SystemExit(f"unknown edit {e!r}; known: {', '.join(EDITS)}")
    width, height = (int(v) for v in args.size.lower().split("x"))
    loaded: list[CorpusImage] = []
    for corpus in dict.fromkeys(args.corpus or ["skimage"]):
        if corpus == "skimage":
            loaded += load_skimage(args.max_side)
        else:
            loaded += load_generated(args.count, width, height, args.gen_seed, args.cache_dir)
    loaded = drop_exact_duplicates(loaded)
    by_corpus: dict[str, list[CorpusImage]] = {}
    for im in loaded:
        by_corpus.setdefault(im.corpus, []).append(im)
    known: list[CorpusImage] = []
    unknown: list[CorpusImage] = []
    for images in by_corpus.values():
        k, u = split(images, args.seed)
        known += k
        unknown += u
    print(
        f"corpora: {', '.join(f'{c} ({len(v)})' for c, v in by_corpus.items())}; known {len(known)},"
        f" unknown {len(unknown)}; {len(edits)} edits"
    )
    start = time.perf_counter()
    res = run(args, known, unknown, edits)
    report(res, args)
    print(f"\nrun {time.perf_counter() - start:.0f} s")
    if args.save:
        save(res, args.save)
    return 0


if __name__ == "__main__":
    sys.exit(main())
