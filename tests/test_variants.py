"""Edited copies: query-side variants (turned back, borders trimmed), bank-side variants (crops, small
rotations), per-bank policy, and what a match says about them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from childshield.banks import create_bank, get_bank, update_bank
from childshield.banks.entries import add_outcomes, export_rows, set_entry_state
from childshield.hashing.result import HashOutcome
from childshield.hashing.service import HashOptions, hash_bytes
from childshield.matching import Matcher
from childshield.matching.scan import scan_bytes
from childshield.signals.pdq import hamming
from childshield.signals.pdq_variants import border_box
from childshield.store.db import Database
from childshield.store.models import EntryState
from childshield.testing.corpus import encode, generated_photo
from cli_runner import cli_for


@pytest.fixture(autouse=True)
def _own_data_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return generated_photo(321, 640, 480)


def png(pixels: np.ndarray) -> bytes:
    return encode(pixels, "PNG", compress_level=1)


def crop(pixels: np.ndarray, share: float) -> np.ndarray:
    """Cut ``share`` of each axis, 80% of it from the top and left (off-centre, as copies are cut)."""
    rows, cols = pixels.shape[:2]
    cut_r, cut_c = round(rows * share), round(cols * share)
    top, left = round(cut_r * 0.8), round(cut_c * 0.8)
    return pixels[top : rows - (cut_r - top), left : cols - (cut_c - left)]


def rotate(pixels: np.ndarray, degrees: float) -> np.ndarray:
    return np.asarray(Image.fromarray(pixels).rotate(degrees, resample=Image.Resampling.BICUBIC))


def letterbox(pixels: np.ndarray, share: float) -> np.ndarray:
    rows, cols = pixels.shape[:2]
    pad = round(rows * share / 2)
    out = np.zeros((rows + 2 * pad, cols, 3), dtype=np.uint8)
    out[pad : pad + rows] = pixels
    return out


def test_turned_and_letterboxed_copies_are_found_through_query_variants(photo: np.ndarray) -> None:
    own = hash_bytes(png(photo)).pdq
    assert own is not None
    for edited, name in (
        (photo[:, ::-1], "flipx"),
        (photo[::-1, :], "flipy"),
        (np.rot90(photo, 1), "rotate270"),  # turned a quarter anticlockwise: a quarter the other way back
        (np.rot90(photo, 2), "rotate180"),
    ):
        result = hash_bytes(png(np.ascontiguousarray(edited)), HashOptions(variants=True))
        assert hamming(result.pdq or "", own) > 64  # plain PDQ does not find it
        variants = result.frames[0].pdq_variants or {}
        assert hamming(variants[name], own) <= 8, name  # the same pixels once turned back (from blocks)
    boxed = hash_bytes(png(letterbox(photo, 0.25)), HashOptions(variants=True))
    assert hamming(boxed.pdq or "", own) > 31
    assert hamming((boxed.frames[0].pdq_variants or {})["trimmed"], own) <= 8


def test_border_detection() -> None:
    plain = generated_photo(5, 320, 240).astype(np.float32).mean(axis=2)
    assert border_box(plain) is None
    framed = np.full((300, 400), 255.0, dtype=np.float32)  # white padding, noisy like a JPEG
    framed += np.random.default_rng(1).normal(0, 1.5, framed.shape).astype(np.float32)
    framed[30:270, 50:350] = plain[:240, :300]
    top, bottom, left, right = border_box(framed) or (0, 0, 0, 0)
    assert max(abs(top - 30), abs(bottom - 30), abs(left - 50), abs(right - 50)) <= 1
    assert border_box(np.zeros((100, 100), dtype=np.float32)) is not None  # flat: trimmed, no crash
    assert border_box(np.zeros((4, 4), dtype=np.float32)) is None


@pytest.mark.parametrize("size", [(640, 480), (2400, 1800)])  # full-size and reduced (block) paths
def test_bank_variants_catch_crops_and_small_rotations(size: tuple[int, int]) -> None:
    photo = generated_photo(77, size[0] // 4, size[1] // 4)
    pixels = np.asarray(Image.fromarray(photo).resize(size, Image.Resampling.BICUBIC))
    item = hash_bytes(encode(pixels, "JPEG", quality=92), HashOptions(bank_variants=True))
    stored = [item.pdq or "", *(item.frames[0].pdq_bank_variants or {}).values()]
    assert len(stored) > 50
    for edited in (crop(pixels, 0.05), rotate(pixels, 5), rotate(pixels, -4)):
        query = hash_bytes(encode(edited, "JPEG", quality=85)).pdq or ""
        plain = hamming(query, item.pdq or "")
        best = min(hamming(query, h) for h in stored)
        assert best <= 31 < plain, (plain, best)


def outcome(name: str, data: bytes, options: HashOptions) -> HashOutcome:
    return HashOutcome(name, hash_bytes(data, options, path=name))


def test_match_reports_the_variants_and_policy_switches_them(db: Database, photo: np.ndarray) -> None:
    create_bank(db, "known")
    report = add_outcomes(db, "known", [outcome("item.png", png(photo), HashOptions(bank_variants=True))])
    assert report.added == 4 and report.variants > 50
    info = get_bank(db, "known")
    assert info.entries["active"] == 4 and info.variants == report.variants
    assert len(export_rows(db, "known")) == 4  # variants are not exported unless asked for
    assert len(export_rows(db, "known", variants=True)) == 4 + report.variants

    matcher = Matcher.load(db)
    mirrored = scan_bytes(matcher, png(np.ascontiguousarray(photo[:, ::-1])))
    assert [(m.query_variant, m.variant, m.distance <= 8) for m in mirrored.matches] == [("flipx", "", True)]
    cropped = scan_bytes(matcher, png(crop(photo, 0.05)))
    assert len(cropped.matches) == 1
    hit = cropped.matches[0]
    assert hit.variant.startswith("crop") and hit.query_variant == ""
    own_pdq = next(r for r in export_rows(db, "known") if r["signal_type"] == "pdq")
    assert hit.item_id == own_pdq["entry_id"] != hit.entry_id
    assert hit.as_dict()["variant"] == hit.variant

    # Policy: switching either side off stops those matches (after a refresh, as any setting).
    update_bank(db, "known", policy={"query_variants": False})
    matcher.refresh()
    assert not scan_bytes(matcher, png(np.ascontiguousarray(photo[:, ::-1]))).matched
    assert scan_bytes(matcher, png(crop(photo, 0.05))).matched
    update_bank(db, "known", policy={"bank_variants": False})
    matcher.refresh()
    assert not scan_bytes(matcher, png(crop(photo, 0.05))).matched
    update_bank(db, "known", policy={"bank_variants": True, "query_variants": True, "variant_threshold": 0})
    matcher.refresh()
    assert not scan_bytes(matcher, png(crop(photo, 0.05))).matched  # the crop lands a few bits off
    update_bank(db, "known", policy={"variant_threshold": 31})
    matcher.refresh()
    assert scan_bytes(matcher, png(crop(photo, 0.05))).matched

    # Disabling the item disables its variants with it.
    set_entry_state(db, "known", int(own_pdq["entry_id"]), EntryState.DISABLED, "test")
    matcher.refresh()
    assert not scan_bytes(matcher, png(crop(photo, 0.05))).matched
    states = {
        r["state"] for r in export_rows(db, "known", states=tuple(EntryState), variants=True) if r["variant"]
    }
    assert states == {"disabled"}


def test_policy_is_validated(db: Database) -> None:
    from childshield.banks import InvalidBankSetting

    with pytest.raises(InvalidBankSetting):
        create_bank(db, "x", policy={"variant_threshold": 300})
    with pytest.raises(InvalidBankSetting):
        create_bank(db, "x", policy={"surprise": True})
    info = create_bank(db, "y", policy={"bank_variants": False})
    assert info.policy.bank_variants is False and info.policy.query_variants is True


def test_bank_add_and_scan_commands_with_variants(db: Database, tmp_path: Path, photo: np.ndarray) -> None:
    cli = cli_for(db)

    known = tmp_path / "known"
    known.mkdir()
    (known / "item.png").write_bytes(png(photo))
    assert cli("bank", "create", "plain", "--no-bank-variants").returncode == 0
    assert cli("bank", "create", "edits").returncode == 0
    added = cli("bank", "add", "edits", str(known))
    assert added.returncode == 0 and "104 variants" in added.stderr, added.stderr
    assert "variants" not in cli("bank", "add", "plain", str(known)).stderr
    copies = tmp_path / "copies"
    copies.mkdir()
    (copies / "mirrored.png").write_bytes(png(np.ascontiguousarray(photo[:, ::-1])))
    (copies / "cropped.jpg").write_bytes(encode(crop(photo, 0.05), "JPEG", quality=85))
    (copies / "other.png").write_bytes(png(generated_photo(999, 640, 480)))
    scan = cli("scan", str(copies), "--format", "jsonl")
    assert scan.returncode == 3, scan.stderr
    rows = [json.loads(line) for line in scan.stdout.splitlines()]
    seen = {(Path(r["path"]).name, r["bank"], r["variant"] is not None, r["query_variant"]) for r in rows}
    assert seen == {
        ("mirrored.png", "plain", False, "flipx"),
        ("mirrored.png", "edits", False, "flipx"),
        ("cropped.jpg", "edits", True, None),
    }


@pytest.mark.parametrize("size", [(5, 5), (6, 9), (9, 64), (3000, 5), (640, 6), (17, 13)])
@pytest.mark.parametrize("flat", [False, True])
def test_tiny_and_extreme_shapes_give_variants_or_none_never_an_error(
    size: tuple[int, int], flat: bool
) -> None:
    w, h = size
    rng = np.random.default_rng(w * h)
    pixels = np.full((h, w, 3), 128, np.uint8) if flat else rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    result = hash_bytes(png(pixels), HashOptions(variants=True, bank_variants=True))
    frame = result.frames[0]
    for value in [*(frame.pdq_variants or {}).values(), *(frame.pdq_bank_variants or {}).values()]:
        assert len(value) == 64 and int(value, 16) >= 0
