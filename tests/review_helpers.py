"""Shared by the review tests: a service with banks, reviewers, and a signed-in browser-like client."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import select

from childshield.accounts.service import create_api_key, create_user
from childshield.store.db import Database
from childshield.store.models import ReviewItem, Role
from childshield.testing.corpus import encode

PASSWORD = "correct horse battery"
REVIEWERS = {"r1": Role.REVIEWER, "r2": Role.REVIEWER, "r3": Role.REVIEWER, "s1": Role.SENIOR}


def png(pixels: np.ndarray) -> bytes:
    return encode(pixels, "PNG", compress_level=1)


def people(db: Database) -> dict[str, str]:
    """Reviewers (by name) and an admin's and a service's API keys."""
    for name, role in REVIEWERS.items():
        create_user(db, name, role, password=PASSWORD)
    create_user(db, "boss", Role.ADMIN, password=PASSWORD)
    create_user(db, "platform", Role.SERVICE)
    return {"admin": create_api_key(db, "boss"), "service": create_api_key(db, "platform")}


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def bank_with(client: TestClient, admin: str, pixels: np.ndarray, action: str = "review") -> None:
    r = client.post("/v1/banks", json={"name": "known", "policy": {"action": action}}, headers=auth(admin))
    assert r.status_code == 201, r.text
    r = client.post("/v1/banks/known/media", content=png(pixels), headers=auth(admin))
    assert r.status_code == 200, r.text


def browser(app: FastAPI) -> TestClient:
    """A client over HTTPS (session cookies are Secure), without the lifespan (app state is set already)."""
    return TestClient(app, base_url="https://testserver")


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def sign_in(app: FastAPI, name: str, password: str = PASSWORD) -> tuple[TestClient, str]:
    """A signed-in client and its session's CSRF token."""
    client = browser(app)
    page = client.get("/login")
    r = client.post(
        "/login",
        data={"name": name, "password": password, "csrf": csrf_of(page.text), "next": "/review"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    queue = client.get("/review")
    assert queue.status_code == 200
    return client, csrf_of(queue.text)


def scan(app: FastAPI, key: str, data: bytes) -> dict[str, Any]:
    """``/v1/scan`` of ``data`` as the platform ``key`` belongs to."""
    r = browser(app).post("/v1/scan", content=data, headers=auth(key))
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def queued(db: Database) -> list[ReviewItem]:
    """Every review item, in id order."""
    with db.session() as session:
        return list(session.scalars(select(ReviewItem).order_by(ReviewItem.id)).all())


def post_verdict(
    client: TestClient, csrf: str, item_id: int, verdict: str, classification: str = "", **extra: str
) -> Response:
    return client.post(
        f"/review/items/{item_id}/decide",
        data={"verdict": verdict, "classification": classification, "csrf": csrf, **extra},
        follow_redirects=False,
    )
