"""Edited copies through the product itself: banks built with ``bank add``'s code, files matched with
``scan_bytes``, the second check (ORB local features) on, side by side with PDQ alone.

Benign images only (scikit-image's bundled photos, seeded generated photos, or a folder of your own),
split and edited exactly as in ``bench_robustness.py`` (same corpora, same halves, same edits, same seeds).

1. The known half goes into a SQLite bank through ``add_outcomes`` with bank variants and local features
   (what ``childshield bank add`` stores).
2. Every edited image of both halves is encoded as PNG and scanned with ``scan_bytes`` (query variants,
   the second check for files that matched nothing but came within the gate of an item).
3. Per edit: recall (the edited known image matched its own item), recall by PDQ alone (the matches that
   did not need the second check: what the product gives with ``orb_check`` off), and false matches
   (an unknown image matched anything; a known image matched another item).  Strict: a false match counts
   even when the image also matched its own item.
4. **Shared overlay**: a second bank holds the known originals each carrying the same opaque badge
   (``robustness_edits.shared_overlay``); the unknown originals carrying the same badge are scanned
   against it (must match nothing), and every (unknown with badge, bank item) pair is also verified with
   no PDQ gate at all, to show what the area rule adds to the inlier count.
5. Costs: time per scan, split into files that reached the second check and those that did not; the gate
   search; bytes of local features per item; and, with ``--index-size N``, the gate search against an
   index of N random hashes next to the plain search.

Examples::

    python benchmarks/bench_second_check.py --corpus skimage --corpus generated --count 200
    python benchmarks/bench_second_check.py --corpus folder --path ~/Pictures/benign --index-size 1000000
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from sqlalchemy import func, select

from bench_robustness import CorpusImage, add_corpus_args, edit_seed, load_split
from childshield.banks.entries import add_outcomes
from childshield.banks.service import create_bank
from childshield.hashing.result import HashOutcome
from childshield.hashing.service import HashOptions, first_picture, hash_bytes
from childshield.index.pdq_mih import PdqMihIndex
from childshield.matching import second_check as second_check_module
from childshield.matching.matcher import Matcher
from childshield.matching.scan import scan_bytes
from childshield.signals import orb
from childshield.store.db import open_database
from childshield.store.models import LocalFeatures
from robustness_edits import EDITS, shared_overlay


def png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(out, format="PNG", compress_level=1)
    return out.getvalue()


class Clock:
    """Wall time spent inside wrapped functions (the gate search, ORB on the query)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*a: Any, **k: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.seconds[name] += time.perf_counter() - start
                self.calls[name] += 1

        return timed

    def ms(self, name: str) -> float:
        return 1000 * self.seconds[name] / self.calls[name] if self.calls[name] else float("nan")


def build_bank(
    db: Any, name: str, images: Sequence[CorpusImage], edit: Callable[[np.ndarray], np.ndarray]
) -> dict[int, str]:
    """Add images (edited by ``edit``) to a new bank as ``bank add`` does; {item id: image key}."""
    create_bank(db, name)
    options = HashOptions(bank_variants=True, local_features=True)
    outcomes = [HashOutcome(im.key, hash_bytes(png(edit(im.pixels)), options)) for im in images]
    add_outcomes(db, name, outcomes)
    matcher = Matcher.load(db, index_dir=False)
    items: dict[int, str] = {}
    for im, outcome in zip(images, outcomes, strict=True):
        assert outcome.result is not None and outcome.result.pdq is not None
        found = matcher.match("pdq", outcome.result.pdq).matches
        own = [m for m in found if m.distance == 0 and m.bank == name and not m.variant]
        items[own[0].item_id] = im.key
    return items


def run(
    args: argparse.Namespace, known: list[CorpusImage], unknown: list[CorpusImage], edits: list[str]
) -> dict[str, Any]:
    clock = Clock()
    second_check_module.orb.query_features = clock.wrap("query ORB", orb.query_features)  # type: ignore[attr-defined]
    folder = Path(tempfile.mkdtemp(prefix="bench-second-check-"))
    db = open_database(f"sqlite:///{folder / 'bench.db'}")
    start = time.perf_counter()
    items = build_bank(db, "known", known, lambda p: p)
    bank_seconds = time.perf_counter() - start
    with db.session() as session:
        sizes = session.execute(select(func.length(LocalFeatures.data))).scalars().all()
    matcher = Matcher.load(db, index_dir=False)
    matcher.index.search_gate = clock.wrap("gate search", matcher.index.search_gate)  # type: ignore[method-assign]
    key_of = {v: k for k, v in items.items()}
    nk = len(known)
    out: dict[str, Any] = {"edits": {}, "known": nk, "unknown": len(unknown), "misses": {}}
    item_hashes = _item_hashes(db, items)
    item_features = _item_features(db, items)
    times = {True: [], False: []}  # reached the second check or not -> scan seconds
    for edit in edits:
        row = {"recall": 0, "recall_pdq": 0, "false_unknown": 0, "false_known": 0, "orb_checked": 0}
        for k, im in enumerate(known + unknown):
            data = png(EDITS[edit](im.pixels, edit_seed(args.seed, im.key, edit)))
            before = clock.calls["query ORB"]
            start = time.perf_counter()
            result = scan_bytes(matcher, data)
            times[clock.calls["query ORB"] > before].append(time.perf_counter() - start)
            row["orb_checked"] += clock.calls["query ORB"] > before
            # a file's digests are entries of their own: count the items matched by PDQ
            matched = {m.item_id: m for m in result.matches if m.signal_type == "pdq"}
            if k < nk:
                own = key_of[im.key]
                if own in matched:
                    row["recall"] += 1
                    row["recall_pdq"] += matched[own].check != "orb"
                row["false_known"] += any(i != own for i in matched)
                if own not in matched or matched[own].check == "orb":
                    out["misses"].setdefault(edit, []).append(
                        _diagnose(result, data, item_hashes[own], item_features[own], own in matched)
                    )
            else:
                row["false_unknown"] += bool(matched)
        out["edits"][edit] = row
        print(
            f"  {edit:<20} recall {row['recall']}/{nk} (PDQ alone {row['recall_pdq']}), false"
            f" {row['false_unknown']}+{row['false_known']}, second checks {row['orb_checked']}",
            file=sys.stderr,
        )

    # shared overlay: unrelated pictures carrying the same badge
    overlay_items = build_bank(db, "overlay", known, shared_overlay)
    matcher = Matcher.load(db, index_dir=False)
    false_overlay = 0
    for im in unknown:
        result = scan_bytes(matcher, png(shared_overlay(im.pixels)))
        false_overlay += any(m.bank == "overlay" for m in result.matches)
    bank_feats = {
        key: orb.picture_features(first_picture(png(shared_overlay(im.pixels))))
        for im in known
        for key in [im.key]
    }
    pairs = by_inliers = by_both = by_all = 0
    max_area = 0.0
    agreements: list[float] = []
    min_inliers = 10**9
    from childshield.banks.policy import Policy

    policy = Policy()
    for im in unknown:
        plain, mirrored = orb.query_features(first_picture(png(shared_overlay(im.pixels))))
        for feats in bank_feats.values():
            v = max((orb.verify(q, feats) for q in (plain, mirrored)), key=lambda x: x.inliers)
            pairs += 1
            if v.inliers >= policy.orb_inliers:
                by_inliers += 1
                max_area = max(max_area, v.area)
                min_inliers = min(min_inliers, v.inliers)
                by_both += 100 * v.area >= policy.orb_area
                by_all += 100 * v.area >= policy.orb_area and 100 * v.agreement >= policy.orb_agreement
                agreements.append(v.agreement)
    out["overlay"] = {
        "bank_items": len(overlay_items),
        "queries": len(unknown),
        "false_matches": false_overlay,
        "pairs": pairs,
        "pass_inliers": by_inliers,
        "pass_inliers_and_area": by_both,
        "max_area_of_inlier_passes": max_area,
        "pass_all": by_all,
        "max_agreement_of_inlier_passes": max(agreements, default=0.0),
    }
    out["costs"] = {
        "bank_seconds_per_item": bank_seconds / nk,
        "features_bytes_mean": statistics.mean(sizes) if sizes else 0,
        "features_bytes_max": max(sizes) if sizes else 0,
        "scan_ms_no_second_check": 1000 * statistics.mean(times[False]) if times[False] else None,
        "scan_ms_with_second_check": 1000 * statistics.mean(times[True]) if times[True] else None,
        "second_checks": len(times[True]),
        "scans": len(times[True]) + len(times[False]),
        "gate_search_ms": clock.ms("gate search"),
        "query_orb_ms": clock.ms("query ORB"),
    }
    db.close()
    return out


def _item_hashes(db: Any, items: dict[int, str]) -> dict[int, tuple[str, list[str]]]:
    """Every item's own PDQ and its variants' PDQs."""
    from childshield.store.models import Entry

    out: dict[int, tuple[str, list[str]]] = {i: ("", []) for i in items}
    with db.session() as session:
        for entry_id, parent_id, signal in session.execute(
            select(Entry.id, Entry.parent_id, Entry.signal).where(Entry.signal_type == "pdq")
        ):
            if parent_id in out:
                out[parent_id][1].append(signal)
            elif entry_id in out:
                out[entry_id] = (signal, out[entry_id][1])
    return out


def _item_features(db: Any, items: dict[int, str]) -> dict[int, orb.OrbFeatures]:
    with db.session() as session:
        rows = session.execute(select(LocalFeatures.entry_id, LocalFeatures.data)).all()
    return {entry_id: orb.unpack(data) for entry_id, data in rows if entry_id in items}


def _distance(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


def _diagnose(
    result: Any, data: bytes, hashes: tuple[str, list[str]], features: orb.OrbFeatures, found: bool
) -> dict[str, Any]:
    """Why a known edited image needed (or failed) the second check: its PDQ distances to its own item
    (plain query to the item's own hash; any query variant to it; any to any stored variant) and the
    second check's figures against its own item."""
    own, variants = hashes
    first = result.hashes.frames[0]
    queries = [first.pdq, *(first.pdq_variants or {}).values()]  # what the gate could search
    plain, mirrored = orb.query_features(first_picture(data))
    v = max((orb.verify(q, features) for q in (plain, mirrored)), key=lambda x: x.inliers)
    return {
        "plain_own": _distance(first.pdq, own),
        "any_own": min(_distance(q, own) for q in queries),
        "any_all": min(_distance(q, h) for q in queries for h in [own, *variants]),
        "inliers": v.inliers,
        "area": v.area,
        "agreement": v.agreement,
        "found": found,
    }


def gate_cost(size: int, queries: int, seed: int, gates: Sequence[int] = (47, 63, 80)) -> dict[str, Any]:
    """Plain search (threshold 31) against the gate search (approximate beyond 63) on random hashes."""
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 2**63, size=(size, 4), dtype=np.uint64) * np.uint64(2) + rng.integers(
        0, 2, size=(size, 4), dtype=np.uint64
    )
    index = PdqMihIndex(hashes, np.full(size, 31, np.int16))
    # queries near items (10-60 bits away), as files that came near something
    picks = hashes[rng.integers(0, size, queries)].copy()
    for row in picks:
        for bit in rng.choice(256, int(rng.integers(10, 60)), replace=False):
            row[bit // 64] ^= np.uint64(1) << np.uint64(bit % 64)
    index.search_arrays(picks[:10])
    start = time.perf_counter()
    for q in picks:
        index.search_arrays(q[None, :])
    plain = (time.perf_counter() - start) / queries
    out: dict[str, Any] = {"size": size, "plain_ms": 1000 * plain, "gate_ms": {}}
    for g in gates:
        gate = np.full(size, g, np.int16)
        start = time.perf_counter()
        for q in picks:
            index.search_arrays(q[None, :], gate, approximate=True)
        out["gate_ms"][g] = 1000 * (time.perf_counter() - start) / queries
    return out


def gate_designs(
    out: dict[str, Any],
    gates: Sequence[int],
    ks: Sequence[int],
    areas: Sequence[int],
    agreements: Sequence[int],
) -> None:
    """Recall over the edits for other gates and rules, from the diagnosed misses (exact distances)."""
    nk = out["known"]
    attacks = [e for e in out["edits"] if e != "original"]
    print(
        "\nrecall (mean of edits; worst edit) if the gate were searched with ... within D, and the rule"
        " inliers >= K, area >= A% and agreement >= C% (from the diagnosed files; exact distances)"
    )
    print(f"{'gate':<34}{'D':>4}{'K':>4}{'A':>4}{'C':>4}{'mean':>8}{'worst':>20}")
    for design in ("plain_own", "any_own", "any_all"):
        for d in gates:
            for k in ks:
                for a, c in ((a, c) for a in areas for c in agreements):
                    per_edit = {}
                    for e in attacks:
                        extra = sum(
                            x[design] <= d
                            and x["inliers"] >= k
                            and 100 * x["area"] >= a
                            and 100 * x["agreement"] >= c
                            for x in out["misses"].get(e, [])
                        )
                        per_edit[e] = (out["edits"][e]["recall_pdq"] + extra) / nk
                    worst = min(per_edit, key=lambda e: per_edit[e])
                    label = {
                        "plain_own": "plain query vs items' own hash",
                        "any_own": "query variants vs items' own hash",
                        "any_all": "query variants vs all stored",
                    }[design]
                    mean = 100 * statistics.mean(per_edit.values())
                    rule = f"{label:<34}{d:>4}{k:>4}{a:>4}{c:>4}"
                    print(f"{rule}{mean:>7.1f}%{worst:>13} {100 * per_edit[worst]:.1f}%")


def report(out: dict[str, Any], *, costs_only: bool = False) -> None:
    if costs_only:
        _report_gate(out)
        return
    nk = out["known"]
    print(f"\nbank: {nk} known items (variants and local features); {out['unknown']} unknown images")
    print(f"{'edit':<22}{'PDQ alone':>10}{'+ second check':>16}{'false (U+K)':>13}{'checks':>8}")
    attacks = [e for e in out["edits"] if e != "original"]
    for edit, row in out["edits"].items():
        print(
            f"{edit:<22}{100 * row['recall_pdq'] / nk:>9.1f}%{100 * row['recall'] / nk:>15.1f}%"
            f"{row['false_unknown']:>8}+{row['false_known']:<4}{row['orb_checked']:>8}"
        )
    if attacks:
        pdq = statistics.mean(out["edits"][e]["recall_pdq"] / nk for e in attacks)
        both = statistics.mean(out["edits"][e]["recall"] / nk for e in attacks)
        false = sum(out["edits"][e]["false_unknown"] + out["edits"][e]["false_known"] for e in out["edits"])
        print(f"{'mean of edits':<22}{100 * pdq:>9.1f}%{100 * both:>15.1f}%{false:>8} in all")
    o = out["overlay"]
    print(
        f"\nshared overlay: {o['queries']} unknown pictures with the bank's badge ->"
        f" {o['false_matches']} false matches; without any PDQ gate, {o['pass_inliers']} of {o['pairs']}"
        f" pairs pass the inlier count,"
        f" {o['pass_inliers_and_area']} pass the area rule too (largest area among inlier passes"
        f" {100 * o['max_area_of_inlier_passes']:.1f}%), {o['pass_all']} the agreement rule too (largest"
        f" agreement among inlier passes {100 * o['max_agreement_of_inlier_passes']:.0f}%)"
    )
    c = out["costs"]
    print(
        f"\ncosts: bank add {1000 * c['bank_seconds_per_item']:.0f} ms/item (variants + features);"
        f" local features {c['features_bytes_mean'] / 1000:.1f} KB/item mean,"
        f" {c['features_bytes_max'] / 1000:.1f} max"
    )
    print(
        f"  scan {c['scan_ms_no_second_check']:.1f} ms without a second check,"
        f" {c['scan_ms_with_second_check'] or float('nan'):.1f} ms with one"
        f" ({c['second_checks']} of {c['scans']} scans);"
        f" gate search {c['gate_search_ms']:.3f} ms/file, query ORB {c['query_orb_ms']:.1f} ms"
    )
    _report_gate(out)


def _report_gate(out: dict[str, Any]) -> None:
    for g in out.get("gate", []):
        gates = ", ".join(
            f"gate {d}: {ms:.3f} ms ({ms / g['plain_ms']:.0f}x)" for d, ms in g["gate_ms"].items()
        )
        print(f"  on {g['size']:,} random hashes, per query: plain search {g['plain_ms']:.3f} ms; {gates}")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_corpus_args(p)
    p.add_argument("--edits", default=",".join(EDITS), help=f"comma list of: {', '.join(EDITS)}")
    p.add_argument("--index-size", type=int, action="append", default=[], help="also time the gate search")
    p.add_argument("--json", type=Path, help="save the figures here")
    p.add_argument("--gate-only", action="store_true", help="only time the gate search (--index-size)")
    args = p.parse_args(argv)
    if args.gate_only:
        report({"gate": [gate_cost(n, 1000, args.seed) for n in args.index_size]}, costs_only=True)
        return 0
    edits = [e.strip() for e in args.edits.split(",") if e.strip()]
    for e in edits:
        if e not in EDITS:
            raise SystemExit(f"unknown edit {e!r}; known: {', '.join(EDITS)}")
    by_corpus, known, unknown = load_split(args, args.corpus or ["skimage"])
    print(
        f"corpora: {', '.join(f'{c} ({len(v)})' for c, v in by_corpus.items())}; known {len(known)},"
        f" unknown {len(unknown)}; {len(edits)} edits"
    )
    start = time.perf_counter()
    out = run(args, known, unknown, edits)
    out["gate"] = [gate_cost(n, 1000, args.seed) for n in args.index_size]
    out["seconds"] = time.perf_counter() - start
    report(out)
    gate_designs(out, (63, 80, 96), (12,), (8,), (0, 30, 50, 70))
    print(f"\nrun {out['seconds']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
        print(f"saved {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
