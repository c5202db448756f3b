"""The HTTP API with the real app, the real database (SQLite and PostgreSQL) and real API keys."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import text

from childshield.accounts.service import (
    AccountError,
    authenticate_password,
    create_api_key,
    create_user,
    revoke_api_key,
)
from childshield.audit.log import ChainBroken, verify_chain
from childshield.hashing.service import hash_bytes
from childshield.store.db import Database
from childshield.store.models import Role
from childshield.testing.corpus import encode, generated_photo
from childshield.web.app import create_app
from childshield.web.settings import ServiceSettings


@pytest.fixture(autouse=True)
def _own_data_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))


@pytest.fixture
def keys(db: Database) -> dict[Role, str]:
    out = {}
    for role in Role:
        create_user(
            db, f"{role.value}-1", role, password=None if role is Role.SERVICE else "correct horse battery"
        )
        out[role] = create_api_key(db, f"{role.value}-1")
    return out


@pytest.fixture
def client(db: Database) -> Iterator[TestClient]:
    app = create_app(ServiceSettings(database_url=db.url, max_upload_bytes=2_000_000, refresh_seconds=0))
    with TestClient(app) as c:
        yield c


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def sql(db: Database, query: str) -> list[tuple[object, ...]]:
    with db.engine.connect() as connection:
        return [tuple(row) for row in connection.execute(text(query))]


def png(pixels: np.ndarray) -> bytes:
    return encode(pixels, "PNG", compress_level=1)


@pytest.fixture(scope="module")
def known() -> np.ndarray:
    return generated_photo(611, 640, 480)


def make_bank(client: TestClient, admin: str, name: str = "known", **extra: object) -> None:
    r = client.post("/v1/banks", json={"name": name, **extra}, headers=auth(admin))
    assert r.status_code == 201, r.text


# --------------------------------------------------------------------------- system


def test_health_ready_openapi_and_metrics(client: TestClient, keys: dict[Role, str]) -> None:
    assert client.get("/v1/health").json() == {"status": "ok"}
    ready = client.get("/v1/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    spec = client.get("/openapi.json").json()
    for path in (
        "/v1/scan",
        "/v1/lookup",
        "/v1/banks",
        "/v1/banks/{name}/media",
        "/v1/banks/{name}/entries/{entry_id}",
    ):
        assert path in spec["paths"], path
    body = spec["paths"]["/v1/scan"]["post"]["requestBody"]["content"]
    assert {"application/octet-stream", "multipart/form-data"} <= set(body)
    assert client.get("/metrics").status_code == 401  # an admin's key, unless CHILDSHIELD_METRICS_OPEN
    assert client.get("/metrics", headers=auth(keys[Role.SERVICE])).status_code == 403
    assert client.get("/metrics", headers=auth(keys[Role.ADMIN])).status_code == 200


# --------------------------------------------------------------------------- authentication and roles


def test_keys_are_required_checked_and_revocable(
    client: TestClient, db: Database, keys: dict[Role, str]
) -> None:
    body = {"signals": [{"type": "md5", "value": "0" * 32}]}
    assert client.post("/v1/lookup", json=body).status_code == 401
    assert client.post("/v1/lookup", json=body, headers=auth("cs_00000000_nope")).status_code == 401
    assert client.post("/v1/lookup", json=body, headers=auth(keys[Role.SERVICE] + "x")).status_code == 401
    assert client.post("/v1/lookup", json=body, headers={"X-API-Key": keys[Role.SERVICE]}).status_code == 200
    revoke_api_key(db, keys[Role.SERVICE].split("_", 2)[1])
    assert client.post("/v1/lookup", json=body, headers=auth(keys[Role.SERVICE])).status_code == 401


ROLE_MATRIX = [
    # (method, path, body, roles allowed)
    ("post", "/v1/lookup", {"signals": [{"type": "md5", "value": "0" * 32}]}, {Role.ADMIN, Role.SERVICE}),
    ("get", "/v1/banks", None, {Role.ADMIN, Role.SERVICE, Role.SENIOR}),
    ("get", "/v1/banks/known", None, {Role.ADMIN, Role.SERVICE, Role.SENIOR}),
    ("post", "/v1/banks", {"name": "other"}, {Role.ADMIN}),
    ("patch", "/v1/banks/known", {"description": "x"}, {Role.ADMIN}),
    ("post", "/v1/banks/known/signals", {"signals": [{"type": "md5", "value": "1" * 32}]}, {Role.ADMIN}),
    ("get", "/v1/banks/known/export", None, {Role.ADMIN}),
]


@pytest.mark.parametrize(("method", "path", "body", "allowed"), ROLE_MATRIX)
def test_each_role_against_each_endpoint(
    client: TestClient,
    keys: dict[Role, str],
    method: str,
    path: str,
    body: object,
    allowed: set[Role],
) -> None:
    make_bank(client, keys[Role.ADMIN])
    for role in Role:
        kwargs: dict[str, object] = {"headers": auth(keys[role])}
        if body is not None:
            kwargs["json"] = body
        r = getattr(client, method)(path, **kwargs)
        if role in allowed:
            assert r.status_code < 400, (role, r.status_code, r.text)
            if method == "post" and path == "/v1/banks":
                client.patch("/v1/banks/other", json={"enabled": False}, headers=auth(keys[Role.ADMIN]))
                break  # created once: the others would conflict
        else:
            assert r.status_code == 403, (role, r.status_code, r.text)


def test_scan_roles(client: TestClient, keys: dict[Role, str], known: np.ndarray) -> None:
    data = png(known)
    for role in Role:
        r = client.post("/v1/scan", content=data, headers=auth(keys[role]))
        assert r.status_code == (200 if role in (Role.ADMIN, Role.SERVICE) else 403), (role, r.text)


# --------------------------------------------------------------------------- scanning


def test_scan_matches_and_decides_by_policy(
    client: TestClient, keys: dict[Role, str], known: np.ndarray
) -> None:
    admin, service = keys[Role.ADMIN], keys[Role.SERVICE]
    make_bank(client, admin, policy={"action": "block"})
    added = client.post("/v1/banks/known/media?filename=item.png", content=png(known), headers=auth(admin))
    assert added.status_code == 200, added.text
    assert (
        added.json()["added"] == 4 and added.json()["variants"] > 100 and added.json()["local_features"] == 1
    )

    raw = client.post("/v1/scan", content=encode(known, "JPEG", quality=80), headers=auth(service))
    assert raw.status_code == 200, raw.text
    out = raw.json()
    assert out["matched"] and out["decision"] == "block" and len(out["content_id"]) == 32
    assert {m["check"] for m in out["matches"]} == {"pdq"} and out["signals"]["width"] == 640

    mirrored = png(np.ascontiguousarray(known[:, ::-1]))
    form = client.post("/v1/scan", files={"file": ("m.png", mirrored, "image/png")}, headers=auth(service))
    assert form.status_code == 200 and form.json()["matches"][0]["query_variant"] == "flipx"

    other = client.post("/v1/scan", content=png(generated_photo(612, 640, 480)), headers=auth(service))
    assert other.json()["matched"] is False and other.json()["decision"] == "allow"

    client.patch("/v1/banks/known", json={"policy": {"action": "review"}}, headers=auth(admin))
    again = client.post("/v1/scan", content=png(known), headers=auth(service))
    assert again.json()["decision"] == "review"  # the policy change is seen at once (refresh_seconds=0)
    metrics = client.get("/metrics", headers=auth(admin)).text
    assert 'childshield_scans_total{outcome="matched"} 3.0' in metrics


def test_scan_refuses_bad_uploads_clearly(
    client: TestClient, keys: dict[Role, str], known: np.ndarray
) -> None:
    service = auth(keys[Role.SERVICE])
    truncated = encode(known, "JPEG", quality=90)[:300]
    r = client.post("/v1/scan", content=truncated, headers=service)
    assert r.status_code == 422 and r.json()["detail"]
    assert client.post("/v1/scan", content=b"", headers=service).status_code == 422
    assert client.post("/v1/scan", content=b"not an image at all", headers=service).status_code == 422
    big = client.post("/v1/scan", content=b"\0" * 2_000_001, headers=service)
    assert big.status_code == 413
    no_file = client.post("/v1/scan", files={"other": ("x", b"abc")}, headers=service)
    assert no_file.status_code == 422
    bomb = io.BytesIO()
    Image.new("1", (12_000, 12_000)).save(bomb, format="PNG")  # 144 MP, over the 100 MP limit
    assert len(bomb.getvalue()) < 2_000_000
    refused = client.post("/v1/scan", content=bomb.getvalue(), headers=service)
    assert refused.status_code == 422 and "MP" in refused.json()["detail"]


def test_lookup_answers_each_signal_in_order(
    client: TestClient, keys: dict[Role, str], known: np.ndarray
) -> None:
    admin = keys[Role.ADMIN]
    make_bank(client, admin)
    client.post("/v1/banks/known/media", content=png(known), headers=auth(admin))
    h = hash_bytes(png(known))
    near = f"{int(h.pdq, 16) ^ 0b111:064x}"
    body = {
        "signals": [
            {"type": "pdq", "value": near, "quality": 90, "id": "a"},
            {"type": "md5", "value": "zz", "id": "b"},
            {"type": "SHA256", "value": h.sha256.upper(), "id": "c"},
            {"type": "pdq", "value": near, "quality": 10, "id": "d"},
        ]
    }
    r = client.post("/v1/lookup", json=body, headers=auth(keys[Role.SERVICE]))
    assert r.status_code == 200, r.text
    a, b, c, d = r.json()["results"]
    assert (a["id"], a["matched"], a["matches"][0]["distance"]) == ("a", True, 3)
    assert b["id"] == "b" and b["error"] and not b["matched"]
    assert c["matched"] and c["matches"][0]["check"] == "sha256"
    assert not d["matched"] and "quality" in d["note"]


# --------------------------------------------------------------------------- banks


def test_bank_lifecycle_over_http(
    client: TestClient, db: Database, keys: dict[Role, str], known: np.ndarray
) -> None:
    admin, service = auth(keys[Role.ADMIN]), auth(keys[Role.SERVICE])
    make_bank(client, keys[Role.ADMIN])
    assert client.post("/v1/banks", json={"name": "known"}, headers=admin).status_code == 409
    assert client.post("/v1/banks", json={"name": "bad name!"}, headers=admin).status_code == 422
    assert client.get("/v1/banks/nope", headers=admin).status_code == 404
    bad_policy = client.patch("/v1/banks/known", json={"policy": {"action": "explode"}}, headers=admin)
    assert bad_policy.status_code == 422 and "action" in bad_policy.json()["detail"]

    signals = {
        "signals": [{"type": "md5", "value": "a" * 32, "external_id": "x-1"}, {"type": "md5", "value": "zz"}]
    }
    strict = client.post("/v1/banks/known/signals", json={**signals, "strict": True}, headers=admin)
    assert strict.status_code == 422
    lenient = client.post("/v1/banks/known/signals", json=signals, headers=admin).json()
    assert lenient["added"] == 1 and len(lenient["skipped"]) == 1

    lookup = {"signals": [{"type": "md5", "value": "a" * 32}]}
    hit = client.post("/v1/lookup", json=lookup, headers=service).json()["results"][0]["matches"][0]
    assert hit["external_id"] == "x-1"
    r = client.patch(
        f"/v1/banks/known/entries/{hit['entry_id']}",
        json={"state": "disabled", "reason": "false match"},
        headers=admin,
    )
    assert r.status_code == 204
    assert client.post("/v1/lookup", json=lookup, headers=service).json()["results"][0]["matched"] is False
    missing = client.patch("/v1/banks/known/entries/999999", json={"state": "active"}, headers=admin)
    assert missing.status_code == 404

    exported = client.get("/v1/banks/known/export?format=csv", headers=admin)
    assert exported.status_code == 200 and "a" * 32 not in exported.text  # disabled: not exported
    info = client.get("/v1/banks/known", headers=admin).json()
    assert info["entries"]["disabled"] == 1

    count, _ = verify_chain(db)
    actions = [r[0] for r in sql(db, "SELECT action FROM audit_log ORDER BY seq")]
    assert {"bank.create", "bank.add_signals", "entry.disabled", "bank.export"} <= set(actions)
    assert count == len(actions)


# --------------------------------------------------------------------------- accounts and audit


def test_passwords_are_argon2_and_checked(db: Database) -> None:
    with pytest.raises(AccountError):
        create_user(db, "short", Role.REVIEWER, password="too short")
    with pytest.raises(AccountError):
        create_user(db, "nopass", Role.REVIEWER)
    create_user(db, "rev", Role.REVIEWER, password="a long enough passphrase")
    with pytest.raises(AccountError):
        create_user(db, "rev", Role.ADMIN, password="a long enough passphrase")
    stored = sql(db, "SELECT password_hash FROM users WHERE name='rev'")[0][0]
    assert stored.startswith("$argon2id$") and "passphrase" not in stored
    who = authenticate_password(db, "rev", "a long enough passphrase")
    assert who is not None and who.role is Role.REVIEWER
    assert authenticate_password(db, "rev", "a long enough passphrasE") is None
    assert authenticate_password(db, "nobody", "a long enough passphrase") is None
    key = create_api_key(db, "rev")
    stored_keys = [r[0] for r in sql(db, "SELECT key_hash FROM api_keys")]
    assert key not in stored_keys and key.split("_", 2)[2] not in "".join(stored_keys)


def test_audit_chain_detects_tampering(db: Database) -> None:
    for k in range(5):
        create_user(db, f"svc{k}", Role.SERVICE)
    count, head = verify_chain(db)
    assert count == 5 and len(head) == 64
    with db.engine.begin() as connection:
        connection.execute(text("UPDATE audit_log SET actor = 'someone else' WHERE seq = 3"))
    with pytest.raises(ChainBroken) as broken:
        verify_chain(db)
    assert broken.value.seq == 3
    with db.engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_log WHERE seq = 3"))
    with pytest.raises(ChainBroken) as gap:
        verify_chain(db)
    assert gap.value.seq == 3 and "missing" in gap.value.reason


def test_rate_limit_per_key_with_retry_after(db: Database, keys: dict[Role, str]) -> None:
    settings = ServiceSettings(database_url=db.url, refresh_seconds=0, scan_rate=0.5, scan_burst=3)
    body = {"signals": [{"type": "md5", "value": "0" * 32}]}
    with TestClient(create_app(settings)) as c:
        codes = [
            c.post("/v1/lookup", json=body, headers=auth(keys[Role.SERVICE])).status_code for _ in range(5)
        ]
        assert codes == [200, 200, 200, 429, 429]
        limited = c.post("/v1/lookup", json=body, headers=auth(keys[Role.SERVICE]))
        assert int(limited.headers["Retry-After"]) >= 1 and "slow down" in limited.json()["detail"]
        # another key has its own allowance
        assert c.post("/v1/lookup", json=body, headers=auth(keys[Role.ADMIN])).status_code == 200


def test_rate_limiter_refills_and_stays_bounded() -> None:
    from childshield.web.ratelimit import RateLimiter

    limiter = RateLimiter(rate=1000, burst=2, max_callers=10)
    assert limiter.check("a") == 0 and limiter.check("a") == 0
    wait = limiter.check("a")
    assert 0 < wait <= 0.002
    time.sleep(wait + 0.002)
    assert limiter.check("a") == 0
    for k in range(50):
        limiter.check(f"caller-{k}")
    assert len(limiter._buckets) <= 10
    assert RateLimiter(rate=0, burst=1).check("x") == 0  # 0: no limit
