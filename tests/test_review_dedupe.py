"""The review queue folds repeats of the same content into one item (issue 15, finding 6), and settled
items with their reviewers' verdicts are open only to the roles allowed (finding 11), with the real app and
database (SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, text

from childshield.audit.log import verify_chain
from childshield.reporting.incident import evidence_facts, incidents
from childshield.store.db import Database
from childshield.store.models import Decision, KeptMedia, ReviewItem, ReviewSighting, ReviewState
from childshield.testing.corpus import generated_photo
from childshield.vault.store import preserve_confirmed
from childshield.web.app import create_app
from childshield.web.settings import ServiceSettings
from review_helpers import auth, browser, people, png, sign_in
from waiting import HANG_GUARD, join

SCANS = 50


@pytest.fixture(autouse=True)
def _own_data_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))


def _service(
    db: Database, tmp_path: Path, files: list[bytes], **settings: object
) -> tuple[FastAPI, dict[str, str]]:
    keys = people(db)
    conf = ServiceSettings(
        database_url=db.url,
        refresh_seconds=0,
        media_key_file=str(tmp_path / "keys" / "media.keys"),
        scan_rate=0,
        login_attempts_per_minute=1000,  # many sign-ins from one test client
        decode_wait_seconds=600,  # 50 scans at once on a loaded machine: they queue, never turned away
        **settings,  # type: ignore[arg-type]
    )
    app = create_app(conf)
    client = browser(app)
    assert client.post("/v1/banks", json={"name": "known"}, headers=auth(keys["admin"])).status_code == 201
    signals = [{"type": "sha256", "value": hashlib.sha256(data).hexdigest()} for data in files]
    r = client.post("/v1/banks/known/signals", json={"signals": signals}, headers=auth(keys["admin"]))
    assert r.status_code == 200 and r.json()["added"] == len(files), r.text
    return app, keys


def _scan(app: FastAPI, key: str, data: bytes, **context: str) -> str:
    r = browser(app).post("/v1/scan", content=data, params=context, headers=auth(key))
    assert r.status_code == 200 and r.json()["decision"] == "review", r.text
    return str(r.json()["content_id"])


def _open_items(db: Database) -> list[ReviewItem]:
    with db.session() as session:
        return list(
            session.scalars(
                select(ReviewItem).where(ReviewItem.state == ReviewState.PENDING).order_by(ReviewItem.id)
            )
        )


def test_concurrent_scans_of_one_file_fold_into_one_item_keeping_every_context(
    db: Database, tmp_path: Path
) -> None:
    one, two = png(generated_photo(731, 160, 120)), png(generated_photo(732, 160, 120))
    app, keys = _service(db, tmp_path, [one, two])
    start = threading.Barrier(SCANS)
    content_ids: list[str] = []
    errors: list[BaseException] = []

    def upload(k: int) -> None:
        try:
            start.wait(HANG_GUARD)  # all at once: concurrent intake of the same content
            content_ids.append(
                _scan(app, keys["service"], one, user_id=f"u{k}", ip=f"192.0.2.{k}", incident=f"case-{k % 5}")
            )
        except BaseException as exc:  # reported below, with the assertion
            errors.append(exc)

    threads = [threading.Thread(target=upload, args=(k,)) for k in range(SCANS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        join(thread, "an upload")
    assert not errors, errors[0]
    assert len(set(content_ids)) == SCANS  # every upload has its own decision

    pending = _open_items(db)
    assert len(pending) == 1, f"{len(pending)} pending items for one file"
    item = pending[0]
    assert item.sightings == SCANS
    with db.session() as session:
        seen = session.execute(
            select(Decision.content_id, Decision.context)
            .join(ReviewSighting, ReviewSighting.decision_id == Decision.id)
            .where(ReviewSighting.item_id == item.id)
        ).all()
        kept = session.scalar(select(func.count()).select_from(KeptMedia))
    assert {c for c, _ in seen} == set(content_ids)
    assert sorted(ctx["user_id"] for _, ctx in seen) == sorted(f"u{k}" for k in range(SCANS))
    assert {ctx["ip"] for _, ctx in seen} == {f"192.0.2.{k}" for k in range(SCANS)}
    assert kept == 1  # the media is sealed once, not once per upload

    # A reviewer sees it once, with its sightings and their contexts.
    reviewer, _ = sign_in(app, "r1")
    queue_page = reviewer.get("/review").text
    rows = queue_page.split("<tbody>")[1]
    assert rows.count("/review/items/") == 1 and f'class="seen">{SCANS}</td>' in rows
    page = reviewer.get(f"/review/items/{item.id}").text
    assert f'<dd id="sightings">{SCANS}</dd>' in page
    assert "u17" in page and "192.0.2.33" in page and "case-3" in page

    # Another file is another item.
    _scan(app, keys["service"], two, user_id="other")
    assert [i.sightings for i in _open_items(db)] == [SCANS, 1]


def test_folded_items_settle_by_consensus_and_keep_every_sighting_for_reporting(
    db: Database, tmp_path: Path
) -> None:
    data = png(generated_photo(733, 160, 120))
    app, keys = _service(db, tmp_path, [data])
    for k in range(3):
        _scan(app, keys["service"], data, user_id=f"u{k}", ip=f"198.51.100.{k}")
    (item,) = _open_items(db)
    for name in ("r1", "r2"):
        client, csrf = sign_in(app, name)
        r = client.post(
            f"/review/items/{item.id}/decide",
            data={"verdict": "confirm", "classification": "A1", "csrf": csrf},
            follow_redirects=False,
        )
        assert r.status_code == 303, r.text
    with db.session() as session:
        settled = session.get_one(ReviewItem, item.id)
        assert settled.state is ReviewState.CONFIRMED and settled.open_key is None
    verify_chain(db)
    # The vault keeps every sighting's context, for the reports.
    keyring = app.state.keyring
    assert preserve_confirmed(db, keyring) == 1
    with db.engine.connect() as connection:
        details = connection.execute(text("SELECT details FROM evidence")).scalar_one()
    if isinstance(details, str):
        import json

        details = json.loads(details)
    assert sorted(s["context"]["user_id"] for s in details["sightings"]) == ["u0", "u1", "u2"]
    with db.session() as session:  # each uploader's sighting is its own incident, with its own address
        found = incidents(evidence_facts(session))
    assert sorted((i.user_id, [ip for ip, _ in i.ips]) for i in found) == [
        (f"u{k}", [f"198.51.100.{k}"]) for k in range(3)
    ]
    # Seen again once settled: a new item (the confirmed one is not reopened).
    _scan(app, keys["service"], data, user_id="u9")
    assert [i.sightings for i in _open_items(db)] == [1]


def _settled_item(db: Database, app: FastAPI, keys: dict[str, str], data: bytes) -> int:
    _scan(app, keys["service"], data)
    (item,) = _open_items(db)
    for name in ("r1", "r2"):
        client, csrf = sign_in(app, name)
        r = client.post(
            f"/review/items/{item.id}/decide",
            data={"verdict": "reject", "csrf": csrf, "note": f"note by {name}"},
            follow_redirects=False,
        )
        assert r.status_code == 303
    return item.id


def test_settled_items_and_verdicts_are_closed_to_other_reviewers_by_default(
    db: Database, tmp_path: Path
) -> None:
    data = png(generated_photo(734, 160, 120))
    app, keys = _service(db, tmp_path, [data])
    item_id = _settled_item(db, app, keys, data)
    for name in ("r3", "s1", "r1"):  # neither a reviewer who took no part, a senior, nor a participant
        client, _ = sign_in(app, name)
        r = client.get(f"/review/items/{item_id}")
        assert r.status_code == 404, (name, r.text[:200])
        assert "note by r2" not in r.text
        assert client.get(f"/review/items/{item_id}/media").status_code == 404
    late, csrf = sign_in(app, "r3")  # a verdict on an item settled meanwhile: told so, nothing shown
    r = late.post(f"/review/items/{item_id}/decide", data={"verdict": "reject", "csrf": csrf})
    assert r.status_code == 409 and "settled already" in r.text and "note by" not in r.text
    participant, _ = sign_in(app, "r2")  # learns the outcome of the item reviewed, not the others' votes
    notice = participant.get(f"/review?done={item_id}").text
    assert "It is settled" in notice and "r1" not in notice.split("<main")[-1].split("Pending")[0]
    admin, _ = sign_in(app, "boss")
    page = admin.get(f"/review/items/{item_id}").text
    assert "note by r1" in page and "note by r2" in page


def test_the_setting_opens_settled_items_to_seniors(db: Database, tmp_path: Path) -> None:
    data = png(generated_photo(735, 160, 120))
    app, keys = _service(db, tmp_path, [data], review_settled_roles=("senior",))
    item_id = _settled_item(db, app, keys, data)
    senior, _ = sign_in(app, "s1")
    page = senior.get(f"/review/items/{item_id}")
    assert page.status_code == 200 and "note by r1" in page.text and "note by r2" in page.text
    reviewer, _ = sign_in(app, "r3")
    assert reviewer.get(f"/review/items/{item_id}").status_code == 404


def test_the_migration_folds_untouched_duplicates_of_an_open_item(tmp_path: Path) -> None:
    from alembic import command

    from childshield.store.db import make_engine, open_database
    from childshield.store.migrate import alembic_config

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0011")
    at = "2026-12-01 10:00:00"
    with engine.begin() as c:
        c.execute(
            text(
                "INSERT INTO users (id, name, role, disabled, created_at) VALUES (1, 'r1', 'reviewer', 0, :t)"
            ),
            {"t": at},
        )
        c.execute(
            text("INSERT INTO policy_versions (version, banks, created_at) VALUES ('p', '{}', :t)"), {"t": at}
        )
        for k, sha in enumerate(["aa", "aa", "aa", "bb", "aa"], start=1):
            c.execute(
                text(
                    "INSERT INTO decisions (id, content_id, at, decision, policy_version, actor, source, "
                    "sha256, matches, context) "
                    "VALUES (:k, :c, :t, 'review', 'p', 'platform', 'api', :s, '[]', :ctx)"
                ),
                {"k": k, "c": f"c{k}", "t": at, "s": sha * 32, "ctx": f'{{"user_id": "u{k}"}}'},
            )
            state = "confirmed" if k == 5 else "pending"
            c.execute(
                text(
                    "INSERT INTO review_items (id, decision_id, content_id, created_at, state, required) "
                    "VALUES (:k, :k, :c, :t, :state, 2)"
                ),
                {"k": k, "c": f"c{k}", "t": at, "state": state},
            )
        c.execute(  # item 3 was reviewed already: it keeps its history
            text(
                "INSERT INTO reviews (item_id, user_id, verdict, note, ruling, at) "
                "VALUES (3, 1, 'confirm', '', 0, :t)"
            ),
            {"t": at},
        )
    engine.dispose()
    db = open_database(url)
    try:
        with db.engine.connect() as c:
            rows = c.execute(
                text("SELECT id, state, open_key, sightings FROM review_items ORDER BY id")
            ).all()
            seen = c.execute(
                text("SELECT item_id, decision_id FROM review_sightings ORDER BY decision_id")
            ).all()
    finally:
        db.close()
    assert [(r[0], r[1], r[2] is not None, r[3]) for r in rows] == [
        (1, "pending", True, 2),  # item 2 folded into it
        (3, "pending", False, 1),  # reviewed: kept apart
        (4, "pending", True, 1),
        (5, "confirmed", False, 1),
    ]
    assert [tuple(s) for s in seen] == [(1, 1), (1, 2), (3, 3), (4, 4), (5, 5)]
