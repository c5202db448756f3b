"""A review rejection records which kind of match it rejected, and its allow-list entries clear only that
kind (issue 16.1): a mirrored copy matched through a query variant and rejected in review never clears
the original nor a plain near copy of it, while the same mirrored copy stays cleared.  Suppressed matches
show in every output: the API (with the entry that cleared each), the review page, ``match``."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from fastapi import FastAPI
from PIL import Image
from sqlalchemy import select

from childshield.banks.entries import import_rows
from childshield.banks.formats import parse_csv
from childshield.banks.service import create_bank
from childshield.hashing.service import first_picture, hash_bytes
from childshield.matching.kinds import MatchKind
from childshield.matching.matcher import Matcher
from childshield.review.queue import settled_items
from childshield.store.db import Database, open_database
from childshield.store.models import Bank, BankKind, Decision, Entry, ReviewState
from childshield.stream.watch import Alert, Watch
from childshield.testing.corpus import encode, generated_photo
from childshield.web.app import create_app
from childshield.web.settings import ServiceSettings
from cli_runner import cli_for
from review_helpers import auth, bank_with, browser, people, png, post_verdict, queued, scan, sign_in


@pytest.fixture(autouse=True)
def _own_data_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))


@pytest.fixture(scope="module")
def known() -> np.ndarray:
    return generated_photo(711, 640, 480)


def service(db: Database, tmp_path: Path) -> tuple[FastAPI, dict[str, str]]:
    keys = people(db)
    conf = ServiceSettings(
        database_url=db.url, refresh_seconds=0, media_key_file=str(tmp_path / "keys" / "media.keys")
    )
    return create_app(conf), keys


def false_matches(db: Database) -> list[Entry]:
    with db.session() as session:
        return list(
            session.scalars(
                select(Entry).join(Bank, Bank.id == Entry.bank_id).where(Bank.name == "false-matches")
            ).all()
        )


def test_a_rejected_mirrored_copy_clears_only_mirrored_matches(
    db: Database, tmp_path: Path, known: np.ndarray
) -> None:
    app, keys = service(db, tmp_path)
    bank_with(browser(app), keys["admin"], known)
    # A plain near copy (cropped a little, recompressed: 14 bits from the original), and a mirrored copy of
    # it, whose own flipx variant is 2 bits from it: closer than the near copy is to the original.
    near = encode(np.ascontiguousarray(known[4:-4, 4:-4]), "JPEG", quality=70)
    decoded = np.asarray(Image.open(io.BytesIO(near)).convert("RGB"))
    mirror = png(np.ascontiguousarray(decoded[:, ::-1]))

    seen = scan(app, keys["service"], mirror)
    assert seen["matched"] and {m["query_variant"] for m in seen["matches"]} == {"flipx"}
    (item,) = queued(db)
    r1, _ = sign_in(app, "r1")
    page = r1.get(f"/review/items/{item.id}").text
    assert "query: flipx" in page.split('id="matches"')[1]  # the Variant column says it came as a mirror
    for name in ("r1", "r2"):
        client, csrf = sign_in(app, name)
        assert post_verdict(client, csrf, item.id, "reject").headers["location"].startswith("/review?done=")
    assert queued(db)[0].state.value == "rejected"
    entries = false_matches(db)
    assert sorted(e.signal_type.value for e in entries) == ["pdq", "sha256"]
    assert all(e.labels == ["rejected:pdq/query_variant=flipx"] for e in entries), [e.labels for e in entries]

    original = scan(app, keys["service"], png(known))
    assert original["matched"] and original["decision"] == "review"
    assert [m["query_variant"] for m in original["matches"] if m["signal_type"] == "pdq"] == [None]
    copy = scan(app, keys["service"], near)
    assert copy["matched"], copy["suppressed"]  # the allow-list entry (2 bits, via flipx) clears it no more
    assert [m["query_variant"] for m in copy["matches"]] == [None] and not copy["suppressed"]

    again = scan(app, keys["service"], mirror)
    assert not again["matched"] and again["decision"] == "allow"
    assert again["suppressed"] and all(m["query_variant"] == "flipx" for m in again["suppressed"])
    for m in again["suppressed"]:  # each says which allow-list entry cleared it
        assert m["allowed_by"]["bank"] == "false-matches"
        assert m["allowed_by"]["labels"] == ["rejected:pdq/query_variant=flipx"]
    with db.session() as session:
        decision = session.scalars(select(Decision).order_by(Decision.id)).first()
        assert decision is not None
        assert decision.matches[0]["query_variant"] == "flipx"  # the kind is kept with the decision

    # The mirrored copy itself banked later: a plain match, another kind, so it is queued again (the
    # mirrored match shown as suppressed); rejected again, its entries gain the plain kind.
    r = browser(app).post("/v1/banks/known/media", content=mirror, headers=auth(keys["admin"]))
    assert r.status_code == 200, r.text
    third = scan(app, keys["service"], mirror)
    assert third["matched"] and [m["query_variant"] for m in third["suppressed"]] == ["flipx"]
    item = queued(db)[-1]
    assert item.state.value == "pending"
    for name in ("r1", "r2"):
        client, csrf = sign_in(app, name)
        assert post_verdict(client, csrf, item.id, "reject").status_code == 303
    assert all(e.labels == ["rejected:pdq/query_variant=flipx", "rejected:pdq"] for e in false_matches(db)), [
        e.labels for e in false_matches(db)
    ]
    assert not scan(app, keys["service"], mirror)["matched"]  # its own digests were disputed meanwhile
    assert scan(app, keys["service"], near)["matched"]  # and the near copy of the original still matches


def test_the_item_page_folds_signals_and_shows_provenance_variant_and_what_was_suppressed(
    db: Database, tmp_path: Path, known: np.ndarray
) -> None:
    """One row per banked item (a file matched by MD5, SHA-256 and PDQ is one item), with its external
    id, labels and source, escaped; the matches an allow-list cleared are listed apart, marked."""
    app, keys = service(db, tmp_path)
    upload = png(known)
    mirrored = hash_bytes(png(np.ascontiguousarray(known[:, ::-1])))
    h = hash_bytes(upload)
    create_bank(db, "known")
    rows = [
        f"md5,{h.md5},<b>ext-1</b>,A1;<i>tag</i>\n",
        f"sha256,{h.sha256},<b>ext-1</b>,A1;<i>tag</i>\n",
        f"pdq,{h.pdq},<b>ext-1</b>,A1;<i>tag</i>\n",
        f"pdq,{mirrored.pdq},mirror-1,B2\n",  # another item: the picture mirrored
    ]
    import_rows(db, "known", parse_csv(rows), source_name="list<1>.csv")
    # An allow-list entry made by rejecting this very picture matched (through flipx) to the mirrored item
    create_bank(db, "false-matches", kind=BankKind.NEGATIVE)
    label = MatchKind.of("pdq", "flipx").label()
    import_rows(db, "false-matches", parse_csv([f"pdq,{h.pdq},,{label}\n"]), source_name="review:0")

    out = scan(app, keys["service"], upload)
    assert out["matched"] and {m["signal_type"] for m in out["matches"]} == {"md5", "sha256", "pdq"}
    assert [(m["external_id"], m["query_variant"]) for m in out["suppressed"]] == [("mirror-1", "flipx")]
    (item,) = queued(db)
    reviewer, _ = sign_in(app, "r1")
    page = reviewer.get(f"/review/items/{item.id}").text
    matches = page.split('id="matches"')[1].split("<tbody>")[1].split("</table>")[0]
    assert matches.count("<tr>") == 1  # one item, its three signals folded
    assert "md5, sha256, pdq 0" in matches
    assert "&lt;b&gt;ext-1&lt;/b&gt;" in matches and "<b>ext-1" not in page  # escaped
    assert "A1" in matches and "&lt;i&gt;tag&lt;/i&gt;" in matches and "<i>tag" not in page
    assert "import: list&lt;1&gt;.csv" in matches
    suppressed = page.split('id="suppressed"')[1].split("<tbody>")[1].split("</table>")[0]
    assert suppressed.count("<tr>") == 1 and "mirror-1" in suppressed and "query: flipx" in suppressed
    assert "false-matches entry" in suppressed and label in suppressed
    (listed,) = settled_items(db, ReviewState.PENDING)  # `review list` shows them too
    assert [m["allowed_by"]["bank"] for m in listed["suppressed"]] == ["false-matches"]


def test_match_shows_what_an_allow_list_cleared_and_never_clears_an_exact_digest(
    tmp_path: Path, known: np.ndarray
) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'match.db'}")  # the command's output: one database will do
    h = hash_bytes(png(known))
    create_bank(db, "known")
    import_rows(db, "known", parse_csv([f"sha256,{h.sha256},k-1\n", f"pdq,{h.pdq},k-2\n"]), source_name="k")
    create_bank(db, "allow", kind=BankKind.NEGATIVE)
    rows = [f"sha256,{h.sha256},a-1\n", f"pdq,{h.pdq},a-2\n"]  # an imported allow-list: every kind
    import_rows(db, "allow", parse_csv(rows), source_name="allow.csv")
    run = cli_for(db)
    exact = run("match", "--sha256", h.sha256)
    assert exact.returncode == 3, exact.stderr  # an allow-list never outweighs the very file's digest
    assert json.loads(exact.stdout)["matched"] is True
    pdq = run("match", "--pdq", h.pdq)
    assert pdq.returncode == 0, pdq.stderr
    out = json.loads(pdq.stdout)
    assert out["matched"] is False and [m["external_id"] for m in out["suppressed"]] == ["k-2"]
    assert out["suppressed"][0]["allowed_by"]["external_id"] == "a-2"
    db.close()


def test_a_watched_stream_is_not_cleared_by_an_allow_listed_mirror(db: Database, known: np.ndarray) -> None:
    """The live-stream door weighs allow-list entries the same way: a frame of the known picture still
    alerts although its mirror (rejected as a false match) is on the allow-list."""
    h = hash_bytes(png(known))
    mirrored = hash_bytes(png(np.ascontiguousarray(known[:, ::-1])))
    create_bank(db, "known")
    import_rows(db, "known", parse_csv([f"pdq,{h.pdq},k-1\n"]), source_name="k")
    create_bank(db, "false-matches", kind=BankKind.NEGATIVE)
    label = MatchKind.of("pdq", "flipx").label()
    import_rows(db, "false-matches", parse_csv([f"pdq,{mirrored.pdq},,{label}\n"]), source_name="review:1")
    matcher = Matcher.load(db, index_dir=False)
    alerts: list[Alert] = []
    watch = Watch("s1", "test", lambda q, n: matcher.match_many(q, query_variants=n), alerts.append)
    watch._hash_and_match(first_picture(png(known)), 0.0)  # one frame, as the watch's loop hands it over
    assert [[m.external_id for m in a.matches] for a in alerts] == [["k-1"]]
    watch._hash_and_match(first_picture(png(np.ascontiguousarray(known[:, ::-1]))), 1.0)  # the mirror
    assert len(alerts) == 1  # cleared: the kind of match that was rejected
