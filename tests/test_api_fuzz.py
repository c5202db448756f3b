"""Schemathesis against the published OpenAPI document, in process: every phase (examples, coverage,
fuzzing, stateful) and every check, over every operation, as an admin (who may call them all).  The
document must tell the truth: statuses, content types, headers, bodies (valid ones accepted, invalid ones
refused), and never a server error."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI

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
        "childshield.net.guard.socket.getaddrinfo",
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


# Positive data acceptance (a request the schema allows is accepted) cannot hold where what is valid
# depends on more than the schema can say.  Each such operation is named here, with why; the check
# still runs everywhere else, and these operations still get every other check.
CONFIG = """
seed = 20261204
workers = 1
continue-on-failure = true

[cache]
enabled = false  # each run from the seed alone, nothing carried over from an earlier one

[generation]
max-examples = 8
deterministic = true

[phases.stateful]
max-steps = 4

# A body the schema allows is any bytes; a scan needs a real image.
[[operations]]
include-path-regex = "^/v1/(scan|banks/\\\\{name\\\\}/media)$"
checks.positive_data_acceptance.enabled = false

# Valid by the schema, refused (422) by what they name: a URL the address guard refuses or nobody
# answers at, a stream source that cannot be opened here, evidence that does not exist, a strict import
# whose rows are malformed (hashes of the wrong length for their type).
[[operations]]
include-path = ["/v1/scan/url", "/v1/watches", "/v1/reports", "/v1/banks/{name}/signals"]
include-method = "POST"
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", 401, 403, 404, 409, 422, 429]
"""


def failures(service: Service) -> tuple[list[str], set[str], set[int]]:
    """Every failed check of a whole run (what ``st run --checks all`` reports), the operations run and
    the statuses answered."""
    from schemathesis.config import SchemathesisConfig
    from schemathesis.engine import Status, events, from_schema

    config = SchemathesisConfig.from_str(CONFIG)
    schema = schemathesis.openapi.from_asgi("/openapi.json", service.app, config=config)
    schema.config.update(headers={"Authorization": f"Bearer {service.key}"})
    found: list[str] = []
    tested: set[str] = set()
    statuses: set[int] = set()
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished) and event.status is not Status.SKIP:
            tested.add(event.label or "")
            statuses |= {i.response.status_code for i in event.recorder.interactions.values() if i.response}
            for case_id, nodes in event.recorder.checks.items():
                for node in nodes:
                    if node.status is Status.FAILURE and node.failure_info is not None:
                        case = event.recorder.cases[case_id].value
                        failure = node.failure_info.failure
                        found.append(
                            f"{case.method} {case.formatted_path}: {failure.title}: {failure.message}"
                        )
        elif isinstance(event, events.NonFatalError | events.FatalError):
            found.append(f"error: {event.info.format() if hasattr(event, 'info') else event}")
    return found, tested, statuses


def test_the_document_is_true_to_every_check(service: Service) -> None:
    found, tested, statuses = failures(service)
    assert not found, "\n".join(sorted(set(found))[:30])
    names = {f"{op.method.upper()} {op.path}" for op in operations(service)}
    assert names <= tested, names - tested  # every operation was exercised
    assert {200, 201, 401, 404, 405, 422} <= statuses  # accepted, and refused for each reason
