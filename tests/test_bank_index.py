"""The matcher's PDQ index: saved beside the database, caught up from the revision counter, exact."""

from __future__ import annotations

import io
import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from childshield.banks import create_bank, delete_bank, update_bank
from childshield.banks.entries import export_rows, import_rows, set_entry_state
from childshield.banks.formats import parse_csv
from childshield.matching import Matcher, bank_index
from childshield.matching.bank_index import BankIndex, default_index_dir
from childshield.store.db import Database, open_database
from childshield.store.models import EntryState
from childshield.store.revision import read_state


@pytest.fixture(autouse=True)
def _own_data_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL snapshots go under the data folder: keep them in this test's folder."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.delenv("CHILDSHIELD_INDEX_DIR", raising=False)


def rows(*lines: str) -> object:
    return parse_csv(io.StringIO("\n".join(lines) + "\n"))


def flip(hex_value: str, bits: list[int] | np.ndarray) -> str:
    value = int(hex_value, 16)
    for b in bits:
        value ^= 1 << int(b)
    return f"{value:064x}"


BASE = "0f" * 8 + "3c" * 8 + "a5" * 16


def entry_id(db: Database, bank: str, external_id: str) -> int:
    return next(int(r["entry_id"]) for r in export_rows(db, bank) if r["external_id"] == external_id)


def no_build(monkeypatch: pytest.MonkeyPatch) -> None:
    """From here on, reading every entry again (a full rebuild) fails the test."""

    def refuse(cls: type, db: Database) -> BankIndex:
        raise AssertionError("the index was rebuilt from the database")

    monkeypatch.setattr(BankIndex, "build", classmethod(refuse))


def test_saved_beside_the_database_and_caught_up_without_rebuild(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_bank(db, "known")
    import_rows(db, "known", rows(f"pdq,{BASE},first"), source_name="a.csv")
    Matcher.load(db)
    folder = default_index_dir(db)
    assert folder is not None and (folder / "current").is_file()
    if db.url.startswith("sqlite"):
        assert folder.name == "test.db.index" and folder.parent == Path(db.engine.url.database or "").parent

    no_build(monkeypatch)
    near = flip(BASE, [3, 77, 200])
    import_rows(db, "known", rows(f"pdq,{near},second"), source_name="b.csv")
    matcher = Matcher.load(db)  # the snapshot, plus one entry read back
    found = matcher.match("pdq", BASE)
    assert [(m.external_id, m.distance) for m in found.matches] == [("first", 0), ("second", 3)]
    assert matcher.index.revision == read_state_of(db)


def read_state_of(db: Database) -> int:
    with db.session() as session:
        return read_state(session).revision


def test_disabling_stops_matching_at_once_and_refresh_flips_the_item(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_bank(db, "known")
    import_rows(db, "known", rows(f"pdq,{BASE},x", "md5," + "ab" * 16 + ",y"), source_name="a.csv")
    matcher = Matcher.load(db)
    no_build(monkeypatch)
    pdq_entry, md5_entry = entry_id(db, "known", "x"), entry_id(db, "known", "y")
    set_entry_state(db, "known", pdq_entry, EntryState.DISABLED, "false positive")
    set_entry_state(db, "known", md5_entry, EntryState.DISPUTED, "under review")
    # No refresh yet: details come from the database at match time, so neither matches.
    assert not matcher.match("pdq", BASE).matched
    assert not matcher.match("md5", "ab" * 16).matched
    assert matcher.refresh()
    item = matcher.index._items_of(np.array([pdq_entry]))[0]
    assert matcher.index.mih.alive[item] == 0
    assert not matcher.refresh()  # nothing new
    set_entry_state(db, "known", pdq_entry, EntryState.ACTIVE)
    assert matcher.refresh() and matcher.index.mih.alive[item] == 1
    assert matcher.match("pdq", BASE).matched
    # A fresh process sees the same from the snapshot plus catch-up.
    assert Matcher.load(db).match("pdq", BASE).matched


def test_bank_settings_apply_on_refresh(db: Database) -> None:
    far = flip(BASE, range(0, 200, 7))  # 29 bits away
    create_bank(db, "known")
    import_rows(db, "known", rows(f"pdq,{far},far"), source_name="a.csv")
    matcher = Matcher.load(db)
    assert matcher.match("pdq", BASE).matches[0].distance == 29
    update_bank(db, "known", thresholds={"pdq": 20})
    assert matcher.refresh() and not matcher.match("pdq", BASE).matched
    update_bank(db, "known", thresholds={"pdq": 31}, enabled=False)
    assert matcher.refresh() and not matcher.match("pdq", BASE).matched
    update_bank(db, "known", enabled=True)
    assert matcher.refresh() and matcher.match("pdq", BASE).matched


def test_deleting_a_bank_rebuilds_and_ids_are_never_confused(db: Database) -> None:
    create_bank(db, "old")
    import_rows(db, "old", rows(f"pdq,{BASE},old-entry"), source_name="a.csv")
    matcher = Matcher.load(db)
    assert matcher.match("pdq", BASE).matched
    delete_bank(db, "old")
    # SQLite may hand the freed bank and entry ids out again: the snapshot must not revive old items.
    create_bank(db, "new", thresholds={"pdq": 5})
    other = flip(BASE, range(100, 140))
    import_rows(db, "new", rows(f"pdq,{other},new-entry"), source_name="b.csv")
    # Before any refresh the old item is still in memory and its entry id may now be the new entry's:
    # the database row's signal is checked, so it is not reported as a match of the new entry.
    assert not matcher.match("pdq", BASE).matched
    assert matcher.refresh()
    assert not matcher.match("pdq", BASE).matched
    assert [m.external_id for m in matcher.match("pdq", other).matches] == ["new-entry"]
    again = Matcher.load(db)
    assert len(again.index) == 1
    assert not again.match("pdq", BASE).matched


def test_damaged_or_foreign_snapshots_are_rebuilt(db: Database, tmp_path: Path) -> None:
    create_bank(db, "known")
    import_rows(db, "known", rows(f"pdq,{BASE},x"), source_name="a.csv")
    Matcher.load(db)
    folder = default_index_dir(db)
    assert folder is not None
    snapshot = folder / (folder / "current").read_text()
    # Damaged: a table cut short.
    ids = snapshot / "ids.npy"
    ids.write_bytes(ids.read_bytes()[:100])
    assert Matcher.load(db).match("pdq", BASE).matched
    # Garbage pointer.
    (folder / "current").write_text("../../etc")
    assert Matcher.load(db).match("pdq", BASE).matched
    # Another database's snapshot (same shape, other entries): refused by instance, rebuilt.
    other = open_database(f"sqlite:///{tmp_path / 'other.db'}")
    try:
        create_bank(other, "known")
        import_rows(other, "known", rows(f"pdq,{flip(BASE, range(64))},other"), source_name="o.csv")
        Matcher.load(other)
        other_folder = default_index_dir(other)
        assert other_folder is not None
        shutil.rmtree(folder)
        shutil.copytree(other_folder, folder)
        found = Matcher.load(db).match("pdq", BASE)
        assert [m.external_id for m in found.matches] == ["x"]
    finally:
        other.close()


def test_read_only_or_memory_only_index_still_matches(db: Database, tmp_path: Path) -> None:
    create_bank(db, "known")
    import_rows(db, "known", rows(f"pdq,{BASE},x"), source_name="a.csv")
    assert Matcher.load(db, index_dir=False).match("pdq", BASE).matched
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("")
    assert Matcher.load(db, index_dir=blocked / "index").match("pdq", BASE).matched  # cannot save: fine


def test_many_changes_are_saved_for_the_next_open(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bank_index, "SAVE_AFTER", 5)
    create_bank(db, "known")
    import_rows(db, "known", rows(f"pdq,{BASE},x"), source_name="a.csv")
    Matcher.load(db)
    folder = default_index_dir(db)
    assert folder is not None
    rng = np.random.default_rng(5)
    import_rows(db, "known", rows(*(f"pdq,{rng.bytes(32).hex()}" for _ in range(10))), source_name="b")
    matcher = Matcher.load(db)
    meta = json.loads((folder / (folder / "current").read_text() / "meta.json").read_text())
    assert meta["revision"] == matcher.index.revision and meta["items"] == 11
    assert len(list(folder.glob("snap-*"))) == 1  # the old snapshot is gone


def test_exact_against_brute_force_through_snapshot_catch_up_and_states(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Random and clustered entries in banks with different thresholds, some added after the snapshot,
    some disabled: every entry within its bank's threshold is found, with its distance, and no other."""
    rng = np.random.default_rng(11)
    centres = [rng.bytes(32).hex() for _ in range(4)]

    def near(centre: str, most: int) -> str:
        return flip(centre, rng.choice(256, int(rng.integers(0, most)), replace=False))

    def some(n: int) -> list[str]:
        out = [rng.bytes(32).hex() for _ in range(n // 2)]
        out += [
            flip(centres[k % 4], rng.choice(256, int(rng.integers(0, 45)), replace=False)) for k in range(n)
        ]
        return out

    thresholds = {"a": 31, "b": 20, "c": 45}
    for name, t in thresholds.items():
        create_bank(db, name, thresholds={"pdq": t})
    for name in thresholds:
        import_rows(db, name, rows(*(f"pdq,{h},{name}-{h[:8]}" for h in some(300))), source_name="1")
    Matcher.load(db)
    no_build(monkeypatch)
    for name in thresholds:  # after the snapshot: caught up, searched as added items
        import_rows(db, name, rows(*(f"pdq,{h},{name}-{h[:8]}" for h in some(60))), source_name="2")
    for name in thresholds:
        for r in export_rows(db, name)[::17]:
            set_entry_state(db, name, int(r["entry_id"]), EntryState.DISABLED, "test")
    matcher = Matcher.load(db)
    active = [(name, r) for name in thresholds for r in export_rows(db, name)]
    queries = [
        flip(centres[k % 4], rng.choice(256, int(rng.integers(0, 30)), replace=False)) for k in range(40)
    ]
    queries += [flip(active[int(rng.integers(len(active)))][1]["signal"], [int(rng.integers(256))])]
    results = matcher.match_many([("pdq", q, None) for q in queries])
    for query, result in zip(queries, results, strict=True):
        want = sorted(
            (r["entry_id"], (int(r["signal"], 16) ^ int(query, 16)).bit_count())
            for name, r in active
            if (int(r["signal"], 16) ^ int(query, 16)).bit_count() <= thresholds[name]
        )
        assert sorted((m.entry_id, m.distance) for m in result.matches) == want


def test_concurrent_imports_are_all_caught_up(db: Database) -> None:
    """Writers queue on the revision counter, so a snapshot never skips a transaction committed late."""
    create_bank(db, "known")
    Matcher.load(db)
    rng = np.random.default_rng(2)
    batches = [[rng.bytes(32).hex() for _ in range(50)] for _ in range(6)]
    errors: list[BaseException] = []

    def work(hashes: list[str]) -> None:
        try:
            import_rows(db, "known", rows(*(f"pdq,{h}" for h in hashes)), source_name="t")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(b,)) for b in batches]
    matcher = Matcher.load(db)
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    matcher.refresh()
    assert len(matcher.index) == 300
    results = matcher.match_many([("pdq", h, None) for b in batches for h in b])
    assert all(r.matched for r in results)
