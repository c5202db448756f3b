"""A mistyped database is refused, never created empty and scanned clean; `postgres://` is PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from childshield.store.db import DatabaseMissing, open_database
from childshield.testing.corpus import encode, generated_photo
from db_fixtures import ADMIN_URL, _postgres_admin


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k != "CHILDSHIELD_DATABASE_URL"} | (env or {})
    return subprocess.run(
        [sys.executable, "-m", "childshield.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=full,
    )


def test_a_mistyped_database_is_refused_not_created(tmp_path: Path) -> None:
    image = tmp_path / "a.png"
    image.write_bytes(encode(generated_photo(5, 200, 150), "PNG"))
    real = tmp_path / "childshield.db"
    assert _cli("bank", "create", "known", "--db", f"sqlite:///{real}").returncode == 0  # starts one
    assert _cli("bank", "add", "known", str(image), "--db", f"sqlite:///{real}").returncode == 0
    typo = tmp_path / "typo" / "childshiled.db"
    for command in (["scan", str(image)], ["match", "--md5", "0" * 32], ["bank", "list"]):
        done = _cli(*command, "--db", f"sqlite:///{typo}")
        assert done.returncode == 1, done.stderr
        assert f"there is no database at {typo}" in done.stderr and "Traceback" not in done.stderr
    assert not typo.parent.exists()  # not even the folder
    found = _cli("scan", str(image), "--db", f"sqlite:///{real}", "--format", "jsonl")
    assert found.returncode == 3 and json.loads(found.stdout.splitlines()[0])["bank"] == "known"
    with pytest.raises(DatabaseMissing):
        open_database(f"sqlite:///{typo}", create=False)


def test_an_explicit_flag_creates_and_an_empty_database_warns(tmp_path: Path) -> None:
    image = tmp_path / "a.png"
    image.write_bytes(encode(generated_photo(6, 200, 150), "PNG"))
    fresh = tmp_path / "new" / "c.db"
    done = _cli("--create-db", "scan", str(image), "--db", f"sqlite:///{fresh}")
    assert done.returncode == 0 and fresh.exists()
    assert "no bank is enabled" in done.stderr  # an empty database never reads as "all clean" in silence
    env = {"CHILDSHIELD_CREATE_DB": "1"}
    other = tmp_path / "other.db"
    assert _cli("match", "--md5", "0" * 32, "--db", f"sqlite:///{other}", env=env).returncode == 0
    assert other.exists()


def test_match_stdin_exits_3_when_something_matched_even_if_a_line_failed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    image = tmp_path / "a.png"
    image.write_bytes(encode(generated_photo(7, 200, 150), "PNG"))
    assert _cli("bank", "create", "known", "--db", url).returncode == 0
    assert _cli("bank", "add", "known", str(image), "--db", url).returncode == 0
    hashed = json.loads(_cli("hash", str(image), "--format", "jsonl").stdout)
    lines = json.dumps({"md5": hashed["md5"]}) + "\nnot json\n"
    done = subprocess.run(
        [sys.executable, "-m", "childshield.cli", "match", "--stdin", "--db", url],
        input=lines,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 3, done.stderr
    rows = [json.loads(x) for x in done.stdout.splitlines()]
    assert rows[0]["matched"] is True and "error" in rows[1]


def test_postgres_scheme_is_postgresql() -> None:
    admin = _postgres_admin()
    if admin is None:
        pytest.skip(f"PostgreSQL not reachable at {ADMIN_URL} (set CHILDSHIELD_TEST_POSTGRES_URL)")
    admin.close()  # type: ignore[attr-defined]
    url = make_url(ADMIN_URL).render_as_string(hide_password=False).replace("postgresql://", "postgres://", 1)
    db = open_database(url, migrate=False)
    try:
        with db.engine.connect() as connection:
            assert connection.execute(text("SELECT 1")).scalar() == 1
        assert db.engine.dialect.name == "postgresql"
    finally:
        db.close()
