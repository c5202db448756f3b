"""Schemathesis against the published OpenAPI document: generated requests (valid and invalid) to every
operation, as an admin (who may call them all), must never get a server error."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from childshield.accounts.service import create_api_key, create_user
from childshield.banks.entries import import_rows
from childshield.banks.formats import Parsed, SignalRow
from childshield.banks.service import create_bank
from childshield.store.db import open_database
from childshield.store.models import Role, SignalType
from childshield.web.app import create_app
from childshield.web.settings import ServiceSettings


@dataclass
class Service:
    app: FastAPI
    key: str


@pytest.fixture
def service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Service]:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    # /v1/scan/url must never look a generated host name up on the real network: every name resolves to
    # TEST-NET-1 here, which the address guard refuses.
    monkeypatch.setattr(
        "childshield.crawl.guard.socket.getaddrinfo",
        lambda host, port, **kw: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.1", port or 80))],
    )
    url = f"sqlite:///{tmp_path / 'api.db'}"
    db = open_database(url)
    create_user(db, "root", Role.ADMIN, password="a long admin passphrase")
    key = create_api_key(db, "root")
    create_bank(db, "known")
    rows = [SignalRow(1, SignalType.MD5, "a" * 32), SignalRow(2, SignalType.PDQ, "f" * 64)]
    import_rows(db, "known", Parsed(rows=rows), source_name="fixture")
    db.close()
    app = create_app(ServiceSettings(database_url=url, refresh_seconds=0, max_upload_bytes=200_000))
    yield Service(app, key)
    app.state.db.close()


def operations(service: Service) -> list[schemathesis.APIOperation]:
    schema = schemathesis.openapi.from_asgi("/openapi.json", service.app)
    return [result.ok() for result in schema.get_all_operations()]


def test_the_spec_lists_the_operations(service: Service) -> None:
    names = {f"{op.method.upper()} {op.path}" for op in operations(service)}
    assert {"POST /v1/scan", "POST /v1/lookup", "PATCH /v1/banks/{name}/entries/{entry_id}"} <= names


def test_no_server_errors(service: Service) -> None:
    headers = {"Authorization": f"Bearer {service.key}"}
    seen: dict[str, set[int]] = {}
    for op, mode in ((op, mode) for op in operations(service) for mode in schemathesis.GenerationMode):

        @given(case=op.as_strategy(generation_mode=mode))
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        def call(case: schemathesis.Case) -> None:
            response = case.call(headers=headers)
            seen.setdefault(f"{case.method} {case.path}", set()).add(response.status_code)
            assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.text[:300]}"

        try:
            call()
        except Unsatisfiable:  # nothing invalid can be said to an operation without inputs
            assert mode is schemathesis.GenerationMode.NEGATIVE
    assert "POST /v1/scan/url" in seen
    assert len(seen) >= 9  # every operation was exercised
    assert any(code < 300 for codes in seen.values() for code in codes)  # not only refusals
    assert any(code == 422 for codes in seen.values() for code in codes)  # invalid input was sent too
