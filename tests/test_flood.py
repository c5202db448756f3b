"""Flood protection: an item that suddenly matches far more than usual is flagged, or quarantined."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from childshield.banks import create_bank
from childshield.banks.entries import export_rows, import_rows
from childshield.banks.formats import parse_csv
from childshield.matching import Matcher
from childshield.matching.flood import BASELINE_HOURS, FloodGuard
from childshield.store.db import Database
from childshield.store.models import EntryState
from childshield.testing.corpus import encode, generated_photo
from cli_runner import cli_for

PDQ = "f" * 16 + "0" * 16 + "a5" * 16
HOUR = 3600.0
NOW = 1_900_000_000.0


@pytest.fixture(autouse=True)
def _own_data_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))


def bank_with_item(db: Database, **policy: object) -> Matcher:
    create_bank(db, "known", policy=policy)
    import_rows(db, "known", parse_csv(io.StringIO(f"pdq,{PDQ},x\n")), source_name="a.csv")
    return Matcher.load(db)


def hit(matcher: Matcher, guard: FloodGuard, times: int) -> None:
    for _ in range(times):
        guard.record(matcher.match("pdq", PDQ).matches)


def test_a_surge_is_flagged_once_and_the_item_keeps_matching(db: Database) -> None:
    matcher = bank_with_item(db, flood_limit=5)
    guard = FloodGuard(db, clock=lambda: NOW)
    hit(matcher, guard, 4)
    assert guard.flush() == []
    hit(matcher, guard, 2)
    floods = guard.flush()
    assert [(f.bank, f.matches_this_hour, f.quarantined) for f in floods] == [("known", 6, False)]
    assert "flagged" in floods[0].describe()
    hit(matcher, guard, 3)
    assert guard.flush() == []  # reported once an hour
    assert matcher.match("pdq", PDQ).matched  # flagged, not switched off (the default)


def test_counts_are_shared_between_processes_and_judged_against_the_usual_rate(db: Database) -> None:
    matcher = bank_with_item(db, flood_limit=5, flood_factor=10)
    # A busy item: 2 matches an hour on average over the week, recorded by other guards (processes).
    for h in (1, 30, BASELINE_HOURS):
        past = FloodGuard(db, clock=lambda h=h: NOW - h * HOUR)
        hit(matcher, past, 2 * BASELINE_HOURS // 3)
        past.flush()
    too_old = FloodGuard(db, clock=lambda: NOW - (BASELINE_HOURS + 1) * HOUR)
    hit(matcher, too_old, 500)  # outside the week: does not count
    too_old.flush()
    guard = FloodGuard(db, clock=lambda: NOW)
    hit(matcher, guard, 15)  # over the limit, but under 10 x its usual 2/h
    assert guard.flush() == []
    other = FloodGuard(db, clock=lambda: NOW)  # another process adds to the same hour
    hit(matcher, other, 6)
    floods = other.flush()
    assert [(f.matches_this_hour, round(f.usual_per_hour)) for f in floods] == [(21, 2)]


def test_quarantine_disputes_the_item_and_it_stops_matching_at_once(db: Database) -> None:
    matcher = bank_with_item(db, flood_limit=3, flood_quarantine=True)
    guard = FloodGuard(db, clock=lambda: NOW)
    hit(matcher, guard, 3)
    floods = guard.flush()
    assert floods and floods[0].quarantined
    assert not matcher.match("pdq", PDQ).matched  # no refresh needed
    (row,) = export_rows(db, "known", states=(EntryState.DISPUTED,))
    assert row["external_id"] == "x"


def test_scan_reports_and_quarantines_a_flood(db: Database, tmp_path: Path) -> None:
    cli = cli_for(db)

    data = encode(generated_photo(5, 320, 240), "JPEG", quality=90)
    (tmp_path / "item.jpg").write_bytes(data)
    made = cli("bank", "create", "known", "--policy", "flood_limit=3", "--policy", "flood_quarantine=yes")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["policy"]["flood_limit"] == 3
    assert cli("bank", "add", "known", str(tmp_path / "item.jpg")).returncode == 0
    copies = tmp_path / "copies"
    copies.mkdir()
    for k in range(4):  # byte-distinct copies: a JPEG comment each
        note = f"copy {k}".encode()
        comment = b"\xff\xfe" + (len(note) + 2).to_bytes(2, "big") + note
        (copies / f"c{k}.jpg").write_bytes(data[:2] + comment + data[2:])
    scan = cli("scan", str(copies), "--format", "jsonl")
    assert scan.returncode == 3
    assert "flood:" in scan.stderr and "quarantined" in scan.stderr
    assert cli("bank", "set", "known", "--policy", "flood_limit=banana").returncode != 0
    rows = export_rows(db, "known", states=(EntryState.ACTIVE, EntryState.DISPUTED))
    assert {(r["signal_type"], r["state"]) for r in rows if r["signal_type"] == "pdq"} == {
        ("pdq", "disputed")
    }
