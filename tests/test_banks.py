"""Banks: storage, settings and the `bank` commands, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import inspect, select

from childshield.banks import (
    BankExists,
    BankNotFound,
    InvalidBankSetting,
    create_bank,
    delete_bank,
    get_bank,
    list_banks,
    rename_bank,
    update_bank,
)
from childshield.banks.entries import export_rows
from childshield.store.db import Database, open_database
from childshield.store.migrate import current_revision, head_revision
from childshield.store.models import Bank, BankKind, Entry, EntryState, SignalType


def test_schema_is_migrated_to_head(db: Database) -> None:
    assert current_revision(db.engine) == head_revision()
    tables = set(inspect(db.engine).get_table_names())
    assert {"banks", "entries", "alembic_version"} <= tables


def test_create_list_show(db: Database) -> None:
    a = create_bank(db, "known-a")
    assert a.kind is BankKind.NORMAL and a.enabled and a.thresholds == {"pdq": 31}
    create_bank(
        db, "allow", kind=BankKind.NEGATIVE, thresholds={"pdq": 20}, description="known false matches"
    )
    names = [b.name for b in list_banks(db)]
    assert names == ["allow", "known-a"]
    allow = get_bank(db, "allow")
    assert allow.kind is BankKind.NEGATIVE and allow.thresholds == {"pdq": 20}
    assert allow.description == "known false matches"
    assert allow.entries == {"active": 0, "disputed": 0, "disabled": 0}


def test_names_are_unique_and_validated(db: Database) -> None:
    create_bank(db, "known-a")
    with pytest.raises(BankExists):
        create_bank(db, "known-a")
    for bad in ["", "-x", "a b", "a/b", "x" * 101, "ünï"]:
        with pytest.raises(InvalidBankSetting):
            create_bank(db, bad)
    assert [b.name for b in list_banks(db)] == ["known-a"]  # nothing half-created


def test_thresholds_are_validated(db: Database) -> None:
    with pytest.raises(InvalidBankSetting, match="pdq threshold"):
        create_bank(db, "b", thresholds={"pdq": 300})
    with pytest.raises(InvalidBankSetting, match="md5 threshold"):
        create_bank(db, "b", thresholds={"md5": 3})
    with pytest.raises(InvalidBankSetting, match="unknown signal type"):
        create_bank(db, "b", thresholds={"phash": 3})
    with pytest.raises(InvalidBankSetting):
        create_bank(db, "b", thresholds={"pdq": True})
    assert list_banks(db) == []


def test_update_merges_settings(db: Database) -> None:
    create_bank(db, "known-a")
    info = update_bank(db, "known-a", enabled=False, thresholds={"pdq": 24}, description="x")
    assert not info.enabled and info.thresholds == {"pdq": 24} and info.description == "x"
    info = update_bank(db, "known-a", kind=BankKind.NEGATIVE)
    assert info.kind is BankKind.NEGATIVE and info.thresholds == {"pdq": 24} and not info.enabled
    assert info.updated_at >= info.created_at
    with pytest.raises(BankNotFound):
        update_bank(db, "nope", enabled=True)


def test_rename_keeps_entries_and_delete_cascades(db: Database) -> None:
    created = create_bank(db, "known-a")
    with db.session() as session:
        for k in range(3):
            session.add(Entry(bank_id=created.id, signal_type=SignalType.MD5, signal=f"{k:032x}"))
        session.add(
            Entry(bank_id=created.id, signal_type=SignalType.MD5, signal="f" * 32, state=EntryState.DISABLED)
        )
    create_bank(db, "other")
    with pytest.raises(BankExists):
        rename_bank(db, "known-a", "other")
    renamed = rename_bank(db, "known-a", "known-b")
    assert renamed.id == created.id
    assert renamed.entries == {"active": 3, "disputed": 0, "disabled": 1}
    assert delete_bank(db, "known-b") == 4
    with db.session() as session:
        assert session.scalars(select(Entry)).all() == []
        assert [b.name for b in session.scalars(select(Bank))] == ["other"]
    with pytest.raises(BankNotFound):
        delete_bank(db, "known-b")


def test_one_signal_per_bank(db: Database) -> None:
    """The unique key that makes imports re-runnable without duplicates."""
    from sqlalchemy.exc import IntegrityError

    bank = create_bank(db, "known-a")
    with db.session() as session:
        session.add(Entry(bank_id=bank.id, signal_type=SignalType.SHA256, signal="a" * 64))
    with pytest.raises(IntegrityError), db.session() as session:
        session.add(Entry(bank_id=bank.id, signal_type=SignalType.SHA256, signal="a" * 64))
    other = create_bank(db, "known-b")
    with db.session() as session:  # the same signal may sit in another bank
        session.add(Entry(bank_id=other.id, signal_type=SignalType.SHA256, signal="a" * 64))


def test_sqlite_uses_wal_and_foreign_keys(tmp_path: Path) -> None:
    path = tmp_path / "wal.db"
    database = open_database(f"sqlite:///{path}")
    create_bank(database, "known-a")
    database.close()
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    database = open_database(f"sqlite:///{path}")  # re-open: already at head, data kept
    assert [b.name for b in list_banks(database)] == ["known-a"]
    with database.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    database.close()


def test_default_location_and_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from childshield.store.db import default_database_url

    monkeypatch.delenv("CHILDSHIELD_DATABASE_URL", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_database_url() == f"sqlite:///{tmp_path / 'data' / 'childshield' / 'childshield.db'}"
    monkeypatch.setenv("CHILDSHIELD_DATABASE_URL", "postgresql://u@h/db")
    assert default_database_url() == "postgresql://u@h/db"


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "childshield.cli", *args], capture_output=True, text=True, timeout=120, env=env
    )


def test_bank_commands(db: Database) -> None:
    import os

    env = {**os.environ, "CHILDSHIELD_DATABASE_URL": db.url}
    made = cli("bank", "create", "known-a", "--pdq-threshold", "28", "--format", "jsonl", env=env)
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["thresholds"] == {"pdq": 28}
    assert cli("bank", "create", "allow", "--negative", env=env).returncode == 0
    again = cli("bank", "create", "known-a", env=env)
    assert again.returncode == 1 and "already exists" in again.stderr and "Traceback" not in again.stderr
    rows = [json.loads(line) for line in cli("bank", "list", "-f", "jsonl", env=env).stdout.splitlines()]
    assert [(r["name"], r["kind"]) for r in rows] == [("allow", "negative"), ("known-a", "normal")]
    bad = cli("bank", "set", "known-a", "--pdq-threshold", "300", env=env)
    assert bad.returncode == 1 and "0 to 256" in bad.stderr
    assert cli("bank", "set", "known-a", "--disable", env=env).returncode == 0
    assert get_bank(db, "known-a").enabled is False
    assert cli("bank", "rename", "known-a", "known-b", env=env).returncode == 0
    shown = cli("bank", "show", "known-b", "-f", "csv", env=env)
    assert shown.stdout.splitlines()[1].startswith("known-b,normal,False,28,")
    refused = cli("bank", "delete", "allow", env=env)  # not interactive, no --yes
    assert refused.returncode == 2 and get_bank(db, "allow")
    assert cli("bank", "delete", "allow", "--yes", env=env).returncode == 0
    missing = cli("bank", "show", "allow", env=env)
    assert missing.returncode == 1 and "no bank named 'allow'" in missing.stderr


def test_unreachable_database_is_a_clear_error() -> None:
    import os

    env = {**os.environ, "CHILDSHIELD_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"}
    proc = cli("bank", "list", env=env)
    assert proc.returncode == 1
    assert "cannot open the database" in proc.stderr and "Traceback" not in proc.stderr


def test_a_failed_migration_leaves_the_database_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite: the whole upgrade is one transaction, so a crash or error half-way (here: in the last
    migration, after an earlier one rebuilt the entries table) changes nothing, and a later open
    finishes the job with the data intact."""
    from alembic import command
    from sqlalchemy import text

    from childshield.store import migrate
    from childshield.store.db import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    config = migrate.alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0002")
        connection.execute(
            text(
                "INSERT INTO banks (id, name, kind, enabled, thresholds, description, created_at, updated_at)"
                " VALUES (1, 'known', 'normal', 1, '{\"pdq\": 31}', '', '2026-01-01', '2026-01-01')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO entries (bank_id, signal_type, signal, source, source_name, labels, added_at,"
                " added_by, state, state_reason) VALUES (1, 'md5', :s, 'import', 'x', '[]', '2026-01-01',"
                " '', 'active', '')"
            ),
            [{"s": f"{k:032x}"} for k in range(50)],
        )
    from alembic.operations import Operations

    create_table = Operations.create_table

    def boom(self: Operations, name: str, *columns: object, **kw: object) -> object:
        if name == "match_tallies":  # the last migration, after 0003 rebuilt the entries table
            raise RuntimeError("power cut")
        return create_table(self, name, *columns, **kw)

    monkeypatch.setattr(Operations, "create_table", boom)
    with pytest.raises(RuntimeError, match="power cut"):
        migrate.upgrade(engine)
    assert migrate.current_revision(engine) == "0002"
    tables = set(inspect(engine).get_table_names())
    assert not any(t.startswith("_alembic_tmp") for t in tables)
    assert "parent_id" not in {c["name"] for c in inspect(engine).get_columns("entries")}
    monkeypatch.undo()
    engine.dispose()
    db = open_database(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        assert migrate.current_revision(db.engine) == migrate.head_revision()
        assert len(export_rows(db, "known")) == 50
    finally:
        db.close()
