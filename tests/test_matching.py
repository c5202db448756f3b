"""Matching: exact PDQ range search proven against brute force; banks, thresholds, negative banks."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from childshield.banks import create_bank, update_bank
from childshield.banks.entries import export_rows, import_rows, set_entry_state
from childshield.banks.formats import parse_csv
from childshield.index.pdq_flat import PdqFlatIndex, pack_hex
from childshield.matching import Matcher
from childshield.store.db import Database
from childshield.store.models import BankKind, EntryState
from cli_runner import cli_for


def random_hex(rng: np.random.Generator) -> str:
    return rng.bytes(32).hex()


def flip(hex_value: str, bits: list[int]) -> str:
    value = int(hex_value, 16)
    for b in bits:
        value ^= 1 << int(b)
    return f"{value:064x}"


def brute(hashes: list[str], thresholds: list[int], query: str) -> list[tuple[int, int]]:
    q = int(query, 16)
    out = []
    for i, h in enumerate(hashes):
        d = (int(h, 16) ^ q).bit_count()
        if d <= thresholds[i]:
            out.append((i, d))
    return out


@pytest.mark.parametrize("layout", ["random", "clustered"])
def test_flat_index_equals_brute_force(layout: str) -> None:
    rng = np.random.default_rng(7)
    if layout == "random":
        hashes = [random_hex(rng) for _ in range(3000)]
    else:  # tight clusters around a few centres: many items near every query
        centres = [random_hex(rng) for _ in range(10)]
        hashes = [
            flip(centres[k % 10], list(rng.choice(256, size=int(rng.integers(0, 40)), replace=False)))
            for k in range(3000)
        ]
    thresholds = [31 if k % 3 else int(rng.integers(0, 64)) for k in range(len(hashes))]
    index = PdqFlatIndex(pack_hex(hashes), thresholds)
    queries = [
        flip(hashes[int(rng.integers(len(hashes)))], list(rng.choice(256, 20, replace=False)))
        for _ in range(40)
    ] + [random_hex(rng) for _ in range(10)]
    hits = index.search(pack_hex(queries))
    for q, query in enumerate(queries):
        got = [(h.item, h.distance) for h in hits if h.query == q]
        assert got == brute(hashes, thresholds, query)


def test_threshold_edge_31_and_32_with_bits_spread_over_the_hash() -> None:
    rng = np.random.default_rng(3)
    base = random_hex(rng)
    for trial in range(20):
        spread = list(rng.choice(256, 32, replace=False))  # bits anywhere in the 256
        at_31 = flip(base, spread[:31])
        at_32 = flip(base, spread)
        index = PdqFlatIndex(pack_hex([at_31, at_32]), [31, 31])
        hits = index.search(pack_hex([base]))
        assert [(h.item, h.distance) for h in hits] == [(0, 31)], trial
    # Each word of the packed hash is covered: a single flipped bit anywhere counts.
    for bit in range(256):
        index = PdqFlatIndex(pack_hex([flip(base, [bit])]), [0])
        assert index.search(pack_hex([base])) == []
        assert index.distances(pack_hex([base])[0])[0] == 1


def test_bad_hex_is_refused() -> None:
    with pytest.raises(ValueError):
        pack_hex(["abc"])
    with pytest.raises(ValueError):
        pack_hex(["g" * 64])


BASE = "f" * 16 + "0" * 16 + "a5" * 16


def csv_rows(*rows: str) -> object:
    return parse_csv(io.StringIO("\n".join(rows) + "\n"))


def test_matcher_thresholds_states_and_negative_banks(db: Database) -> None:
    near = flip(BASE, list(range(0, 256, 9))[:20])  # 20 bits away
    far = flip(BASE, list(range(1, 256, 8))[:30])  # 30 bits away
    create_bank(db, "strict", thresholds={"pdq": 25})
    create_bank(db, "loose")
    import_rows(db, "strict", csv_rows(f"pdq,{near},s-near", f"pdq,{far},s-far"), source_name="s.csv")
    import_rows(db, "loose", csv_rows(f"pdq,{far},l-far", "md5," + "1" * 32 + ",l-md5"), source_name="l.csv")

    matcher = Matcher.load(db)
    result = matcher.match("pdq", BASE.upper(), quality=90)
    got = sorted((m.bank, m.external_id, m.distance) for m in result.matches)
    assert got == [("loose", "l-far", 30), ("strict", "s-near", 20)]  # s-far is over strict's 25
    assert [m.external_id for m in matcher.match("md5", "1" * 32).matches] == ["l-md5"]
    assert not matcher.match("sha256", "2" * 64).matched

    # Quality under 50 is not matched by default; configurable.
    low = matcher.match("pdq", BASE, quality=40)
    assert not low.matched and "quality 40" in (low.note or "")
    assert Matcher.load(db, min_quality=30).match("pdq", BASE, quality=40).matched

    # A disabled entry or bank stops matching (on reload of the snapshot).
    entry = next(r["entry_id"] for r in export_rows(db, "strict") if r["external_id"] == "s-near")
    set_entry_state(db, "strict", entry, EntryState.DISABLED, "false match")
    update_bank(db, "loose", enabled=False)
    assert not Matcher.load(db).match("pdq", BASE, quality=90).matched

    # A negative bank suppresses matches in the others, and says so.
    set_entry_state(db, "strict", entry, EntryState.ACTIVE)
    create_bank(db, "allow", kind=BankKind.NEGATIVE, thresholds={"pdq": 10})
    import_rows(db, "allow", csv_rows(f"pdq,{flip(BASE, [5])},known-false"), source_name="a.csv")
    result = Matcher.load(db).match("pdq", BASE, quality=90)
    assert not result.matched
    assert [m.external_id for m in result.suppressed] == ["s-near"]
    assert [(m.bank, m.distance) for m in result.allowed_by] == [("allow", 1)]


def test_match_command(db: Database) -> None:
    create_bank(db, "known")
    import_rows(db, "known", csv_rows(f"pdq,{BASE},ext-1", "sha256," + "3" * 64 + ",ext-2"), source_name="x")
    run = cli_for(db, "match")

    hit = run("--pdq", flip(BASE, [0, 100, 255]))
    assert hit.returncode == 3
    record = json.loads(hit.stdout)
    assert record["matched"] and record["matches"][0]["distance"] == 3
    assert record["matches"][0]["external_id"] == "ext-1"
    assert run("--sha256", "4" * 64).returncode == 0
    assert run("--md5", "zz").returncode == 1
    assert run("--md5", "1" * 32, "--sha1", "2" * 40).returncode == 2
    lines = [
        json.dumps({"id": "a", "sha256": "3" * 64}),
        json.dumps({"id": "b", "pdq": BASE, "quality": 20}),
        "not json",
        json.dumps({"id": 4, "signal_type": "pdq", "signal": flip(BASE, list(range(40)))}),
    ]
    batch = run("--stdin", stdin="\n".join(lines) + "\n")
    out = [json.loads(x) for x in batch.stdout.splitlines()]
    assert [o.get("id") for o in out] == ["a", "b", None, 4]  # one line out per line in, in order
    assert out[0]["matched"] and not out[1]["matched"] and "quality" in out[1]["note"]
    assert "error" in out[2] and not out[3]["matched"]
    assert batch.returncode == 3  # something matched: 3 wins over the malformed line (docs/scanning.md)
    # Matched in batches of 2 (3 batches, the bad line in the second): the same lines, in the same order.
    small = run("--stdin", "--batch", "2", stdin="\n".join(lines * 2) + "\n")
    assert small.stdout.splitlines() == batch.stdout.splitlines() * 2
