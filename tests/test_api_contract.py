"""The API's refusals (issue 15): one problem shape, never a 500 for hostile input (non-finite numbers,
lone surrogates, integers beyond 64 bits), printable text only, the import path's limits on bank entries,
/metrics behind a key, and 405s naming every method of their path."""

from __future__ import annotations

import re
import sys
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from childshield.accounts.service import create_api_key, create_user
from childshield.store.db import Database, open_database
from childshield.store.models import Entry, Role
from childshield.web.api.schemas import TEXT_PATTERN, printable
from childshield.web.app import create_app
from childshield.web.settings import ServiceSettings

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    db = open_database(f"sqlite:///{tmp_path / 'api.db'}")
    yield db
    db.close()


@pytest.fixture
def keys(database: Database) -> dict[Role, dict[str, str]]:
    out = {}
    for role in (Role.ADMIN, Role.SERVICE):
        create_user(
            database, role.value, role, password=None if role is Role.SERVICE else "a long passphrase"
        )
        out[role] = {"Authorization": f"Bearer {create_api_key(database, role.value)}"}
    return out


def client_for(db: Database, **settings: object) -> TestClient:
    conf = ServiceSettings(database_url=db.url, refresh_seconds=0, **settings)  # type: ignore[arg-type]
    return TestClient(create_app(conf), raise_server_exceptions=False)


@pytest.fixture
def client(database: Database) -> Iterator[TestClient]:
    with client_for(database) as c:
        yield c


def is_problem(body: dict[str, object]) -> bool:
    return isinstance(body.get("detail"), str) and isinstance(body.get("errors", []), list)


RAW = {"Content-Type": "application/json"}


# --------------------------------------------------------------------------- no 500 for hostile input


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/lookup", b'{"signals": [{"type": "pdq", "value": "%s", "quality": NaN}]}' % (b"f" * 64)),
        ("/v1/lookup", b'{"signals": [{"type": "pdq", "value": "x", "quality": Infinity}]}'),
        ("/v1/lookup", b'{"signals": -Infinity}'),
        ("/v1/lookup", b"NaN"),
        ("/v1/lookup", b'{"signals": [{"type": "pdq", "value": "\\ud800"}]}'),  # a lone surrogate
        ("/v1/banks", b'{"name": "b", "policy": {"orb_gate": NaN}}'),
        ("/v1/banks", b'{"name": "b", "thresholds": {"pdq": Infinity}}'),
    ],
)
def test_non_finite_numbers_and_lone_surrogates_are_refused_with_a_422(
    client: TestClient, keys: dict[Role, dict[str, str]], path: str, body: bytes
) -> None:
    # FastAPI's own 422 quotes the input back, and a NaN or a lone surrogate cannot be written as JSON
    r = client.post(path, content=body, headers={**keys[Role.ADMIN], **RAW})
    assert r.status_code == 422, r.text
    assert is_problem(r.json()) and "NaN" not in r.text


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"/v1/crawl/hits?after={2**70}"),
        ("GET", f"/v1/crawl/hits?after={2**63}"),
        ("GET", "/v1/crawl/hits?after=-1"),
        ("PATCH", f"/v1/banks/known/entries/{2**70}"),
        ("DELETE", f"/v1/evidence/{2**64}/hold"),
    ],
)
def test_integers_beyond_the_databases_are_a_422(
    client: TestClient, keys: dict[Role, dict[str, str]], method: str, path: str
) -> None:
    r = client.request(method, path, json={"state": "active"}, headers=keys[Role.ADMIN])
    assert r.status_code == 422, r.text
    assert is_problem(r.json())


def test_the_largest_row_id_is_still_answered(client: TestClient, keys: dict[Role, dict[str, str]]) -> None:
    assert client.get(f"/v1/crawl/hits?after={2**63 - 1}", headers=keys[Role.ADMIN]).json() == []


# --------------------------------------------------------------------------- strict types


@pytest.mark.parametrize("quality", [False, True, "50", 50.5])
def test_quality_is_an_integer_not_a_boolean_or_text(
    client: TestClient, keys: dict[Role, dict[str, str]], quality: object
) -> None:
    signal = {"type": "pdq", "value": "f" * 64, "quality": quality}
    r = client.post("/v1/lookup", json={"signals": [signal]}, headers=keys[Role.SERVICE])
    assert r.status_code == 422 and r.json()["errors"][0]["loc"][-1] == "quality", r.text


def test_an_integral_float_is_the_integer_json_schema_says(
    client: TestClient, keys: dict[Role, dict[str, str]]
) -> None:
    signal = {"type": "pdq", "value": "f" * 64, "quality": 80.0}
    assert (
        client.post("/v1/lookup", json={"signals": [signal]}, headers=keys[Role.SERVICE]).status_code == 200
    )
    bank = {"name": "b", "policy": {"orb_gate": 67.0}, "thresholds": {"pdq": 20.0}}
    made = client.post("/v1/banks", json=bank, headers=keys[Role.ADMIN])
    assert made.status_code == 201 and made.json()["policy"]["orb_gate"] == 67, made.text


def test_booleans_are_booleans(client: TestClient, keys: dict[Role, dict[str, str]]) -> None:
    assert (
        client.post("/v1/banks", json={"name": "b", "enabled": 0}, headers=keys[Role.ADMIN]).status_code
        == 422
    )
    client.post("/v1/banks", json={"name": "b"}, headers=keys[Role.ADMIN])
    body = {"signals": [{"type": "md5", "value": "a" * 32}], "strict": 0}
    assert client.post("/v1/banks/b/signals", json=body, headers=keys[Role.ADMIN]).status_code == 422


# --------------------------------------------------------------------------- text


BIDI_AND_FORMAT = ["\u202a", "\u202e", "\u2066", "\u2069", "\u200e", "\u200f", "\u061c", "\u200b", "\ufeff"]


@pytest.mark.parametrize("char", ["\r", "\n", "\x00", "\x85", "\u2028", *BIDI_AND_FORMAT])
def test_text_fields_refuse_control_and_format_characters(
    client: TestClient, keys: dict[Role, dict[str, str]], char: str
) -> None:
    # A right-to-left override makes "gpj.exe" read as "exe.jpg" to whoever reviews the report
    assert client.post("/v1/banks", json={"name": "b"}, headers=keys[Role.ADMIN]).status_code == 201
    body = {"signals": [{"type": "md5", "value": "a" * 32, "external_id": f"case{char}17"}]}
    r = client.post("/v1/banks/b/signals", json=body, headers=keys[Role.ADMIN])
    assert r.status_code == 422 and "control characters" in r.json()["detail"], r.text
    context = client.post(
        "/v1/scan/url", json={"url": "https://example.org/a.jpg", "context": {"user_id": f"u{char}"}}
    )
    assert context.status_code in (401, 422)  # the body is read before the key: refused either way
    scan = client.post(
        "/v1/scan", params={"screen_name": f"a{char}b"}, content=b"x", headers=keys[Role.SERVICE]
    )
    assert scan.status_code == 422 and "control characters" in scan.text


def test_printable_text_is_kept(client: TestClient, keys: dict[Role, dict[str, str]]) -> None:
    assert printable("Zoë, 東京, مرحبا, 😀") == "Zoë, 東京, مرحبا, 😀"


def test_the_refused_characters_cover_every_control_and_format_character() -> None:
    # The list is written out (scanning Unicode at import is slow): it must cover what this Python knows,
    # and the published pattern says what the check does (childshield.textcheck, one policy)
    pattern = re.compile(TEXT_PATTERN)
    for cp in range(sys.maxunicode + 1):
        text = f"a{chr(cp)}b"
        format_char = unicodedata.category(chr(cp)) in ("Cc", "Cf", "Cs", "Zl", "Zp")
        joiner = cp in (0x200C, 0x200D)  # allowed: Persian, Indic scripts and emoji need them
        surrogate = 0xD800 <= cp <= 0xDFFF  # no JSON Schema regex can name lone surrogates
        in_pattern = not surrogate and pattern.fullmatch(text) is None
        if (format_char and not joiner) or in_pattern:
            with pytest.raises(ValueError, match="control characters"):
                printable(text)
        else:
            assert printable(text) == text, hex(cp)
        if not surrogate and in_pattern != (format_char and not joiner):
            assert 0x13439 <= cp <= 0x1343F, hex(cp)  # format characters from Unicode 15 on


# --------------------------------------------------------------------------- bank entries


def test_bank_entries_keep_to_the_import_limits(
    client: TestClient, keys: dict[Role, dict[str, str]], database: Database
) -> None:
    admin = keys[Role.ADMIN]
    assert client.post("/v1/banks", json={"name": "b"}, headers=admin).status_code == 201

    def add(**entry: object) -> int:
        body = {"signals": [{"type": "md5", "value": "b" * 32, **entry}]}
        return client.post("/v1/banks/b/signals", json=body, headers=admin).status_code

    assert add(external_id="case-1\r\nX-Injected: 1") == 422
    assert add(external_id="x" * 201) == 422
    assert add(labels=[f"L{i}" for i in range(51)]) == 422  # at most 50, as on import
    assert add(labels=["x" * 201]) == 422  # of at most 200 characters
    assert add(labels=["A1\n"]) == 422
    assert add(labels=[" A1 ", "", "  ", *[f"L{i}" for i in range(47)]], external_id="case-1") == 200
    with database.session() as session:
        entry = session.query(Entry).filter_by(external_id="case-1").one()
        assert entry.labels[0] == "A1" and len(entry.labels) == 48  # blank ones dropped, as on import


# --------------------------------------------------------------------------- /metrics


def test_metrics_need_an_admin_key_unless_opened(
    database: Database, keys: dict[Role, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    with client_for(database) as closed:
        assert closed.get("/metrics").status_code == 401
        assert closed.get("/metrics", headers=keys[Role.SERVICE]).status_code == 403
        assert "childshield_scans" in closed.get("/metrics", headers=keys[Role.ADMIN]).text
    monkeypatch.setenv("CHILDSHIELD_METRICS_OPEN", "1")
    with client_for(database) as opened:  # for a scraper on a private network
        assert opened.get("/metrics").status_code == 200


# --------------------------------------------------------------------------- the problem shape


def test_every_refusal_has_one_shape(client: TestClient, keys: dict[Role, dict[str, str]]) -> None:
    invalid = client.post("/v1/lookup", json={"signals": []}, headers=keys[Role.SERVICE])
    assert invalid.status_code == 422 and is_problem(invalid.json())
    assert invalid.json()["errors"][0]["loc"] == ["body", "signals"]
    assert invalid.json()["detail"].startswith("body.signals: ")
    missing = client.get("/v1/banks/nope", headers=keys[Role.ADMIN])
    assert missing.status_code == 404 and is_problem(missing.json())
    anonymous = client.get("/v1/banks")
    assert anonymous.status_code == 401 and is_problem(anonymous.json())
    assert anonymous.headers["WWW-Authenticate"] == "Bearer"


def test_a_405_names_every_method_of_its_path(client: TestClient, keys: dict[Role, dict[str, str]]) -> None:
    r = client.put("/v1/banks", headers=keys[Role.ADMIN])
    assert r.status_code == 405 and is_problem(r.json())
    assert {m.strip() for m in r.headers["Allow"].split(",")} == {"GET", "POST"}  # FastAPI has no HEAD


def test_the_document_names_the_keys_and_the_refusals(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert set(spec["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    lookup = spec["paths"]["/v1/lookup"]["post"]
    assert lookup["security"] and {"401", "403", "413", "422", "429"} <= set(lookup["responses"])
    assert "security" not in spec["paths"]["/v1/health"]["get"]
    problem = lookup["responses"]["422"]["content"]["application/json"]["schema"]["$ref"]
    assert problem == "#/components/schemas/Problem"
    assert spec["components"]["schemas"]["Problem"]["properties"]["detail"]["type"] == "string"


# --------------------------------------------------------------------------- the review pages' numbers


@pytest.mark.parametrize(
    "path",
    [
        f"/review/items/{2**70}",
        f"/review/items/{2**63}/media",
        f"/review?done={2**70}",
        f"/review/items/1/media?blur={2**70}",
    ],
)
def test_the_review_pages_bound_their_numbers(database: Database, path: str) -> None:
    from review_helpers import people, sign_in

    people(database)
    app = create_app(ServiceSettings(database_url=database.url, refresh_seconds=0))
    reviewer, _ = sign_in(app, "r1")
    with reviewer:
        r = reviewer.get(path)
    assert r.status_code == 422, r.text[:300]
