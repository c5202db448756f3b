"""Video through the command line and the bank: frames per second when banking and scanning, near
videos shown, one item per video, frames shared between videos, exports that carry the frames, vPDQ text
in the reference format with the frames' own numbers, and a video's own size.  Every video here is
generated and encoded by PyAV, or is one of Meta's benign sample clips (tests/data/vpdq)."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from childshield.banks.entries import add_outcomes, export_rows, import_rows, set_entry_state
from childshield.banks.formats import ListFormat, parse, write
from childshield.banks.service import create_bank
from childshield.hashing.result import HashOutcome, records
from childshield.hashing.service import HashOptions, hash_bytes
from childshield.matching.matcher import Matcher
from childshield.matching.scan import scan_bytes
from childshield.store.db import Database, open_database
from childshield.store.models import EntryState
from childshield.testing.video import clip, encode_video, scene
from cli_runner import Run, cli_for

DATA = Path(__file__).parent / "data" / "vpdq"
KNOWN = [scene(s) for s in range(10, 16)]
OTHER = [scene(s) for s in range(50, 62)]
REFERENCE_LINE = re.compile(r"\d+,\d+,[0-9a-f]{64},\d+\.\d{3}")
"""A line as Meta's vpdq-hash-video writes it and its readers read it (no comment, no header)."""


def panning(frames: int = 100) -> list[np.ndarray]:
    """A picture panning fast (6 px a frame at 10 fps): frames half a second apart share no PDQ."""
    base = scene(21, 320, 240)
    return [np.ascontiguousarray(np.roll(base, 6 * i, axis=1)) for i in range(frames)]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("videos")
    (root / "known.mp4").write_bytes(encode_video(clip(KNOWN, 2.0)))
    (root / "pan.mp4").write_bytes(encode_video(panning()))
    (root / "pan-later.mp4").write_bytes(encode_video(panning()[5:]))  # starts half a second in
    (root / "one-scene.mp4").write_bytes(encode_video(clip(OTHER[:8], 2.0) + clip(KNOWN[:1], 2.0)))
    return root


@pytest.fixture(scope="module")
def cli(folder: Path) -> Iterator[tuple[Run, Run]]:
    """(bank, scan) commands on one SQLite database: ``known.mp4`` in bank ``known``, the pan banked at
    1 frame/s (the default) in ``sparse``."""
    db = open_database(f"sqlite:///{folder / 'v.db'}")
    bank, scan = cli_for(db, "bank"), cli_for(db, "scan")
    for name, path in (("known", "known.mp4"), ("sparse", "pan.mp4")):
        assert bank("create", name).returncode == 0
        added = bank("add", name, str(folder / path))
        assert added.returncode == 0, added.stderr
    yield bank, scan
    db.close()


def jsonl(result: subprocess.CompletedProcess[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_bank_add_and_scan_take_fps(cli: tuple[Run, Run], folder: Path) -> None:
    """A copy that starts half a second later matches the video banked at every frame, frame for frame;
    at 1 frame/s (the default) its frames fall between the banked ones and it matches nothing."""
    bank, scan = cli
    assert bank("create", "dense").returncode == 0
    added = bank("add", "dense", str(folder / "pan.mp4"), "--fps", "10")
    assert (
        added.returncode == 0 and "500 video frames" in added.stderr
    )  # 100 frames, 4 crops each, added.stderr
    found = scan(str(folder / "pan-later.mp4"), "--format", "jsonl")
    assert found.returncode == 3, found.stderr
    rows = jsonl(found)
    assert {r["bank"] for r in rows if not r.get("near")} == {"dense"}
    (dense,) = [r for r in rows if r["bank"] == "dense"]
    assert dense["kind"] == "video" and dense["query_share"] == 100.0
    every = scan(str(folder / "pan-later.mp4"), "--format", "jsonl", "--fps", "10")
    (dense,) = [r for r in jsonl(every) if r["bank"] == "dense"]
    assert dense["query_share"] == 100.0  # all 95 frames of the copy were hashed and matched


def test_scan_prints_near_videos(cli: tuple[Run, Run], folder: Path) -> None:
    """Two frames of the known 12: under both shares, shown as near (not a match, exit 0)."""
    _, scan = cli
    result = scan(str(folder / "one-scene.mp4"), "--format", "jsonl")
    assert result.returncode == 0, result.stderr
    (row,) = jsonl(result)
    assert row["near"] is True and row["bank"] == "known" and row["kind"] == "video"
    assert row["time"] == pytest.approx(16.0, abs=0.5) and row["suppressed"] is False
    table = scan(str(folder / "one-scene.mp4"), "--format", "csv")
    assert "near" in table.stdout.splitlines()[0] and "True" in table.stdout.splitlines()[1]


def test_scan_refuses_vpdq_output(cli: tuple[Run, Run], folder: Path) -> None:
    _, scan = cli
    result = scan(str(folder / "known.mp4"), "--format", "vpdq")
    assert result.returncode == 2 and "hash VIDEO --format vpdq" in " ".join(result.stderr.split())


def test_a_video_is_one_item_and_one_match(cli: tuple[Run, Run], folder: Path) -> None:
    bank, scan = cli
    same = jsonl(scan(str(folder / "known.mp4"), "--format", "jsonl"))
    (row,) = [r for r in same if r["bank"] == "known"]  # its MD5, SHA-1 and SHA-256: one item matched
    assert row["kind"] == "file"
    exported = jsonl(bank("export", "known", "--format", "jsonl"))
    digests = [r for r in exported if r["signal_type"] in ("md5", "sha1", "sha256")]
    assert len(digests) == 3 and {r["item_id"] for r in exported} == {row["item_id"]}
    (shown,) = jsonl(bank("show", "known", "--format", "jsonl"))
    assert shown["entries"]["active"] == 3 and shown["variants"] == 12 * 5  # its digests; frames, crops


def test_vpdq_text_is_the_reference_format_with_the_frames_own_numbers(
    cli: tuple[Run, Run], folder: Path, tmp_path: Path
) -> None:
    """Meta's published hashes of a sample clip imported and exported again: every line as Meta's
    readers take it, the frames' own numbers kept (its frames of quality under 50 are left out, so
    renumbering would show), and the item found by the id the import reports or by its SHA-256."""
    bank, _ = cli
    text = (DATA / "reference" / "doorknob-hd-no-bar.txt").read_text()
    kept = [line for line in text.splitlines() if int(line.split(",")[1]) >= 50]
    assert bank("create", "partner").returncode == 0
    imported = bank("import-vpdq", "partner", str(DATA / "reference" / "doorknob-hd-no-bar.txt"))
    assert imported.returncode == 0, imported.stderr
    item = re.search(r"item (\d+)", imported.stderr)
    assert item is not None, imported.stderr
    exported = bank("export-vpdq", "partner", item.group(1))
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.splitlines() == kept  # same numbers, qualities, hashes and times
    sha256 = next(r["signal"] for r in jsonl(bank("export", "partner", "--format", "jsonl")))
    assert bank("export-vpdq", "partner", str(sha256)).stdout == exported.stdout
    missing = bank("export-vpdq", "partner", "not-a-video")
    assert missing.returncode == 1 and "no video" in missing.stderr
    hashed = cli_for_hash(folder)(str(folder / "known.mp4"), "--format", "vpdq")
    assert hashed.returncode == 0 and len(hashed.stdout.splitlines()) == 12
    assert all(REFERENCE_LINE.fullmatch(line) for line in hashed.stdout.splitlines()), hashed.stdout
    several = cli_for_hash(folder)(str(folder / "known.mp4"), str(folder / "pan.mp4"), "--format", "vpdq")
    assert several.returncode == 2 and several.stdout == ""


def cli_for_hash(folder: Path) -> Run:
    db = open_database(f"sqlite:///{folder / 'v.db'}")
    try:
        return cli_for(db, "hash")
    finally:
        db.close()


def test_frames_another_video_holds_still_count_for_this_one(db: Database) -> None:
    """Two videos sharing three scenes in one bank: each keeps all its frames (the shared hashes are
    stored once), so a copy of the second matches it with both shares at 100%, and disabling the first
    leaves the second whole."""
    create_bank(db, "shared")
    first = hash_bytes(encode_video(clip(KNOWN, 2.0)))
    second_video = encode_video(clip(KNOWN[:3], 2.0) + clip(OTHER[:3], 2.0))
    second = hash_bytes(second_video)
    add_outcomes(db, "shared", [HashOutcome("first.mp4", result=first)])
    report = add_outcomes(db, "shared", [HashOutcome("second.mp4", result=second)])
    assert report.video_frames == second.frame_count == 12
    copy = encode_video(clip(KNOWN[:3], 2.0) + clip(OTHER[:3], 2.0), size=(240, 180))

    def shares() -> dict[str, tuple[float | None, float | None]]:
        found = scan_bytes(Matcher.load(db, index_dir=False), copy)
        return {v.match.source_name: (v.query_share, v.item_share) for v in found.video}

    assert shares()["second.mp4"] == (100.0, 100.0)
    first_item = next(r["item_id"] for r in export_rows(db, "shared") if r["source_name"] == "first.mp4")
    set_entry_state(db, "shared", int(str(first_item)), EntryState.DISABLED, "withdrawn")
    assert shares() == {"second.mp4": (100.0, 100.0)}


@pytest.mark.parametrize("fmt", [ListFormat.CSV, ListFormat.JSONL, ListFormat.TXFILE])
def test_bank_export_carries_video_frames_and_imports_again(db: Database, fmt: ListFormat) -> None:
    import io

    create_bank(db, "videos")
    video = encode_video(clip(KNOWN, 2.0))
    add_outcomes(db, "videos", [HashOutcome("known.mp4", result=hash_bytes(video))])
    out = io.StringIO()
    write(export_rows(db, "videos"), out, fmt)
    assert "vpdq" in out.getvalue()
    create_bank(db, "copy")
    parsed = parse(io.StringIO(out.getvalue()), fmt)
    assert not parsed.errors and len(parsed.videos) == 1 and len(parsed.videos[0].frames) == 12
    report = import_rows(db, "copy", parsed, source_name="export")
    assert report.video_frames == 12 and not report.skipped
    found = scan_bytes(Matcher.load(db, index_dir=False), encode_video(clip(KNOWN, 2.0), size=(240, 180)))
    copies = [v for v in found.video if v.match.bank == "copy"]
    assert [v.kind for v in copies] == ["video"] and copies[0].item_share == 100.0


def test_a_video_reports_its_own_size() -> None:
    """Width and height are the video's (1280x720), never a reduced frame's (512x288 before)."""
    result = hash_bytes((DATA / "doorknob-hd-no-bar.mp4").read_bytes(), HashOptions())
    (row, *_) = records(HashOutcome("d.mp4", result=result), frames=True)
    assert (result.width, result.height) == (1280, 720)
    assert {(f.width, f.height) for f in result.frames} == {(1280, 720)}
    assert (row["width"], row["height"]) == (1280, 720)


def test_the_migration_lists_the_frames_stored_before(tmp_path: Path) -> None:
    """A bank written before frames were listed per video: 0018 lists each video's frames (numbered in
    time order, crops with their frame) and joins its MD5 and SHA-1 to it; an unrelated MD5 stays."""
    import sqlalchemy as sa
    from alembic import command

    from childshield.store.migrate import alembic_config

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0013")
        connection.exec_driver_sql(
            "INSERT INTO banks (id, name, kind, enabled, thresholds, description, policy, created_at, "
            "updated_at) VALUES (1, 'b', 'normal', 1, '{}', '', '{}', '2026-01-01', '2026-01-01')"
        )
        rows = [
            (1, "md5", "a" * 32, None, "", None, "v.mp4"),
            (2, "sha1", "b" * 40, None, "", None, "v.mp4"),
            (3, "sha256", "c" * 64, None, "", None, "v.mp4"),
            (4, "pdq", "1" * 64, 3, "frame@0.000", 90, "v.mp4"),
            (5, "pdq", "2" * 64, 3, "frame@1.000", 80, "v.mp4"),
            (6, "pdq", "3" * 64, 3, "frame@1.000|crop6@0.5,0.5", 80, "v.mp4"),
            (7, "md5", "d" * 32, None, "", None, "other.png"),
        ]
        for row in rows:
            connection.exec_driver_sql(
                "INSERT INTO entries (id, bank_id, signal_type, signal, parent_id, variant, quality, "
                "source_name, source, labels, added_at, added_by, state, state_reason, revision) VALUES "
                "(?, 1, ?, ?, ?, ?, ?, ?, 'file', '[]', '2026-01-01 00:00:00.123456', '', 'active', '', 0)",
                row,
            )
        command.upgrade(config, "head")
        frames = connection.exec_driver_sql(
            "SELECT item_id, entry_id, number, timestamp, quality, variant FROM video_frames ORDER BY id"
        ).all()
        parents = dict(connection.exec_driver_sql("SELECT id, parent_id FROM entries").all())
    assert [tuple(f) for f in frames] == [(3, 4, 0, 0.0, 90, ""), (3, 5, 1, 1.0, 80, ""),
                                          (3, 6, 1, 1.0, 80, "crop6@0.5,0.5")]  # fmt: skip
    assert parents[1] == parents[2] == 3 and parents[7] is None
