"""Hotline endpoints with the real app: roles, queueing URLs, and the crawler running inside the service."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from childshield.accounts.service import create_api_key, create_user
from childshield.banks import create_bank
from childshield.banks.entries import add_outcomes
from childshield.hashing.result import HashOutcome
from childshield.hashing.service import hash_bytes
from childshield.store.db import Database
from childshield.store.models import Role
from childshield.testing.corpus import encode, generated_photo
from childshield.testing.web import LocalWeb, image, page
from childshield.web.app import create_app
from childshield.web.settings import ServiceSettings
from waiting import wait_until


@pytest.fixture(autouse=True)
def _own_data_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))


def test_hotline_roles_and_the_crawl_worker(db: Database) -> None:
    keys = {}
    for role in Role:
        create_user(db, role.value, role, password=None if role is Role.SERVICE else "correct horse battery")
        keys[role] = {"Authorization": f"Bearer {create_api_key(db, role.value)}"}
    known = encode(generated_photo(1200, 256, 192), "JPEG", quality=85)
    create_bank(db, "known")
    add_outcomes(db, "known", [HashOutcome("k", result=hash_bytes(known))])
    sites = {"host.test": {"/": page("<img src='/k.jpg'><img src='/o.jpg'>"), "/k.jpg": image(known),
                           "/o.jpg": image(encode(generated_photo(1201, 256, 192), "JPEG"))}}  # fmt: skip
    settings = ServiceSettings(
        database_url=db.url, refresh_seconds=0, crawl_worker=True, fetch_allow="127.0.0.0/8"
    )
    with LocalWeb(sites) as web, TestClient(create_app(settings)) as client:
        seed = f"http://{web.addresses['host.test']}:{web.ports['host.test']}/"  # no DNS inside the service
        body = {"urls": [seed, "gopher://x"], "source": "hotline-form", "reporter_ref": "R-9"}
        assert client.post("/v1/crawl/urls", json=body, headers=keys[Role.REVIEWER]).status_code == 403
        r = client.post("/v1/crawl/urls", json=body, headers=keys[Role.SERVICE])
        assert r.status_code == 200 and r.json()["added"] == 1 and len(r.json()["refused"]) == 1
        assert client.get("/v1/crawl/status", headers=keys[Role.SERVICE]).status_code == 403

        def settled() -> dict[str, Any] | None:  # nothing left queued or being fetched
            status: dict[str, Any] = client.get("/v1/crawl/status", headers=keys[Role.SENIOR]).json()
            urls = status["urls"]
            return None if not urls or urls.get("queued") or urls.get("leased") else status

        status = wait_until(settled, "the service's crawl worker to settle the reported URL")
        assert status["urls"] == {"done": 3} and status["hits"] >= 1
        hits = client.get("/v1/crawl/hits", headers=keys[Role.SENIOR]).json()
        assert {h["media_url"] for h in hits} == {seed + "k.jpg"} and all(h["page_url"] == seed for h in hits)
        assert client.get(f"/v1/crawl/hits?after={hits[-1]['id']}", headers=keys[Role.SENIOR]).json() == []
        stats = client.get("/v1/takedown/stats?by=country", headers=keys[Role.ADMIN])
        assert stats.status_code == 200 and stats.json()[-1]["country"] == "all"
        assert client.get("/v1/takedown/stats?by=planet", headers=keys[Role.ADMIN]).status_code == 422
