"""The review queue over HTTP with the real app and database (SQLite and PostgreSQL): sign-in, sessions,
CSRF, blurred media and recorded reveals, consensus, escalation, the negative bank, sealed media."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from cryptography.exceptions import InvalidTag
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import select, text

from childshield.audit.log import records, verify_chain
from childshield.review.keys import Keyring
from childshield.review.media import load, purge_expired
from childshield.store.db import Database
from childshield.store.models import Decision, KeptMedia, ReviewItem, WebhookDelivery
from childshield.testing.corpus import encode, generated_photo
from childshield.web.app import create_app
from childshield.web.settings import ServiceSettings
from review_helpers import auth, bank_with, browser, csrf_of, people, png, sign_in


@pytest.fixture(autouse=True)
def _own_data_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))


@pytest.fixture(scope="module")
def known() -> np.ndarray:
    return generated_photo(711, 640, 480)


def make_app(db: Database, tmp_path: Path, **settings: object) -> FastAPI:
    conf = ServiceSettings(
        database_url=db.url,
        refresh_seconds=0,
        media_key_file=str(tmp_path / "keys" / "media.keys"),
        webhook_url="http://127.0.0.1:9/hook",  # never delivered here: only the outbox is checked
        **settings,  # type: ignore[arg-type]
    )
    return create_app(conf)


@pytest.fixture
def service(db: Database, tmp_path: Path, known: np.ndarray) -> Iterator[tuple[FastAPI, dict[str, str]]]:
    keys = people(db)
    app = make_app(db, tmp_path)
    bank_with(browser(app), keys["admin"], known)
    yield app, keys


def scan(app: FastAPI, key: str, data: bytes) -> dict[str, object]:
    r = browser(app).post("/v1/scan", content=data, headers=auth(key))
    assert r.status_code == 200, r.text
    out: dict[str, object] = r.json()
    return out


def items(db: Database) -> list[ReviewItem]:
    with db.session() as session:
        return list(session.scalars(select(ReviewItem).order_by(ReviewItem.id)).all())


REFUSED = 409
"""What ``decide`` returns for a verdict refused with the form kept (a 303 back to the item's page)."""


def decide(client: TestClient, csrf: str, item_id: int, verdict: str, classification: str = "") -> int:
    """303 when recorded; ``REFUSED`` when the page sent the reviewer back to the item (Post/Redirect/Get),
    where the reason is shown; else the status (e.g. a 409 for an item closed to the viewer)."""
    r = client.post(
        f"/review/items/{item_id}/decide",
        data={"verdict": verdict, "classification": classification, "csrf": csrf},
        follow_redirects=False,
    )
    if r.status_code == 303 and r.headers["location"] == f"/review/items/{item_id}":
        shown = client.get(r.headers["location"]).text
        assert 'id="verdict-error"' in shown, "a refused verdict must say why"
        return REFUSED
    return r.status_code


def sharpness(jpeg: bytes) -> tuple[float, float]:
    """(mean absolute second difference of luma, largest spread between colour channels)."""
    rgb = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"), dtype=np.float32)
    gray = rgb.mean(axis=2)
    lap = np.abs(gray[1:-1, 2:] + gray[1:-1, :-2] + gray[2:, 1:-1] + gray[:-2, 1:-1] - 4 * gray[1:-1, 1:-1])
    return float(lap.mean()), float(np.abs(rgb - rgb.mean(axis=2, keepdims=True)).max())


# --------------------------------------------------------------------------- intake


def test_matched_uploads_are_queued_with_sealed_media(
    db: Database, service: tuple[FastAPI, dict[str, str]], known: np.ndarray, tmp_path: Path
) -> None:
    app, keys = service
    upload = encode(known, "JPEG", quality=85)
    out = scan(app, keys["service"], upload)
    assert out["decision"] == "review"
    clean = scan(app, keys["service"], png(generated_photo(712, 640, 480)))
    assert clean["decision"] == "allow"
    queued = items(db)
    assert len(queued) == 1 and queued[0].content_id == out["content_id"] and queued[0].required == 2
    metrics = browser(app).get("/metrics", headers={"Authorization": f"Bearer {keys['admin']}"}).text
    assert 'childshield_review_items{state="pending"} 1.0' in metrics
    assert 'childshield_webhook_deliveries{state="pending"} 1.0' in metrics  # the decision's webhook
    with db.session() as session:
        kept = session.get_one(KeptMedia, queued[0].media_id)
        assert kept.size == len(upload) and upload[100:164] not in kept.sealed  # sealed, not stored plain
        assert kept.expires_at.replace(tzinfo=dt.UTC) - kept.created_at.replace(
            tzinfo=dt.UTC
        ) == dt.timedelta(hours=336)
    key_file = tmp_path / "keys" / "media.keys"
    assert key_file.stat().st_mode & 0o777 == 0o600
    keyring = Keyring.load(key_file)
    assert load(db, keyring, queued[0].media_id) == upload
    # Another key (or the same blob under another content id) does not open it.
    other = Keyring.load(tmp_path / "other.keys")
    with pytest.raises(InvalidTag):
        load(db, Keyring({keyring.current: other.keys[other.current]}, keyring.current), queued[0].media_id)
    with db.session() as session:
        row = session.get_one(KeptMedia, queued[0].media_id)
        with pytest.raises(InvalidTag):
            keyring.open(row.key_id, row.nonce, row.sealed, "another content id")


def test_media_expires_and_is_purged_with_an_audit_record(
    db: Database, service: tuple[FastAPI, dict[str, str]], known: np.ndarray, tmp_path: Path
) -> None:
    app, keys = service
    scan(app, keys["service"], png(known))
    item = items(db)[0]
    assert purge_expired(db) == 0
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=337)
    assert purge_expired(db, now=later) == 1
    assert items(db)[0].media_id is None  # the item stays, its media is gone
    assert any(r.action == "media.purge" and item.id in r.details["items"] for r in records(db))
    reviewer, _ = sign_in(app, "r1")
    page = reviewer.get(f"/review/items/{item.id}")
    assert "No media was kept" in page.text
    assert reviewer.get(f"/review/items/{item.id}/media").status_code == 404


def test_block_and_quarantine_are_queued_too_and_media_can_be_left_unkept(
    db: Database, tmp_path: Path, known: np.ndarray
) -> None:
    keys = people(db)
    app = make_app(db, tmp_path, keep_media=False, review_actions=("block",))
    bank_with(browser(app), keys["admin"], known, action="block")
    assert scan(app, keys["service"], png(known))["decision"] == "block"
    queued = items(db)
    assert len(queued) == 1 and queued[0].media_id is None
    assert not (tmp_path / "keys" / "media.keys").exists()


# --------------------------------------------------------------------------- sign-in and sessions


def test_sign_in_sets_a_secure_session_and_refuses_wrong_passwords(
    db: Database, service: tuple[FastAPI, dict[str, str]]
) -> None:
    app, _ = service
    anonymous = browser(app)
    r = anonymous.get("/review", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/review"
    htmx = anonymous.get("/review", headers={"HX-Request": "true"}, follow_redirects=False)
    assert htmx.status_code == 401 and htmx.headers["HX-Redirect"].startswith("/login")

    page = anonymous.get("/login")
    token = csrf_of(page.text)
    wrong = anonymous.post("/login", data={"name": "r1", "password": "nope nope nope", "csrf": token})
    assert wrong.status_code == 401 and "Wrong name or password" in wrong.text
    no_csrf = browser(app).post("/login", data={"name": "r1", "password": "correct horse battery"})
    assert no_csrf.status_code == 403
    service_account = anonymous.post("/login", data={"name": "platform", "password": "x" * 12, "csrf": token})
    assert service_account.status_code == 401

    page = anonymous.get("/login")
    ok = anonymous.post(
        "/login",
        data={
            "name": "r1",
            "password": "correct horse battery",
            "csrf": csrf_of(page.text),
            "next": "//evil",
        },
        follow_redirects=False,
    )
    assert ok.status_code == 303 and ok.headers["location"] == "/review"  # never off-site
    cookie = ok.headers["set-cookie"].lower()
    assert (
        "cs_session=" in cookie
        and "httponly" in cookie
        and "secure" in cookie
        and "samesite=strict" in cookie
    )
    queue = anonymous.get("/review")
    assert queue.status_code == 200 and "r1" in queue.text
    assert "default-src 'self'" in queue.headers["content-security-policy"]
    assert queue.headers["x-frame-options"] == "DENY" and queue.headers["cache-control"] == "no-store"

    logout = anonymous.post("/logout", data={"csrf": csrf_of(queue.text)}, follow_redirects=False)
    assert logout.status_code == 303
    stale = browser(app)
    stale.cookies.set("cs_session", ok.cookies["cs_session"], domain="testserver.local")
    assert stale.get("/review", follow_redirects=False).status_code == 303  # the session ended server-side
    actions = [r.action for r in records(db)]
    assert actions.count("login") == 1 and "login.failed" in actions and "logout" in actions


def test_sign_in_attempts_are_rate_limited(db: Database, service: tuple[FastAPI, dict[str, str]]) -> None:
    app, _ = service
    client = browser(app)
    codes = []
    for _ in range(7):
        token = csrf_of(client.get("/login").text)
        r = client.post("/login", data={"name": "r2", "password": "guess guess guess", "csrf": token})
        codes.append(r.status_code)
    assert codes[:5] == [401] * 5 and codes[-1] == 429
    token = csrf_of(client.get("/login").text)
    right = client.post("/login", data={"name": "r2", "password": "correct horse battery", "csrf": token})
    assert (
        right.status_code == 429 and int(right.headers["retry-after"]) >= 1
    )  # even the right password waits


def test_forms_need_the_session_csrf_token_and_the_same_origin(
    db: Database, service: tuple[FastAPI, dict[str, str]], known: np.ndarray
) -> None:
    app, keys = service
    scan(app, keys["service"], png(known))
    item = items(db)[0]
    reviewer, csrf = sign_in(app, "r1")
    assert reviewer.post(f"/review/items/{item.id}/reveal").status_code == 403
    assert reviewer.post(f"/review/items/{item.id}/reveal", data={"csrf": "forged"}).status_code == 403
    cross = reviewer.post(
        f"/review/items/{item.id}/reveal", data={"csrf": csrf}, headers={"Origin": "https://evil.example"}
    )
    assert cross.status_code == 403
    assert decide(reviewer, "forged", item.id, "reject") == 403
    assert items(db)[0].state.value == "pending"
    ok = reviewer.post(
        f"/review/items/{item.id}/reveal", headers={"X-CSRF-Token": csrf, "HX-Request": "true"}
    )
    assert ok.status_code == 200 and "view=full" in ok.text


# --------------------------------------------------------------------------- wellness


def test_media_is_blurred_and_gray_until_a_recorded_reveal(
    db: Database, service: tuple[FastAPI, dict[str, str]], known: np.ndarray
) -> None:
    app, keys = service
    scan(app, keys["service"], png(known))
    item = items(db)[0]
    reviewer, csrf = sign_in(app, "r1")
    page = reviewer.get(f"/review/items/{item.id}")
    assert 'class="blurred"' in page.text and "view=full" not in page.text and "autoplay" not in page.text
    assert reviewer.get(f"/review/items/{item.id}/media?view=full").status_code == 403  # not revealed yet
    blurred = reviewer.get(f"/review/items/{item.id}/media")
    assert blurred.headers["content-type"] == "image/jpeg" and "no-store" in blurred.headers["cache-control"]
    forced = reviewer.get(f"/review/items/{item.id}/media?blur=0")  # clamped: never below the minimum
    assert not any(r.action == "review.reveal" for r in records(db))

    r = reviewer.post(f"/review/items/{item.id}/reveal", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303
    full = reviewer.get(f"/review/items/{item.id}/media?view=full")
    assert full.status_code == 200
    (blur_edges, blur_colour), (full_edges, full_colour) = sharpness(blurred.content), sharpness(full.content)
    assert blur_colour <= 3 and full_colour > 40  # gray until revealed
    assert full_edges > 4 * blur_edges and sharpness(forced.content)[0] < full_edges / 2
    reveals = [r for r in records(db) if r.action == "review.reveal"]
    assert len(reveals) == 1 and reveals[0].actor == "r1" and reveals[0].subject == f"review:{item.id}"
    # Another reviewer's session has not revealed it.
    other, _ = sign_in(app, "r2")
    assert other.get(f"/review/items/{item.id}/media?view=full").status_code == 403

    light = reviewer.post(
        f"/review/items/{item.id}/blur",
        data={"blur": "8"},
        headers={"X-CSRF-Token": csrf, "HX-Request": "true"},
    )
    assert light.status_code == 200 and "blur=8" in light.text
    weak = reviewer.get(f"/review/items/{item.id}/media")  # the chosen blur is remembered by the session
    assert sharpness(blurred.content)[0] < sharpness(weak.content)[0] < full_edges


def test_session_count_and_break_prompt(db: Database, tmp_path: Path, known: np.ndarray) -> None:
    keys = people(db)
    app = make_app(db, tmp_path, break_every_items=2, consensus=1)
    bank_with(browser(app), keys["admin"], known)
    for seed in range(3):  # three uploads matching the known image (small edits)
        scan(app, keys["service"], encode(known, "JPEG", quality=70 + 10 * seed))
    reviewer, csrf = sign_in(app, "r1")
    first = reviewer.get("/review").text
    assert "Reviewed this session: <strong>0</strong>" in first and "break-prompt" not in first
    for item in items(db)[:2]:
        assert decide(reviewer, csrf, item.id, "confirm", "B2") == 303
    page = reviewer.get("/review").text
    assert "Reviewed this session: <strong>2</strong>" in page and "break-prompt" in page
    reviewer.post("/review/break", data={"csrf": csrf})
    after = reviewer.get("/review").text
    assert "break-prompt" not in after and "Reviewed this session: <strong>2</strong>" in after


# --------------------------------------------------------------------------- consensus


def test_two_agreeing_reviewers_confirm(
    db: Database, service: tuple[FastAPI, dict[str, str]], known: np.ndarray
) -> None:
    app, keys = service
    scan(app, keys["service"], png(known))
    item = items(db)[0]
    r1, c1 = sign_in(app, "r1")
    r2, c2 = sign_in(app, "r2")
    assert decide(r1, c1, item.id, "confirm") == 409  # confirming needs a classification
    assert decide(r1, c1, item.id, "confirm", "A2") == 303
    assert items(db)[0].state.value == "pending"
    assert decide(r1, c1, item.id, "confirm", "A2") == 409  # once per reviewer
    assert f"/review/items/{item.id}" not in r1.get("/review").text  # gone from r1's queue
    page = r2.get(f"/review/items/{item.id}")
    assert "r1" not in page.text.split("Context")[1]  # r2 does not see r1's verdict (independent)
    assert decide(r2, c2, item.id, "confirm", "A2") == 303
    settled = items(db)[0]
    assert settled.state.value == "confirmed" and settled.classification == "A2" and settled.settled_at
    done = r2.get(f"/review?done={item.id}").text
    assert "settled" in done and "confirmed" in done
    with db.session() as session:
        hooks = [d.payload for d in session.scalars(select(WebhookDelivery)).all()]
    assert any(
        '"event":"review"' in h and '"outcome":"confirmed"' in h and '"classification":"A2"' in h
        for h in hooks
    )
    verify_chain(db)


def test_disagreement_goes_to_a_senior_whose_rejection_feeds_the_negative_bank(
    db: Database, service: tuple[FastAPI, dict[str, str]], known: np.ndarray
) -> None:
    app, keys = service
    upload = png(known)
    scan(app, keys["service"], upload)
    item = items(db)[0]
    r1, c1 = sign_in(app, "r1")
    r2, c2 = sign_in(app, "r2")
    r3, c3 = sign_in(app, "r3")
    s1, cs = sign_in(app, "s1")
    assert decide(r1, c1, item.id, "confirm", "B1") == 303
    assert decide(r2, c2, item.id, "reject") == 303
    assert items(db)[0].state.value == "escalated"
    assert f"/review/items/{item.id}" not in r3.get("/review").text  # reviewers no longer see it
    assert decide(r3, c3, item.id, "reject") == 409  # only a senior settles an escalation
    page = s1.get(f"/review/items/{item.id}").text
    assert "Senior ruling" in page and "B1" in page and "r2" in page  # the senior sees both verdicts
    assert 'value="escalate"' not in page
    assert decide(s1, cs, item.id, "reject") == 303
    assert items(db)[0].state.value == "rejected"
    with db.engine.connect() as c:
        entries = c.execute(
            text(
                "SELECT e.signal_type, b.kind FROM entries e JOIN banks b ON b.id = e.bank_id "
                "WHERE b.name = 'false-matches'"
            )
        ).all()
    assert sorted(e[0] for e in entries) == ["pdq", "sha256"] and {e[1] for e in entries} == {"negative"}
    with db.session() as session:
        kept = session.scalars(select(KeptMedia.expires_at)).one()
    assert kept.replace(tzinfo=dt.UTC) <= dt.datetime.now(dt.UTC)  # not needed any more: purged next round
    again = scan(app, keys["service"], upload)  # the same false match is now cleared, and not queued again
    assert again["matched"] is False and again["suppressed"] and len(items(db)) == 1
    with db.engine.connect() as c:  # its exact digests in the bank were found wrong: disputed, with why
        states = c.execute(
            text(
                "SELECT e.signal_type, e.state, e.state_reason FROM entries e "
                "JOIN banks b ON b.id = e.bank_id WHERE b.name != 'false-matches' "
                "AND e.signal_type IN ('md5', 'sha1', 'sha256')"
            )
        ).all()
    assert {(t, st) for t, st, _ in states} == {
        ("md5", "disputed"),
        ("sha1", "disputed"),
        ("sha256", "disputed"),
    }
    assert all(reason == f"rejected in review item {item.id}" for _, _, reason in states)


def test_three_reviewer_consensus_and_escalation_by_choice(
    db: Database, tmp_path: Path, known: np.ndarray
) -> None:
    keys = people(db)
    app = make_app(db, tmp_path, consensus=3)
    bank_with(browser(app), keys["admin"], known)
    scan(app, keys["service"], png(known))
    scan(app, keys["service"], encode(known, "JPEG", quality=75))
    first, second = items(db)
    voters = [sign_in(app, n) for n in ("r1", "r2", "r3")]
    for k, (client, csrf) in enumerate(voters):
        assert decide(client, csrf, first.id, "confirm", "A1") == 303
        assert items(db)[0].state.value == ("confirmed" if k == 2 else "pending")
    (c1, t1) = voters[0]
    assert decide(c1, t1, second.id, "escalate") == 303
    assert items(db)[1].state.value == "escalated"


def test_roles_see_only_what_they_may(
    db: Database, service: tuple[FastAPI, dict[str, str]], known: np.ndarray
) -> None:
    app, keys = service
    scan(app, keys["service"], png(known))
    item = items(db)[0]
    # API keys do not open the UI; the UI's session does not open the API.
    api = browser(app).get("/review", headers=auth(keys["service"]), follow_redirects=False)
    assert api.status_code == 303
    reviewer, _ = sign_in(app, "r1")
    assert reviewer.get("/v1/banks").status_code == 401
    admin, csrf = sign_in(app, "boss")
    assert f"/review/items/{item.id}" in admin.get("/review").text
    assert decide(admin, csrf, item.id, "confirm", "A1") == 303
    assert reviewer.get("/review/items/999999").status_code == 404
    assert re.search(r"Pending \d+", reviewer.get("/review").text)


def test_policy_per_classification(db: Database, tmp_path: Path, known: np.ndarray) -> None:
    keys = people(db)
    app = make_app(db, tmp_path)
    client = browser(app)
    admin = auth(keys["admin"])
    policy = {"action": "review", "label_actions": {"A1": "block", "B2": "allow"}}
    assert (
        client.post("/v1/banks", json={"name": "labelled", "policy": policy}, headers=admin).status_code
        == 201
    )
    bad = client.post(
        "/v1/banks", json={"name": "bad", "policy": {"label_actions": {"A1": "burn"}}}, headers=admin
    )
    assert bad.status_code == 422 and "label_actions" in bad.text
    uploads = {label: png(generated_photo(720 + k, 320, 240)) for k, label in enumerate(["A1", "B2", "none"])}
    entries = [
        {
            "type": "sha256",
            "value": hashlib.sha256(data).hexdigest(),
            "labels": [] if label == "none" else [label],
        }
        for label, data in uploads.items()
    ]
    assert (
        client.post("/v1/banks/labelled/signals", json={"signals": entries}, headers=admin).status_code == 200
    )
    decided = {label: scan(app, keys["service"], data)["decision"] for label, data in uploads.items()}
    assert decided == {"A1": "block", "B2": "review", "none": "review"}  # at least the bank's action
    with db.session() as session:
        recorded = session.scalars(select(Decision.matches)).all()
    assert any(m[0]["labels"] == ["A1"] for m in recorded)


def test_seniors_see_escalations_first_and_unmatched_rejections_stay_out_of_the_negative_bank(
    db: Database, service: tuple[FastAPI, dict[str, str]], known: np.ndarray
) -> None:
    from childshield.actions.decisions import record_decision, snapshot
    from childshield.matching.matcher import Matcher
    from childshield.review.intake import Intake, review_intake

    app, keys = service
    for quality in (70, 80, 90):
        scan(app, keys["service"], encode(known, "JPEG", quality=quality))
    record_decision(  # an item without a match, as the crawler queues unmatched media next to known material
        db, content_id="crawl-test", decision="review", policy=snapshot(Matcher.load(db)), matches=[],
        actor="crawler", sha256="ef" * 32, pdq="0" * 64, source="crawl",
        then=review_intake(Intake(keyring=None, keep_media=False), b""), context={"page_url": "http://x.test/"},
    )  # fmt: skip
    queued = items(db)
    r1, c1 = sign_in(app, "r1")
    r2, c2 = sign_in(app, "r2")
    assert decide(r1, c1, queued[2].id, "escalate") == 303
    s1, _ = sign_in(app, "s1")
    first_row = s1.get("/review").text.split("<tbody>")[1]
    assert first_row.index(f"/review/items/{queued[2].id}") < first_row.index(f"/review/items/{queued[0].id}")
    assert s1.get("/review?done=999999").status_code == 200
    page = r1.get(f"/review/items/{queued[3].id}").text
    assert "http://x.test/" in page and "None: this item matched nothing itself" in page
    for client, csrf in ((r1, c1), (r2, c2)):
        assert decide(client, csrf, queued[3].id, "reject") == 303
    assert items(db)[3].state.value == "rejected"
    with db.engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM banks WHERE name = 'false-matches'")).scalar_one() == 0


def test_media_stays_viewable_after_a_key_rotation(
    db: Database, service: tuple[FastAPI, dict[str, str]], known: np.ndarray, tmp_path: Path
) -> None:
    from childshield.review.keys import rotate
    from childshield.review.media import reseal

    app, keys = service
    scan(app, keys["service"], png(known))
    item = items(db)[0]
    key_file = tmp_path / "keys" / "media.keys"
    rotate(key_file)  # an operator rotates and re-seals while the service runs
    new = Keyring.load(key_file)
    assert reseal(db, new) == 1
    key_file.write_text(
        key_file.read_text().splitlines()[0] + "\n" + key_file.read_text().splitlines()[-1] + "\n"
    )
    reviewer, _ = sign_in(app, "r1")
    view = reviewer.get(f"/review/items/{item.id}/media")  # the worker still holds the old keyring
    assert view.status_code == 200 and view.headers["content-type"] == "image/jpeg"
