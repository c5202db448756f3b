"""Scanning: hash and match in one pass (CLI and API), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

import childshield
from childshield.banks import create_bank
from childshield.banks.entries import add_outcomes, import_rows
from childshield.banks.formats import parse_csv
from childshield.hashing.result import HashOutcome
from childshield.store.db import Database
from childshield.store.models import BankKind
from childshield.testing.corpus import encode, generated_photo


def make_known(db: Database, root: Path) -> list[Path]:
    root.mkdir()
    paths = []
    for k in range(3):
        path = root / f"known{k}.jpg"
        path.write_bytes(encode(generated_photo(500 + k, 480, 360), "JPEG", quality=92))
        paths.append(path)
    create_bank(db, "known")
    add_outcomes(db, "known", [HashOutcome(str(p), result=childshield.hash_file(p)) for p in paths])
    return paths


def test_scan_command_finds_copies_and_edits(db: Database, tmp_path: Path) -> None:
    known = make_known(db, tmp_path / "known")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "copy.jpg").write_bytes(known[0].read_bytes())  # exact copy
    edited = Image.open(known[1]).resize((320, 240))
    edited.save(inbox / "edited.jpg", quality=60)  # resized and recompressed: PDQ only
    (inbox / "unknown.png").write_bytes(encode(generated_photo(900, 300, 200), "PNG"))
    (inbox / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    env = {**os.environ, "CHILDSHIELD_DATABASE_URL": db.url}
    proc = subprocess.run(
        [sys.executable, "-m", "childshield.cli", "scan", str(inbox), "--format", "jsonl"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 3, proc.stderr  # matches win over errors
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    by_file: dict[str, list[dict]] = {}
    for row in rows:
        by_file.setdefault(Path(row["path"]).name, []).append(row)
    assert {r["signal_type"] for r in by_file["copy.jpg"]} == {"md5", "sha1", "sha256", "pdq"}
    assert [r["signal_type"] for r in by_file["edited.jpg"]] == ["pdq"]
    assert 0 < by_file["edited.jpg"][0]["distance"] <= 31
    assert by_file["edited.jpg"][0]["source_name"] == "known1.jpg"
    assert "unknown.png" not in by_file
    assert "error" in by_file["broken.jpg"][0]
    assert "4 files" in proc.stderr and "2 matched, 1 errors" in proc.stderr

    clean = tmp_path / "clean"
    clean.mkdir()
    (clean / "unknown.png").write_bytes(encode(generated_photo(901, 300, 200), "PNG"))
    proc = subprocess.run(
        [sys.executable, "-m", "childshield.cli", "scan", str(clean)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0 and proc.stdout == ""


def test_scan_and_match_api(db: Database, tmp_path: Path) -> None:
    known = make_known(db, tmp_path / "known")
    result = childshield.scan_bytes(known[2].read_bytes(), db_url=db.url)
    assert result.matched and {m.signal_type for m in result.matches} == {"md5", "sha1", "sha256", "pdq"}
    assert not childshield.scan_bytes(encode(generated_photo(902, 200, 200), "PNG"), db_url=db.url).matched
    hashed = childshield.hash_file(known[2])
    found = childshield.match_signal("pdq", hashed.pdq, quality=hashed.pdq_quality, db_url=db.url)
    assert [m.source_name for m in found.matches] == ["known2.jpg"]


def test_negative_bank_clears_a_scanned_file(db: Database, tmp_path: Path) -> None:
    known = make_known(db, tmp_path / "known")
    create_bank(db, "allow", kind=BankKind.NEGATIVE)
    hashed = childshield.hash_file(known[0])
    import_rows(db, "allow", parse_csv([f"pdq,{hashed.pdq},false-positive-1\n"]), source_name="allow.csv")
    edited = encode(np.asarray(Image.open(known[0]))[2:-2, 2:-2], "PNG")  # the same picture, other bytes
    result = childshield.scan_bytes(edited, db_url=db.url)
    assert not result.matched
    assert {m.signal_type for m in result.suppressed} == {"pdq"}
    exact = childshield.scan_bytes(known[0].read_bytes(), db_url=db.url)
    # an allow-listed PDQ never outweighs the file's exact cryptographic matches
    assert {m.signal_type for m in exact.matches} == {"md5", "sha1", "sha256"}
    assert {m.signal_type for m in exact.suppressed} == {"pdq"}
    other = childshield.scan_bytes(known[1].read_bytes(), db_url=db.url)
    assert other.matched  # only the allow-listed item is cleared
    assert np.all([m.bank == "known" for m in other.matches])


def test_a_rejected_mirrored_copy_never_allow_lists_the_original(db: Database, tmp_path: Path) -> None:
    """A mirrored copy matched through a query variant and was rejected: its PDQ and SHA-256 went to the
    allow-list.  The original known file, in the bank exactly, still matches (crypto and its plain PDQ)."""
    known = make_known(db, tmp_path / "known")
    mirror = encode(np.asarray(Image.open(known[1]))[:, ::-1], "JPEG", quality=92)
    seen = childshield.scan_bytes(mirror, db_url=db.url)
    assert seen.matched and all(m.query_variant for m in seen.matches)  # matched as a mirror
    create_bank(db, "false-matches", kind=BankKind.NEGATIVE)
    mirrored = childshield.hash_bytes(mirror)
    rows = f"pdq,{mirrored.pdq},rejected\nsha256,{mirrored.sha256},rejected\n"
    import_rows(db, "false-matches", parse_csv(rows.splitlines(keepends=True)), source_name="review")
    again = childshield.scan_bytes(mirror, db_url=db.url)
    assert not again.matched and again.suppressed  # the rejected copy is cleared, and shown as such
    original = childshield.scan_bytes(known[1].read_bytes(), db_url=db.url)
    assert original.matched
    assert {m.signal_type for m in original.matches} == {"md5", "sha1", "sha256", "pdq"}
    assert [m.query_variant for m in original.matches if m.signal_type == "pdq"] == [""]
    # the CLI shows the cleared matches too, marked as such (it used to drop them)
    (tmp_path / "mirror.jpg").write_bytes(mirror)
    env = {**os.environ, "CHILDSHIELD_DATABASE_URL": db.url}
    proc = subprocess.run(
        [sys.executable, "-m", "childshield.cli", "scan", str(tmp_path / "mirror.jpg"), "--format", "jsonl"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert rows and all(r["suppressed"] for r in rows) and {r["bank"] for r in rows} == {"known"}
    assert {r["allowed_by"]["bank"] for r in rows} == {"false-matches"}  # the entry that cleared each
    formats = ("csv", "table") if db.engine.dialect.name == "sqlite" else ()  # printing is the same on both
    for fmt in formats:  # every format shows them, marked, with the entry that cleared them
        shown = subprocess.run(
            [sys.executable, "-m", "childshield.cli", "scan", str(tmp_path / "mirror.jpg"), "--format", fmt],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        assert shown.returncode == 0, shown.stderr
        assert "false-matches entry" in shown.stdout and "known" in shown.stdout, (fmt, shown.stdout)
