"""The `childshield hash` command end to end, in a real subprocess."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import childshield
from childshield.signals import pdq
from childshield.testing.corpus import encode, generated_photo

FIELDS = ["path", "size_bytes", "md5", "sha1", "sha256", "pdq", "pdq_quality", "width", "height"]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "childshield.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("images")
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "a.jpg").write_bytes(encode(generated_photo(1, 640, 480), "JPEG", quality=90))
    (root / "b.png").write_bytes(encode(generated_photo(2, 300, 200), "PNG"))
    (root / "sub" / "c.webp").write_bytes(encode(generated_photo(3, 320, 240), "WEBP", quality=90))
    (root / "sub" / "deeper" / "no-extension").write_bytes(encode(generated_photo(4, 200, 200), "JPEG"))
    (root / "sub" / "notes.txt").write_text("not an image\n")
    frames = [Image.fromarray(generated_photo(10 + k, 120, 90)) for k in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=80)
    (root / "anim.gif").write_bytes(buf.getvalue())
    return root


def test_jsonl_has_every_field_and_matches_the_api(folder: Path) -> None:
    proc = run("hash", str(folder), "--format", "jsonl")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    names = [Path(r["path"]).name for r in rows]
    # Recursive, sorted, renamed images found by content, non-images skipped.
    assert names == ["a.jpg", "anim.gif", "b.png", "c.webp", "no-extension"]
    for row in rows:
        assert list(row)[: len(FIELDS)] == FIELDS
        api = childshield.hash_file(row["path"])
        assert (row["pdq"], row["pdq_quality"], row["sha256"], row["md5"], row["sha1"]) == (
            api.pdq,
            api.pdq_quality,
            api.sha256,
            api.md5,
            api.sha1,
        )
        assert len(row["pdq"]) == 64 and row["pdq"] == row["pdq"].lower()
        assert "error" not in row
    # Piped: no progress bar, no terminal control codes.
    assert "\x1b[" not in proc.stderr and "hashing" not in proc.stderr


def test_default_format_when_piped_is_jsonl(folder: Path) -> None:
    proc = run("hash", str(folder / "a.jpg"))
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["path"].endswith("a.jpg")


def test_csv(folder: Path) -> None:
    proc = run("hash", str(folder), "--format", "csv", "--dihedral")
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert len(rows) == 5
    assert set(FIELDS) <= set(rows[0])
    a = next(r for r in rows if r["path"].endswith("a.jpg"))
    api = childshield.hash_file(a["path"], childshield.HashOptions(dihedral=True))
    assert a["pdq"] == api.pdq and int(a["pdq_quality"]) == api.pdq_quality
    assert api.pdq_dihedral is not None
    assert a["pdq_rotate90"] == api.pdq_dihedral["rotate90"]
    assert a["error"] == ""


def test_dihedral_jsonl(folder: Path) -> None:
    proc = run("hash", str(folder / "b.png"), "--format", "jsonl", "--dihedral")
    row = json.loads(proc.stdout)
    variants = row["pdq_dihedral"]
    assert list(variants) == [d.value for d in pdq.Dihedral]
    assert variants["original"] == row["pdq"]
    rotated = np.ascontiguousarray(np.rot90(np.asarray(Image.open(folder / "b.png").convert("RGB"))))
    assert pdq.hamming(pdq.hash_rgb(rotated).hex, variants["rotate90"]) <= 40


def test_frames_emits_one_row_per_frame(folder: Path) -> None:
    proc = run("hash", str(folder / "anim.gif"), "--format", "jsonl", "--frames")
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["frame"] for r in rows] == [0, 1, 2]
    assert len({r["pdq"] for r in rows}) == 3
    assert len({r["sha256"] for r in rows}) == 1


def test_table_output(folder: Path) -> None:
    proc = run("hash", str(folder), "--format", "table")
    assert proc.returncode == 0
    assert "a.jpg" in proc.stdout and "pdq" in proc.stdout and "640x480" in proc.stdout


def test_workers_give_identical_output(folder: Path) -> None:
    one = run("hash", str(folder), "--format", "jsonl", "--workers", "1")
    two = run("hash", str(folder), "--format", "jsonl", "--workers", "2")
    assert one.returncode == two.returncode == 0
    assert one.stdout == two.stdout


def test_progress_bar_when_asked(folder: Path) -> None:
    proc = run("hash", str(folder), "--format", "jsonl", "--progress")
    assert proc.returncode == 0
    assert "hashed 5 files" in proc.stderr and "1 skipped" in proc.stderr


def test_explicit_non_image_is_an_error_and_exit_1(folder: Path) -> None:
    proc = run("hash", str(folder / "a.jpg"), str(folder / "sub" / "notes.txt"), "--format", "jsonl")
    assert proc.returncode == 1
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert rows[0]["pdq"] and "error" not in rows[0]
    assert rows[1] == {
        "path": str(folder / "sub" / "notes.txt"),
        "size_bytes": 13,
        "error": "not a recognised image format",
    }


def test_exact_flag(folder: Path) -> None:
    proc = run("hash", str(folder / "a.jpg"), "--exact")
    from threatexchange.signal_type.pdq.pdq_hasher import pdq_from_file

    assert json.loads(proc.stdout)["pdq"] == pdq_from_file(folder / "a.jpg")[0]


def test_version_and_help() -> None:
    assert run("--version").stdout.strip() == f"childshield {childshield.__version__}"
    proc = run("hash", "--help")
    assert proc.returncode == 0 and "--workers" in proc.stdout


def test_size_options_and_their_defaults() -> None:
    from childshield.cli_hash import parse_size
    from childshield.hashing.batch import DEFAULT_MEMORY_LIMIT
    from childshield.hashing.service import DEFAULT_MAX_BYTES

    assert parse_size("1GiB") == DEFAULT_MAX_BYTES
    assert parse_size("4GiB") == DEFAULT_MEMORY_LIMIT
    assert parse_size("512M") == 512_000_000
    assert parse_size("2k") == 2000
    assert parse_size("123") == 123
    assert run("hash", ".", "--max-bytes", "lots").returncode == 2
