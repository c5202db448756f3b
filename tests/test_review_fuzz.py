"""Hostile form input to the review UI never causes a server error, a stray verdict or a session."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from childshield.audit.log import verify_chain
from childshield.store.db import Database, open_database
from childshield.store.models import Review
from childshield.testing.corpus import generated_photo
from childshield.web.app import create_app
from childshield.web.settings import ServiceSettings
from review_helpers import auth, bank_with, browser, csrf_of, people, png, sign_in

text = st.text(st.characters(codec="utf-8"), max_size=300)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FastAPI, Database]]:
    folder = tmp_path_factory.mktemp("fuzz")
    db = open_database(f"sqlite:///{folder / 'ui.db'}")
    keys = people(db)
    app = create_app(
        ServiceSettings(
            database_url=db.url,
            refresh_seconds=0,
            media_key_file=str(folder / "media.keys"),
            login_attempts_per_minute=100_000,
        )
    )
    known = generated_photo(1011, 320, 240)
    bank_with(browser(app), keys["admin"], known)
    browser(app).post("/v1/scan", content=png(np.ascontiguousarray(known)), headers=auth(keys["service"]))
    yield app, db
    db.close()


@pytest.fixture(scope="module")
def reviewer(setup: tuple[FastAPI, Database]) -> tuple[TestClient, str]:
    return sign_in(setup[0], "r3")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=text, password=text, nxt=text, csrf=st.sampled_from(["", "right", "wrong"]))
def test_sign_in_form(setup: tuple[FastAPI, Database], name: str, password: str, nxt: str, csrf: str) -> None:
    app, _ = setup
    client = browser(app)
    token = csrf_of(client.get("/login").text)
    sent = {"": "", "right": token, "wrong": token[::-1]}[csrf]
    r = client.post(
        "/login", data={"name": name, "password": password, "next": nxt, "csrf": sent}, follow_redirects=False
    )
    assert r.status_code in (401, 403, 422, 429), r.text  # nobody has these passwords
    assert "cs_session" not in client.cookies


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    verdict=st.one_of(st.sampled_from(["confirm", "reject", "escalate"]), text),
    classification=st.one_of(st.sampled_from(["A1", "B2", ""]), text),
    note=text,
    blur=st.one_of(st.integers(-(10**6), 10**6).map(str), text),
    item=st.one_of(st.just("1"), st.integers(-5, 10**12).map(str), text.filter(lambda t: "/" not in t)),
)
def test_review_forms(
    setup: tuple[FastAPI, Database],
    reviewer: tuple[TestClient, str],
    verdict: str,
    classification: str,
    note: str,
    blur: str,
    item: str,
) -> None:
    _, db = setup
    client, csrf = reviewer
    path = f"/review/items/{quote(item, safe='')}"
    for sub, data in (
        ("/blur", {"blur": blur, "csrf": csrf}),
        ("/reveal", {"csrf": csrf}),
        ("/decide", {"verdict": verdict, "classification": classification, "note": note, "csrf": "x"}),
    ):
        r = client.post(path + sub, data=data, follow_redirects=False)
        assert r.status_code < 500, (sub, r.status_code, r.text[:200])
    assert client.get(path, follow_redirects=False).status_code < 500
    assert client.get(path + "/media", params={"blur": blur}, follow_redirects=False).status_code < 500
    with db.session() as session:
        assert session.query(Review).count() == 0  # the forged CSRF token never let a verdict through
    verify_chain(db)
