"""Webhooks: tell a platform what was decided, signed, retried, never at the cost of a decision.

A delivery is written to the outbox (``webhook_deliveries``) in the decision's own transaction; a
background loop posts due deliveries and retries failures with exponential backoff (2 s, 4 s, ... capped
at an hour) up to ``max_attempts``, after which the delivery stays in the outbox as ``dead`` for an
operator to see and replay.  Delivery is at least once: receivers de-duplicate by the
``X-Childshield-Delivery`` header.

Signature: ``X-Childshield-Signature: sha256=<hex>``, the HMAC-SHA256 with the shared secret of
``<X-Childshield-Timestamp>.<body>``; receivers should also refuse old timestamps (replays).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from childshield.store.db import Database
from childshield.store.models import WebhookDelivery, utcnow

LEASE = dt.timedelta(seconds=60)
"""A worker that claims a delivery holds it this long (another worker retries it after, if it died)."""


@dataclass(frozen=True)
class WebhookConfig:
    url: str
    secret: str
    max_attempts: int = 8
    base_delay: float = 2.0
    max_delay: float = 3600.0
    timeout: float = 10.0


def sign(secret: str, timestamp: str, body: str) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify_signature(secret: str, timestamp: str, body: str, signature: str, *, max_age: float = 300) -> bool:
    """For receivers (and tests): the signature is right and the timestamp recent."""
    try:
        age = abs(time.time() - float(timestamp))
    except ValueError:
        return False
    return age <= max_age and hmac.compare_digest(sign(secret, timestamp, body), signature)


def enqueue(session: Session, decision_id: int, url: str, payload: dict[str, Any]) -> None:
    body = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    session.add(WebhookDelivery(decision_id=decision_id, url=url, payload=body))


def _due(now: dt.datetime) -> Any:
    return select(WebhookDelivery).where(WebhookDelivery.state == "pending", WebhookDelivery.next_at <= now)


def deliver_due(db: Database, config: WebhookConfig, client: httpx.Client, *, limit: int = 50) -> int:
    """Post the deliveries that are due; returns how many were tried."""
    now = utcnow()
    with db.session() as session:
        due = session.scalars(_due(now).order_by(WebhookDelivery.next_at).limit(limit)).all()
        claims = [(d.id, d.next_at) for d in due]
    tried = 0
    for delivery_id, seen_next in claims:
        with db.session() as session:  # claim it: no other worker posts it while we do
            claimed = session.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.id == delivery_id,
                    WebhookDelivery.state == "pending",
                    WebhookDelivery.next_at == seen_next,
                )
                .values(next_at=now + LEASE)
                .returning(WebhookDelivery.id)
            ).all()
            if not claimed:
                continue
            row = session.get(WebhookDelivery, delivery_id)
            assert row is not None
            url, body, attempts = row.url, row.payload, row.attempts
        tried += 1
        error = _post(client, config, delivery_id, url, body)
        with db.session() as session:
            values: dict[str, Any] = {"attempts": attempts + 1}
            if error is None:
                values.update(state="delivered", delivered_at=utcnow(), last_error="")
            else:
                delay = min(config.max_delay, config.base_delay * 2**attempts)
                values.update(last_error=error[:500], next_at=utcnow() + dt.timedelta(seconds=delay))
                if attempts + 1 >= config.max_attempts:
                    values["state"] = "dead"
            session.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery_id).values(**values))
    return tried


def _post(client: httpx.Client, config: WebhookConfig, delivery_id: int, url: str, body: str) -> str | None:
    """None when the receiver took it (2xx); else why not."""
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-Childshield-Delivery": str(delivery_id),
        "X-Childshield-Timestamp": timestamp,
        "X-Childshield-Signature": sign(config.secret, timestamp, body),
    }
    try:
        response = client.post(url, content=body, headers=headers, timeout=config.timeout)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"
    if 200 <= response.status_code < 300:
        return None
    return f"HTTP {response.status_code}"


def replay_dead(db: Database) -> int:
    """Put dead deliveries back in line (after the receiver is fixed); returns how many."""
    with db.session() as session:
        rows = session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.state == "dead")
            .values(state="pending", attempts=0, next_at=utcnow())
            .returning(WebhookDelivery.id)
        ).all()
        return len(rows)
