"""The second check: local features (ORB) of items added from media confirm near PDQ candidates that
plain matching misses (a watermark), and refuse unrelated pictures, including ones sharing an overlay."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw, ImageFont
from sqlalchemy import select

from childshield.banks import create_bank, update_bank
from childshield.banks.entries import add_outcomes, set_entry_state
from childshield.banks.errors import InvalidBankSetting
from childshield.hashing.result import HashOutcome
from childshield.hashing.service import HashOptions, first_picture, hash_bytes
from childshield.index.pdq_flat import PdqFlatIndex
from childshield.index.pdq_mih import PdqMihIndex
from childshield.matching import Matcher
from childshield.matching.scan import scan_bytes
from childshield.signals import orb
from childshield.store.db import Database
from childshield.store.models import EntryState, LocalFeatures
from childshield.testing.corpus import encode, generated_photo
from cli_runner import cli_for


@pytest.fixture(autouse=True)
def _own_data_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))


def png(pixels: np.ndarray) -> bytes:
    return encode(pixels, "PNG", compress_level=1)


def watermark(pixels: np.ndarray) -> np.ndarray:
    """A semi-transparent white box with text over a fifth of the picture (moves PDQ by ~40-80 bits)."""
    base = Image.fromarray(pixels).convert("RGBA")
    w, h = base.size
    overlay = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    x0, y0 = round(w * 0.04), round(h * 0.04)
    draw.rectangle((x0, y0, x0 + w // 2, y0 + round(h * 0.4)), fill=(255, 255, 255, 140))
    draw.text(
        (x0 + 20, y0 + 40), "sample mark", font=ImageFont.load_default(size=h // 14), fill=(20, 20, 20, 200)
    )
    return np.asarray(Image.alpha_composite(base, overlay).convert("RGB")).copy()


def badge(pixels: np.ndarray) -> np.ndarray:
    """The same opaque, textured badge (a sixth of the picture) at the same place on any picture."""
    out = Image.fromarray(pixels).copy()
    w, h = out.size
    rng = np.random.default_rng(5)
    mark = Image.new("RGB", (300, 240), (240, 200, 40))
    draw = ImageDraw.Draw(mark)
    for k in range(0, 300, 20):
        draw.line((k, 0, k + 90, 240), fill=(30, 30, 120), width=5)
    for _ in range(12):
        x, y, r = int(rng.integers(0, 260)), int(rng.integers(0, 200)), int(rng.integers(10, 40))
        draw.ellipse(
            (x, y, x + r, y + r), fill=tuple(int(c) for c in rng.integers(0, 256, 3)), outline=(0, 0, 0)
        )
    draw.text((20, 90), "BADGE", font=ImageFont.load_default(size=40), fill=(0, 0, 0))
    size = (round(w * 0.42), round(h * 0.4))
    out.paste(mark.resize(size), (w - size[0] - 10, h - size[1] - 10))
    return np.asarray(out).copy()


def add_media(db: Database, bank: str, pictures: list[np.ndarray]) -> list[str]:
    """Add pictures as ``bank add`` does (variants and local features); their own PDQs."""
    options = HashOptions(bank_variants=True, local_features=True)
    outcomes = [HashOutcome(f"item{k}.png", hash_bytes(png(p), options)) for k, p in enumerate(pictures)]
    add_outcomes(db, bank, outcomes)
    return [o.result.pdq for o in outcomes if o.result is not None and o.result.pdq is not None]


@pytest.fixture(scope="module")
def known() -> list[np.ndarray]:
    return [generated_photo(seed, 640, 480) for seed in (501, 502, 503)]


# --------------------------------------------------------------------------- features and verification


def test_features_round_trip_and_size(known: list[np.ndarray]) -> None:
    features = orb.picture_features(first_picture(png(known[0])))
    assert 100 <= len(features) <= orb.BANK_FEATURES
    packed = orb.pack(features)
    assert len(packed) < 22_000  # about 18 KB per item, as documented
    back = orb.unpack(packed)
    assert (back.width, back.height) == (features.width, features.height)
    assert np.array_equal(back.descriptors, features.descriptors)
    assert np.abs(back.points - features.points).max() <= 1 / 32  # 1/16 px storage


@given(st.binary(max_size=400))
@settings(max_examples=300, deadline=None)
def test_unpack_refuses_anything_malformed(data: bytes) -> None:
    try:
        features = orb.unpack(data)
    except ValueError:
        return
    assert len(features.descriptors) == len(features.points)


def test_unpack_refuses_truncated_and_padded(known: list[np.ndarray]) -> None:
    packed = orb.pack(orb.picture_features(first_picture(png(known[0]))))
    for bad in (packed[:-1], packed + b"\0", b"XXXX" + packed[4:], packed[:9]):
        with pytest.raises(ValueError):
            orb.unpack(bad)


def test_verify_accepts_the_watermarked_copy_and_refuses_others(known: list[np.ndarray]) -> None:
    item = orb.unpack(orb.pack(orb.picture_features(first_picture(png(known[0])))))
    copy, _ = orb.query_features(first_picture(png(watermark(known[0]))))
    other, _ = orb.query_features(first_picture(png(known[1])))
    same = orb.verify(copy, item)
    assert same.inliers >= 50 and same.area >= 0.2 and same.agreement >= 0.7, same
    unrelated = orb.verify(other, item)
    assert unrelated.inliers < 12, unrelated


def test_mirrored_copy_verifies_through_the_mirrored_query(known: list[np.ndarray]) -> None:
    item = orb.picture_features(first_picture(png(known[0])))
    plain, mirrored = orb.query_features(first_picture(png(np.ascontiguousarray(known[0][:, ::-1]))))
    assert orb.verify(plain, item).inliers < 12
    assert orb.verify(mirrored, item).agreement >= 0.7


def test_shared_overlay_agrees_on_points_but_not_on_the_picture(known: list[np.ndarray]) -> None:
    """Unrelated pictures carrying one badge: many consistent points (within the badge), but the rest of
    the picture disagrees, which the agreement measures."""
    item = orb.picture_features(first_picture(png(badge(known[0]))))
    query, _ = orb.query_features(first_picture(png(badge(known[1]))))
    v = orb.verify(query, item)
    assert v.inliers >= 12, "the badge alone should give consistent points (else this test proves nothing)"
    assert v.agreement < 0.5, v


# --------------------------------------------------------------------------- the approximate gate search


def test_gate_search_finds_everything_within_63_and_most_within_80() -> None:
    rng = np.random.default_rng(3)
    hashes = rng.integers(0, 2**63, size=(3000, 4), dtype=np.uint64)
    index = PdqMihIndex(hashes, np.full(3000, 31, np.int16))
    queries = hashes[:200].copy()
    flips = rng.integers(32, 81, size=200)
    for row, count in zip(queries, flips, strict=True):
        for bit in rng.choice(256, int(count), replace=False):
            row[bit // 64] ^= np.uint64(1) << np.uint64(bit % 64)
    gate = np.full(3000, 80, np.int16)
    q, items, d = index.search_arrays(queries, gate, approximate=True)
    found = set(zip(q.tolist(), items.tolist(), strict=True))
    truth = {(h.query, h.item) for h in PdqFlatIndex(hashes, gate).search(queries)}
    assert found <= truth and (d <= 80).all()  # nothing beyond the gate, nothing invented
    within63 = {(h.query, h.item) for h in PdqFlatIndex(hashes, np.full(3000, 63)).search(queries)}
    assert within63 <= found
    own = {(k, k) for k in range(200)}
    assert len(found & own) >= 0.95 * len(own)
    # the items' own thresholds are untouched by the looser search
    assert set(zip(*index.search_arrays(queries)[:2], strict=True)) <= {
        (k, k) for k in range(200) if flips[k] <= 31
    }


# --------------------------------------------------------------------------- end to end


def test_watermarked_copy_matches_through_the_second_check(db: Database, known: list[np.ndarray]) -> None:
    create_bank(db, "known")
    add_media(db, "known", known)
    with db.session() as session:
        assert len(session.scalars(select(LocalFeatures.entry_id)).all()) == len(known)
    matcher = Matcher.load(db, index_dir=False)
    for k, picture in enumerate(known):
        result = scan_bytes(matcher, png(watermark(picture)))
        assert [m.check for m in result.matches] == ["orb"], (k, result.matches)
        m = result.matches[0]
        assert m.inliers >= 12 and m.distance > 31 and m.as_dict()["check"] == "orb"
        assert m.as_dict()["inliers"] == m.inliers
    plain = scan_bytes(matcher, png(known[0])).matches
    assert {m.check for m in plain} == {""} and {m.as_dict()["check"] for m in plain} >= {"pdq", "sha256"}
    for seed in (900, 901, 902):  # unknown pictures, watermarked the same way
        assert scan_bytes(matcher, png(watermark(generated_photo(seed, 640, 480)))).matches == ()


def test_policy_switches_the_second_check(db: Database, known: list[np.ndarray]) -> None:
    create_bank(db, "known")
    add_media(db, "known", known[:1])
    matcher = Matcher.load(db, index_dir=False)
    copy = png(watermark(known[0]))
    assert scan_bytes(matcher, copy).matches
    update_bank(db, "known", policy={"orb_check": False})
    matcher.refresh()
    assert scan_bytes(matcher, copy).matches == ()
    update_bank(db, "known", policy={"orb_check": True, "orb_inliers": 5000})
    matcher.refresh()
    assert scan_bytes(matcher, copy).matches == ()
    update_bank(db, "known", policy={"orb_inliers": 12, "orb_gate": 31})  # gate no looser than PDQ: off
    matcher.refresh()
    assert matcher.index.gates == {} and scan_bytes(matcher, copy).matches == ()
    with pytest.raises(InvalidBankSetting):
        update_bank(db, "known", policy={"orb_gate": 129})


def test_no_features_stored_when_the_bank_says_no(db: Database, known: list[np.ndarray]) -> None:
    create_bank(db, "plain", policy={"orb_check": False})
    add_media(db, "plain", known[:1])
    with db.session() as session:
        assert session.scalars(select(LocalFeatures.entry_id)).all() == []
    matcher = Matcher.load(db, index_dir=False)
    assert matcher.index.gates == {}


def test_disabled_item_never_matches_through_the_second_check(db: Database, known: list[np.ndarray]) -> None:
    create_bank(db, "known")
    own = add_media(db, "known", known[:1])[0]
    matcher = Matcher.load(db, index_dir=False)
    copy = png(watermark(known[0]))
    item = scan_bytes(matcher, copy).matches[0].item_id
    assert matcher.match("pdq", own).matches[0].entry_id == item
    set_entry_state(db, "known", item, EntryState.DISABLED, "review")
    assert scan_bytes(matcher, copy).matches == ()  # read at match time, before any refresh


def test_damaged_features_row_costs_the_check_not_the_scan(db: Database, known: list[np.ndarray]) -> None:
    create_bank(db, "known")
    add_media(db, "known", known[:1])
    with db.session() as session:
        row = session.scalars(select(LocalFeatures)).one()
        row.data = row.data[:-7]
    matcher = Matcher.load(db, index_dir=False)
    assert scan_bytes(matcher, png(watermark(known[0]))).matches == ()
    assert scan_bytes(matcher, png(known[0])).matched  # plain matching unaffected


def test_scan_command_reports_the_check(db: Database, tmp_path: Path, known: list[np.ndarray]) -> None:
    cli = cli_for(db)
    items, copies = tmp_path / "items", tmp_path / "copies"
    items.mkdir()
    copies.mkdir()
    (items / "a.png").write_bytes(png(known[0]))
    (copies / "marked.jpg").write_bytes(encode(watermark(known[0]), "JPEG", quality=85))
    (copies / "other.png").write_bytes(png(generated_photo(77, 640, 480)))
    assert cli("bank", "create", "known").returncode == 0
    added = cli("bank", "add", "known", str(items))
    assert added.returncode == 0 and "local features of 1" in added.stderr, added.stderr
    scanned = cli("scan", str(copies), "--format", "jsonl")
    assert scanned.returncode == 3, scanned.stderr
    rows = [json.loads(line) for line in scanned.stdout.splitlines()]
    assert [(Path(r["path"]).name, r["check"]) for r in rows] == [("marked.jpg", "orb")]
    assert rows[0]["inliers"] >= 12


def test_gate_search_over_a_small_media_bank_beside_a_large_list(
    db: Database, known: list[np.ndarray]
) -> None:
    """Gated items get tables of their own; the answers are those of the search over everything."""
    from childshield.banks.entries import import_rows
    from childshield.banks.formats import Parsed, SignalRow
    from childshield.store.models import SignalType

    rng = np.random.default_rng(9)
    create_bank(db, "shared")
    values = rng.integers(0, 2**63, size=(5000, 4), dtype=np.uint64)
    rows = [
        SignalRow(k, SignalType.PDQ, "".join(f"{int(w):016x}" for w in row)) for k, row in enumerate(values)
    ]
    import_rows(db, "shared", Parsed(rows=rows), source_name="random")
    create_bank(db, "known")
    own = add_media(db, "known", known[:1])[0]
    matcher = Matcher.load(db, index_dir=False)
    near = f"{int(own, 16) ^ ((1 << 70) - 1):064x}"  # 70 bits away: only the gate finds it
    _q, entries, distances = matcher.index.search_gate(
        np.array([[int(near[i : i + 16], 16) for i in range(0, 64, 16)]], dtype=np.uint64)
    )
    assert matcher.index._gate_index is not None and len(matcher.index._gate_index) < 200
    item = matcher.match("pdq", own).matches[0].entry_id
    assert item in entries.tolist() and int(distances[entries.tolist().index(item)]) == 70
    _full_q, full_items, _full_d = matcher.index.mih.search_arrays(
        np.array([[int(near[i : i + 16], 16) for i in range(0, 64, 16)]], dtype=np.uint64),
        matcher.index._gate_thresholds,
        approximate=True,
    )
    assert sorted(matcher.index.entry_ids[full_items].tolist()) == sorted(entries.tolist())
    assert scan_bytes(matcher, png(watermark(known[0]))).matches[0].check == "orb"


@pytest.mark.parametrize("shape", [(1, 1, 3), (4, 4, 3), (5, 300, 3), (300, 5, 3), (31, 64, 3), (64, 64, 3)])
def test_tiny_and_thin_pictures_get_empty_features_not_errors(shape: tuple[int, int, int]) -> None:
    """Found in review: OpenCV refused a 1x1 picture with an exception, which failed the whole file."""
    pixels = (np.random.default_rng(1).random(shape) * 255).astype(np.uint8)
    data = png(pixels)
    result = hash_bytes(data, HashOptions(bank_variants=True, local_features=True, variants=True))
    stored = orb.unpack(result.frames[0].local_features or b"")
    plain, mirrored = orb.query_features(first_picture(data))
    assert orb.verify(plain, stored).inliers == 0 and orb.verify(mirrored, stored).inliers == 0
