"""The review pages (issue 16.16): a refused verdict comes back with the form as it was filled in, and
no page is the answer to a POST (a reload never sends a verdict again); record-and-next; the break prompt
notices a very fast pace."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, update

from childshield.store.db import Database
from childshield.store.models import Review, WebSession
from childshield.testing.corpus import encode, generated_photo
from childshield.web.app import create_app
from childshield.web.settings import ServiceSettings
from review_helpers import bank_with, browser, people, post_verdict, queued, scan, sign_in


@pytest.fixture(autouse=True)
def _own_data_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))


@pytest.fixture(scope="module")
def known() -> np.ndarray:
    return generated_photo(721, 320, 240)


def service(db: Database, tmp_path: Path, known: np.ndarray, uploads: int, **settings: object) -> FastAPI:
    keys = people(db)
    conf = ServiceSettings(
        database_url=db.url,
        refresh_seconds=0,
        media_key_file=str(tmp_path / "keys" / "media.keys"),
        **settings,  # type: ignore[arg-type]
    )
    app = create_app(conf)
    bank_with(browser(app), keys["admin"], known)
    for k in range(uploads):  # matching uploads, each its own file (small edits)
        scan(app, keys["service"], encode(known, "JPEG", quality=60 + 10 * k))
    return app


def reviews(db: Database) -> int:
    with db.session() as session:
        return int(session.scalar(select(func.count()).select_from(Review)) or 0)


def test_a_refused_verdict_keeps_the_form_and_a_reload_sends_nothing(
    db: Database, tmp_path: Path, known: np.ndarray
) -> None:
    app = service(db, tmp_path, known, 2)
    first, second = (i.id for i in queued(db))
    client, csrf = sign_in(app, "r1")
    refused = post_verdict(client, csrf, first, "confirm", note="looks <like> the banked one")
    assert refused.status_code == 303 and refused.headers["location"] == f"/review/items/{first}"
    page = client.get(refused.headers["location"])
    assert page.status_code == 200 and 'id="verdict-error"' in page.text
    assert "confirming needs a classification" in page.text
    assert 'value="confirm" data-key="c" required checked' in page.text  # the verdict chosen is kept
    assert "looks &lt;like&gt; the banked one</textarea>" in page.text  # and the note, escaped
    again = client.get(f"/review/items/{first}")  # a reload: a GET, shown clean, nothing sent
    assert 'id="verdict-error"' not in again.text and " checked" not in again.text.split("verdict-form")[1]
    assert reviews(db) == 0
    kept = post_verdict(client, csrf, first, "confirm", "A2", note="n")  # the form, completed
    assert kept.status_code == 303 and kept.headers["location"] == f"/review?done={first}"
    assert reviews(db) == 1
    # A failed form is kept for its own item only.
    post_verdict(client, csrf, second, "confirm")
    assert 'id="verdict-error"' not in client.get(f"/review/items/{first}", follow_redirects=False).text


def test_record_and_next_opens_the_next_item_and_says_what_became_of_the_last(
    db: Database, tmp_path: Path, known: np.ndarray
) -> None:
    app = service(db, tmp_path, known, 3)
    ids = [i.id for i in queued(db)]
    client, csrf = sign_in(app, "r1")
    page = client.get(f"/review/items/{ids[0]}").text
    assert f'href="/review/items/{ids[1]}" id="next-item"' in page  # n: the next one, this one waits
    assert f'href="/review/items/{ids[0]}" id="next-item"' in client.get(f"/review/items/{ids[2]}").text
    r = post_verdict(client, csrf, ids[1], "reject", then="next")
    assert r.status_code == 303 and r.headers["location"] == f"/review/items/{ids[2]}?done={ids[1]}"
    shown = client.get(r.headers["location"]).text
    assert f"Your verdict on item {ids[1]} is recorded" in shown and "Keyboard shortcuts" in shown
    queue = client.get("/review").text
    assert f'id="next-item" href="/review/items/{ids[0]}"' in queue  # what r1 has left, first
    r = post_verdict(client, csrf, ids[0], "reject", then="next")
    assert r.headers["location"] == f"/review/items/{ids[2]}?done={ids[0]}"
    r = post_verdict(client, csrf, ids[2], "reject", then="next")
    assert r.headers["location"] == f"/review?done={ids[2]}"  # nothing left: back to the queue
    assert 'id="next-item"' not in client.get("/review").text


def test_the_break_prompt_notices_a_very_fast_pace(db: Database, tmp_path: Path, known: np.ndarray) -> None:
    app = service(
        db,
        tmp_path,
        known,
        3,
        break_every_items=100,
        break_every_minutes=1000,
        break_fast_items=2,
        break_fast_minutes=60,
    )
    client, csrf = sign_in(app, "r1")
    ids = [i.id for i in queued(db)]
    assert post_verdict(client, csrf, ids[0], "reject").status_code == 303
    assert "break-prompt" not in client.get("/review").text  # one verdict is no pace
    assert post_verdict(client, csrf, ids[1], "reject").status_code == 303
    page = client.get("/review").text
    assert 'data-reason="pace"' in page and "2 verdicts within" in page
    now = dt.datetime.now(dt.UTC)
    with db.session() as session:  # the same two verdicts, 85 minutes apart, the last break long ago
        session.execute(update(WebSession).values(break_at=now - dt.timedelta(minutes=120)))
        session.execute(update(Review).values(at=now - dt.timedelta(minutes=90)))
        later = update(Review).where(Review.item_id == ids[1]).values(at=now - dt.timedelta(minutes=5))
        session.execute(later)
    assert "break-prompt" not in client.get("/review").text
    assert post_verdict(client, csrf, ids[2], "reject").status_code == 303  # two within the hour again
    assert 'data-reason="pace"' in client.get("/review").text
    client.post("/review/break", data={"csrf": csrf})
    assert "break-prompt" not in client.get("/review").text  # a break starts the count again
