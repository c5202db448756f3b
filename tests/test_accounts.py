"""Accounts' lifecycle (issue 16.10): disable and enable, password resets, role changes and listings, over
the API (admins only) and the CLI, each change an audit record naming who made it; on SQLite and
PostgreSQL, with real sign-ins, sessions and API keys."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from childshield.accounts.service import (
    AccountConflict,
    authenticate_password,
    create_api_key,
    create_user,
    set_disabled,
    set_role,
)
from childshield.audit.log import AuditRecord, records, verify_chain
from childshield.cli import app as cli_app
from childshield.store.db import Database, open_database
from childshield.store.models import Role
from childshield.web.app import create_app
from childshield.web.settings import ServiceSettings
from review_helpers import PASSWORD, auth, browser, sign_in

NEW_PASSWORD = "a brand new passphrase"
LOOKUP = {"signals": [{"type": "md5", "value": "0" * 32}]}


@pytest.fixture(autouse=True)
def _own_data_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))


@pytest.fixture
def app(db: Database) -> Iterator[FastAPI]:
    create_user(db, "boss", Role.ADMIN, password=PASSWORD)
    create_user(db, "r1", Role.REVIEWER, password=PASSWORD)
    create_user(db, "platform", Role.SERVICE)
    service = create_app(ServiceSettings(database_url=db.url, refresh_seconds=0, keep_media=False))
    yield service
    service.state.db.close()


@pytest.fixture
def admin(db: Database, app: FastAPI) -> TestClient:
    """The API as the admin ``boss``."""
    client = browser(app)
    client.headers.update(auth(create_api_key(db, "boss")))
    return client


def audited(db: Database, action: str) -> list[AuditRecord]:
    return [r for r in records(db) if r.action == action]


def signed_out(client: TestClient) -> bool:
    """Whether the client's session cookie no longer opens the review UI (sent to sign in)."""
    r = client.get("/review", follow_redirects=False)
    assert r.status_code in (200, 303), r.text
    return r.status_code == 303 and r.headers["location"].startswith("/login")


def can_sign_in(app: FastAPI, name: str, password: str) -> bool:
    try:
        sign_in(app, name, password)
    except AssertionError:
        return False
    return True


# --------------------------------------------------------------------------- disable and enable


def test_a_disabled_account_is_refused_at_once_and_its_sessions_stay_ended(
    db: Database, app: FastAPI, admin: TestClient
) -> None:
    reviewer, _ = sign_in(app, "r1")
    assert not signed_out(reviewer)
    key = create_api_key(db, "platform")
    platform = browser(app)
    assert platform.post("/v1/lookup", json=LOOKUP, headers=auth(key)).status_code == 200

    r = admin.patch("/v1/accounts/r1", json={"disabled": True})
    assert r.status_code == 200 and r.json()["disabled"] is True and r.json()["sessions"] == 0
    assert signed_out(reviewer)  # the live session, on its very next request
    assert not can_sign_in(app, "r1", PASSWORD)
    assert admin.patch("/v1/accounts/platform", json={"disabled": True}).status_code == 200
    assert platform.post("/v1/lookup", json=LOOKUP, headers=auth(key)).status_code == 401

    r = admin.patch("/v1/accounts/r1", json={"disabled": False})
    assert r.status_code == 200 and r.json()["disabled"] is False
    assert signed_out(reviewer)  # the session ended with the disabling: enabling does not bring it back
    assert can_sign_in(app, "r1", PASSWORD)
    assert admin.patch("/v1/accounts/platform", json={"disabled": False}).status_code == 200
    assert platform.post("/v1/lookup", json=LOOKUP, headers=auth(key)).status_code == 200  # not revoked

    disabled, enabled = audited(db, "account.disable"), audited(db, "account.enable")
    assert [(x.actor, x.subject, x.details) for x in disabled] == [
        ("boss", "user:r1", {"sessions_ended": 1}),
        ("boss", "user:platform", {"sessions_ended": 0}),
    ]
    assert [(x.actor, x.subject) for x in enabled] == [("boss", "user:r1"), ("boss", "user:platform")]
    # unchanged: no second record
    assert admin.patch("/v1/accounts/r1", json={"disabled": False}).status_code == 200
    assert len(audited(db, "account.enable")) == 2
    verify_chain(db)


# --------------------------------------------------------------------------- passwords


def test_a_password_reset_ends_every_session(db: Database, app: FastAPI, admin: TestClient) -> None:
    first, _ = sign_in(app, "r1")
    second, _ = sign_in(app, "r1")
    listed = admin.get("/v1/accounts/r1").json()
    assert listed["sessions"] == 2 and listed["password"] is True
    r = admin.put("/v1/accounts/r1/password", json={"password": NEW_PASSWORD})
    assert r.status_code == 204, r.text
    assert signed_out(first) and signed_out(second)
    assert not can_sign_in(app, "r1", PASSWORD)
    assert can_sign_in(app, "r1", NEW_PASSWORD)
    (reset,) = audited(db, "account.password")
    assert (reset.actor, reset.subject, reset.details) == ("boss", "user:r1", {"sessions_ended": 2})
    assert NEW_PASSWORD not in str([x.as_dict() for x in records(db)])

    short = admin.put("/v1/accounts/r1/password", json={"password": "too short"})
    assert short.status_code == 422 and authenticate_password(db, "r1", NEW_PASSWORD) is not None
    service = admin.put("/v1/accounts/platform/password", json={"password": NEW_PASSWORD})
    assert service.status_code == 409 and "API keys only" in service.json()["detail"]
    assert admin.put("/v1/accounts/nobody/password", json={"password": NEW_PASSWORD}).status_code == 404


# --------------------------------------------------------------------------- roles


def test_a_role_takes_effect_on_the_next_request(db: Database, app: FastAPI, admin: TestClient) -> None:
    key = create_api_key(db, "r1")
    r1 = browser(app)
    assert r1.get("/v1/accounts", headers=auth(key)).status_code == 403
    r = admin.patch("/v1/accounts/r1", json={"role": "admin"})
    assert r.status_code == 200 and r.json()["role"] == "admin"
    assert r1.get("/v1/accounts", headers=auth(key)).status_code == 200
    assert admin.patch("/v1/accounts/r1", json={"role": "senior"}).status_code == 200
    assert r1.get("/v1/accounts", headers=auth(key)).status_code == 403
    (promoted, demoted) = audited(db, "account.role")
    assert promoted.details == {"from": "reviewer", "to": "admin"} and promoted.actor == "boss"
    assert demoted.details == {"from": "admin", "to": "senior"}


def test_a_person_made_a_service_loses_password_and_sessions(
    db: Database, app: FastAPI, admin: TestClient
) -> None:
    reviewer, _ = sign_in(app, "r1")
    r = admin.patch("/v1/accounts/r1", json={"role": "service"})
    assert r.status_code == 200 and r.json()["password"] is False
    assert signed_out(reviewer)
    assert not can_sign_in(app, "r1", PASSWORD)
    (change,) = audited(db, "account.role")
    assert change.details == {
        "from": "reviewer",
        "to": "service",
        "password_removed": True,
        "sessions_ended": 1,
    }
    # back to a person: signs in once given a password
    assert admin.patch("/v1/accounts/r1", json={"role": "reviewer"}).status_code == 200
    assert not can_sign_in(app, "r1", PASSWORD)
    assert admin.put("/v1/accounts/r1/password", json={"password": NEW_PASSWORD}).status_code == 204
    assert can_sign_in(app, "r1", NEW_PASSWORD)


def test_the_last_enabled_admin_stays_one(db: Database, app: FastAPI, admin: TestClient) -> None:
    for change in ({"disabled": True}, {"role": "reviewer"}, {"role": "senior", "disabled": True}):
        r = admin.patch("/v1/accounts/boss", json=change)
        assert r.status_code == 409 and "last enabled admin" in r.json()["detail"], change
    assert admin.get("/v1/accounts/boss").json() | {"created_at": ""} == {
        "name": "boss",
        "role": "admin",
        "disabled": False,
        "password": True,
        "api_keys": 1,
        "sessions": 0,
        "created_at": "",
    }
    assert audited(db, "account.disable") == [] and audited(db, "account.role") == []  # rolled back
    with pytest.raises(AccountConflict):
        set_disabled(db, "boss", True, actor="test")
    # no admin ever: changing others is not refused
    set_role(db, "r1", Role.ADMIN, actor="test")
    assert admin.patch("/v1/accounts/boss", json={"disabled": True}).status_code == 200
    assert admin.get("/v1/accounts").status_code == 401  # boss's own key, now of a disabled account
    with pytest.raises(AccountConflict):
        set_role(db, "r1", Role.REVIEWER, actor="test")


# --------------------------------------------------------------------------- the API


def test_accounts_over_the_api_are_for_admins_only(db: Database, app: FastAPI, admin: TestClient) -> None:
    client = browser(app)
    for role in (Role.SERVICE, Role.REVIEWER, Role.SENIOR, Role.CUSTODIAN):
        create_user(db, f"x-{role.value}", role, password=None if role is Role.SERVICE else PASSWORD)
        headers = auth(create_api_key(db, f"x-{role.value}"))
        for method, path, body in (
            ("get", "/v1/accounts", None),
            ("post", "/v1/accounts", {"name": "mallory", "role": "admin", "password": NEW_PASSWORD}),
            ("get", "/v1/accounts/boss", None),
            ("patch", "/v1/accounts/boss", {"disabled": True}),
            ("put", "/v1/accounts/boss/password", {"password": NEW_PASSWORD}),
            ("get", "/v1/accounts/boss/keys", None),
            ("post", "/v1/accounts/boss/keys", {"label": "mine now"}),
        ):
            kwargs: dict[str, object] = {"headers": headers} | ({"json": body} if body else {})
            r = getattr(client, method)(path, **kwargs)
            assert r.status_code == 403, (role, method, path, r.status_code)
    assert client.get("/v1/accounts").status_code == 401
    # a reviewer's browser session never opens the API
    reviewer, _ = sign_in(app, "r1")
    assert reviewer.get("/v1/accounts").status_code == 401
    assert authenticate_password(db, "boss", PASSWORD) is not None and audited(db, "account.disable") == []


def test_create_list_and_keys_over_the_api(db: Database, app: FastAPI, admin: TestClient) -> None:
    before = max(r.seq for r in records(db))
    r = admin.post("/v1/accounts", json={"name": "dana", "role": "custodian", "password": NEW_PASSWORD})
    assert r.status_code == 201 and r.json()["role"] == "custodian" and r.json()["password"] is True
    assert (
        admin.post(
            "/v1/accounts", json={"name": "dana", "role": "senior", "password": NEW_PASSWORD}
        ).status_code
        == 409
    )
    assert (
        admin.post("/v1/accounts", json={"name": "eve", "role": "reviewer"}).status_code == 422
    )  # no password
    given = admin.post("/v1/accounts", json={"name": "svc", "role": "service", "password": NEW_PASSWORD})
    assert given.status_code == 422  # a service has no password: refused, not dropped
    assert admin.post("/v1/accounts", json={"name": "bad name", "role": "service"}).status_code == 422
    assert admin.post("/v1/accounts", json={"name": "svc", "role": "service"}).status_code == 201

    listed = admin.get("/v1/accounts").json()
    assert [a["name"] for a in listed] == ["boss", "dana", "platform", "r1", "svc"]
    assert {a["name"]: a["role"] for a in listed}["svc"] == "service"

    made = admin.post("/v1/accounts/svc/keys", json={"label": "upload pipeline"})
    assert made.status_code == 201
    key, prefix = made.json()["key"], made.json()["prefix"]
    assert key.startswith(f"cs_{prefix}_")
    assert browser(app).post("/v1/lookup", json=LOOKUP, headers=auth(key)).status_code == 200
    keys = admin.get("/v1/accounts/svc/keys").json()
    assert [(k["prefix"], k["label"], k["revoked_at"]) for k in keys] == [(prefix, "upload pipeline", None)]
    assert key not in str(keys)
    assert admin.delete(f"/v1/accounts/dana/keys/{prefix}").status_code == 404  # not dana's key
    assert browser(app).post("/v1/lookup", json=LOOKUP, headers=auth(key)).status_code == 200
    assert admin.delete(f"/v1/accounts/svc/keys/{prefix}").status_code == 204
    assert browser(app).post("/v1/lookup", json=LOOKUP, headers=auth(key)).status_code == 401
    assert admin.get("/v1/accounts/svc/keys").json()[0]["revoked_at"] is not None
    assert admin.get("/v1/accounts/nobody").status_code == 404

    actions = [(r.actor, r.action, r.subject) for r in records(db, since=before)]
    assert actions == [
        ("boss", "account.create", "user:dana"),
        ("boss", "account.create", "user:svc"),
        ("boss", "apikey.create", "user:svc"),
        ("boss", "apikey.revoke", f"apikey:{prefix}"),
    ]
    assert audited(db, "apikey.revoke")[0].details == {"account": "svc"}
    assert "/v1/accounts/{name}" in admin.get("/openapi.json").json()["paths"]


# --------------------------------------------------------------------------- the CLI


def test_account_commands_in_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # SQLite only: the commands call the services the tests above run on both databases
    db = open_database(f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("CHILDSHIELD_DATABASE_URL", db.url)
    runner = CliRunner()

    def cli(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
        result = runner.invoke(cli_app, ["account", *args], input=stdin)
        return result.exit_code, result.stdout, result.stderr

    assert cli("add", "boss", "--role", "admin", stdin=PASSWORD + "\n")[0] == 0
    assert cli("add", "r1", stdin=PASSWORD + "\n")[0] == 0
    code, _, said = cli("disable", "r1")
    assert code == 0 and "disabled" in said
    assert authenticate_password(db, "r1", PASSWORD) is None
    assert "already" in cli("disable", "r1")[2]
    assert cli("enable", "r1")[0] == 0 and authenticate_password(db, "r1", PASSWORD) is not None

    code, _, said = cli("password", "r1", stdin=NEW_PASSWORD + "\n")
    assert code == 0 and "0 session(s) ended" in said
    assert authenticate_password(db, "r1", NEW_PASSWORD) is not None
    assert cli("password", "r1", NEW_PASSWORD)[0] == 2  # never on the command line (ps shows it)
    assert cli("password", "r1", stdin="\n")[0] == 1
    assert cli("password", "r1", stdin="short\n")[0] == 1

    code, _, said = cli("role", "r1", "senior")
    assert code == 0 and "now senior" in said
    code, _, said = cli("role", "boss", "reviewer")
    assert code == 1 and "last enabled admin" in said
    code, _, said = cli("disable", "[/nobody]")  # user text is never read as markup
    assert code == 1 and "no account named '[/nobody]'" in said

    code, out, _ = cli("list")
    rows = [line for line in out.splitlines() if line]
    assert code == 0 and len(rows) == 2 and '"name": "r1"' in rows[1] and '"role": "senior"' in rows[1]
    assert cli("keys", "r1")[0] == 0 and cli("keys", "nobody")[0] == 1

    actors = {(r.action, r.actor) for r in records(db) if r.subject == "user:r1"}
    cli_actor = next(actor for _, actor in actors)
    assert cli_actor.startswith("cli:")
    assert actors == {
        (action, cli_actor)
        for action in (
            "account.create",
            "account.disable",
            "account.enable",
            "account.password",
            "account.role",
        )
    }
    verify_chain(db)
