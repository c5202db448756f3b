"""Decisions are recorded with their policy version; webhooks are signed, retried, and never lose one.
The receiver is a real HTTP server on loopback."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text, update

from childshield.accounts.service import create_api_key, create_user
from childshield.actions.decisions import PolicySnapshot, policy_of, record_decision
from childshield.actions.webhooks import WebhookConfig, deliver_due, replay_dead, verify_signature
from childshield.store.db import Database
from childshield.store.models import Decision, Role, WebhookDelivery, utcnow
from childshield.testing.corpus import encode, generated_photo
from childshield.web.app import create_app
from childshield.web.settings import ServiceSettings
from waiting import wait_until


@pytest.fixture(autouse=True)
def _own_data_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))


def sql(db: Database, query: str) -> list[tuple[object, ...]]:
    with db.engine.connect() as connection:
        return [tuple(row) for row in connection.execute(text(query))]


class Receiver:
    """A webhook receiver on 127.0.0.1 that fails the first ``fail`` requests with HTTP 500."""

    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.received: list[tuple[dict[str, str], str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                outer.received.append((dict(self.headers), body))
                code = 500 if len(outer.received) <= outer.fail else 204
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(fail=2)
    yield r
    r.close()


def a_decision(db: Database, url: str | None, content_id: str = "c1") -> int:
    policy = PolicySnapshot("ab" * 32, {"1": {"action": "block"}})
    return record_decision(
        db,
        content_id=content_id,
        decision="block",
        policy=policy,
        matches=[],
        actor="svc",
        sha256="0" * 64,
        pdq=None,
        webhook_url=url,
    )


def pending(db: Database) -> int:
    with db.session() as session:
        return len(
            session.scalars(select(WebhookDelivery.id).where(WebhookDelivery.state == "pending")).all()
        )


def make_due(db: Database) -> None:
    with db.session() as session:
        session.execute(update(WebhookDelivery).values(next_at=utcnow()))


def test_delivery_is_signed_retried_then_delivered(db: Database, receiver: Receiver) -> None:
    config = WebhookConfig(receiver.url, "s3cret", max_attempts=5)
    a_decision(db, receiver.url)
    with httpx.Client() as client:
        assert deliver_due(db, config, client) == 1
        assert deliver_due(db, config, client) == 0  # backing off: not due yet
        with db.session() as session:
            row = session.scalars(select(WebhookDelivery)).one()
            assert (row.state, row.attempts, row.last_error) == ("pending", 1, "HTTP 500")
        for _ in range(2):
            make_due(db)
            deliver_due(db, config, client)
    with db.session() as session:
        row = session.scalars(select(WebhookDelivery)).one()
        assert (row.state, row.attempts) == ("delivered", 3) and row.delivered_at is not None
    assert len(receiver.received) == 3
    headers, body = receiver.received[-1]
    assert json.loads(body)["decision"] == "block" and json.loads(body)["content_id"] == "c1"
    assert verify_signature(
        "s3cret", headers["X-Childshield-Timestamp"], body, headers["X-Childshield-Signature"]
    )
    assert not verify_signature(
        "other", headers["X-Childshield-Timestamp"], body, headers["X-Childshield-Signature"]
    )
    assert not verify_signature("s3cret", "1000", body, headers["X-Childshield-Signature"])  # a replay


def test_dead_letter_keeps_the_delivery_and_replay_resends_it(db: Database) -> None:
    always_failing = Receiver(fail=10**6)
    try:
        config = WebhookConfig(always_failing.url, "k", max_attempts=3)
        a_decision(db, always_failing.url)
        with httpx.Client() as client:
            for _ in range(5):
                make_due(db)
                deliver_due(db, config, client)
        with db.session() as session:
            row = session.scalars(select(WebhookDelivery)).one()
            assert (row.state, row.attempts) == ("dead", 3)
            assert session.scalars(select(Decision)).one().decision == "block"  # the decision stands
        assert len(always_failing.received) == 3
        assert replay_dead(db) == 1
        always_failing.fail = 0
        with httpx.Client() as client:
            deliver_due(db, config, client)
        with db.session() as session:
            assert session.scalars(select(WebhookDelivery.state)).one() == "delivered"
    finally:
        always_failing.close()


def test_unreachable_receiver_is_an_error_not_a_crash(db: Database) -> None:
    config = WebhookConfig("http://127.0.0.1:9/hook", "k", timeout=2)
    a_decision(db, config.url)
    with httpx.Client() as client:
        assert deliver_due(db, config, client) == 1
    with db.session() as session:
        row = session.scalars(select(WebhookDelivery)).one()
        assert row.state == "pending" and "Connect" in row.last_error


def test_scans_record_decisions_and_the_service_posts_them(db: Database, receiver: Receiver) -> None:
    create_user(db, "platform", Role.SERVICE)
    create_user(db, "boss", Role.ADMIN, password="a long admin passphrase")
    service, admin = create_api_key(db, "platform"), create_api_key(db, "boss")
    settings = ServiceSettings(
        database_url=db.url,
        refresh_seconds=0,
        webhook_url=receiver.url,
        webhook_secret="k",
        webhook_poll_seconds=0.05,
    )
    receiver.fail = 0
    known = generated_photo(821, 640, 480)
    with TestClient(create_app(settings)) as client:
        h = {"Authorization": f"Bearer {admin}"}
        assert (
            client.post(
                "/v1/banks", json={"name": "known", "policy": {"action": "quarantine"}}, headers=h
            ).status_code
            == 201
        )
        client.post("/v1/banks/known/media", content=encode(known, "PNG"), headers=h)
        s = {"Authorization": f"Bearer {service}"}
        hit = client.post("/v1/scan", content=encode(known, "JPEG", quality=85), headers=s).json()
        miss = client.post(
            "/v1/scan", content=encode(generated_photo(822, 640, 480), "PNG"), headers=s
        ).json()
        # the service's poller posts it: wait for the post, or for nothing to be left to post
        wait_until(lambda: receiver.received or not pending(db), "the matched scan's webhook")
    assert hit["decision"] == "quarantine" and miss["decision"] == "allow"
    with db.session() as session:
        decisions = session.scalars(select(Decision)).all()
    assert [d.content_id for d in decisions] == [hit["content_id"]]  # clean content is not recorded
    d = decisions[0]
    assert d.actor == "platform" and d.sha256 == hit["signals"]["sha256"]
    policy = policy_of(db, d.policy_version)
    assert policy is not None and policy["known"]["action"] == "quarantine"
    assert len(receiver.received) == 1
    headers, body = receiver.received[0]
    assert json.loads(body)["content_id"] == hit["content_id"]
    assert verify_signature("k", headers["X-Childshield-Timestamp"], body, headers["X-Childshield-Signature"])


def test_policy_versions_change_with_the_policy(db: Database) -> None:
    create_user(db, "boss", Role.ADMIN, password="a long admin passphrase")
    admin = create_api_key(db, "boss")
    known = generated_photo(823, 640, 480)
    with TestClient(create_app(ServiceSettings(database_url=db.url, refresh_seconds=0))) as client:
        h = {"Authorization": f"Bearer {admin}"}
        client.post("/v1/banks", json={"name": "known"}, headers=h)
        client.post("/v1/banks/known/media", content=encode(known, "PNG"), headers=h)
        first = client.post("/v1/scan", content=encode(known, "PNG"), headers=h).json()
        again = client.post("/v1/scan", content=encode(known, "PNG"), headers=h).json()
        client.patch("/v1/banks/known", json={"policy": {"action": "block"}}, headers=h)
        later = client.post("/v1/scan", content=encode(known, "PNG"), headers=h).json()
    versions = dict(sql(db, "SELECT content_id, policy_version FROM decisions"))
    assert versions[first["content_id"]] == versions[again["content_id"]] != versions[later["content_id"]]
    assert (first["decision"], later["decision"]) == ("review", "block")
    assert np.unique(list(versions.values())).size == 2
