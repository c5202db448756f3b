"""``childshield review`` and ``childshield media`` in a subprocess, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from sqlalchemy import update

from childshield.accounts.service import Principal
from childshield.review.keys import Keyring
from childshield.review.media import load
from childshield.review.queue import ReviewConfig, decide
from childshield.store.db import Database
from childshield.store.models import KeptMedia, ReviewItem, Role
from childshield.testing.corpus import encode, generated_photo
from childshield.web.app import create_app
from childshield.web.settings import ServiceSettings
from cli_runner import cli_for
from review_helpers import auth, bank_with, browser, people, png


def test_review_and_media_commands(db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key_file = tmp_path / "media.keys"
    monkeypatch.setenv("CHILDSHIELD_MEDIA_KEY_FILE", str(key_file))
    keys = people(db)
    app = create_app(ServiceSettings(database_url=db.url, refresh_seconds=0, consensus=1))
    known = generated_photo(911, 320, 240)
    bank_with(browser(app), keys["admin"], known)
    uploads = [png(known), encode(known, "JPEG", quality=80)]
    for data in uploads:
        assert browser(app).post("/v1/scan", content=data, headers=auth(keys["service"])).status_code == 200
    with db.session() as session:
        first, second = session.query(ReviewItem).order_by(ReviewItem.id).all()
        first_id, media_ids = first.id, [first.media_id, second.media_id]
    config = ReviewConfig()
    decide(db, Principal(1, "r1", Role.REVIEWER), first_id, "confirm", classification="A1", config=config)

    review, media = cli_for(db, "review"), cli_for(db, "media")
    status = review("status")
    assert status.returncode == 0 and json.loads(status.stdout) == {
        "pending": 1,
        "escalated": 0,
        "confirmed": 1,
        "rejected": 0,
    }
    listed = [json.loads(line) for line in review("list", "--state", "confirmed").stdout.splitlines()]
    assert [(x["item"], x["classification"]) for x in listed] == [(first_id, "A1")] and listed[0]["pdq"]
    assert review("list", "--state", "nonsense").returncode == 2

    old = Keyring.load(key_file).current
    rotated = media("rotate-key")
    assert rotated.returncode == 0, rotated.stderr
    new = Keyring.load(key_file)
    assert new.current != old and old in new.keys
    resealed = media("reseal")
    assert resealed.returncode == 0 and "re-sealed 2" in resealed.stderr
    assert load(db, Keyring({new.current: new.keys[new.current]}, new.current), media_ids[0]) == uploads[0]

    with db.session() as session:
        session.execute(
            update(KeptMedia)
            .where(KeptMedia.id == media_ids[1])
            .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )
    purged = media("purge")
    assert purged.returncode == 0 and "deleted 1 expired" in purged.stderr
    with db.session() as session:
        assert [m.id for m in session.query(KeptMedia).all()] == [media_ids[0]]
