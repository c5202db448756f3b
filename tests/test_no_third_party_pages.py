"""No page of the service loads anything from another origin (issue 16.9): FastAPI's /docs and /redoc
(Swagger UI and ReDoc from a CDN: blank offline, third-party script on the reviewers' origin) are gone,
the OpenAPI document stays, and every page the service serves sits under the one CSP."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import childshield.web
from childshield.store.db import open_database
from childshield.web.app import create_app
from childshield.web.settings import ServiceSettings

# a URL with a host in an attribute, a CSS url() or an import: what would load from another origin
ELSEWHERE = re.compile(
    r"""(?:src|href|action)\s*=\s*["']?\s*(?:https?:)?//|url\(\s*["']?(?:https?:)?//|@import"""
)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    folder = tmp_path_factory.mktemp("pages")
    url = f"sqlite:///{folder / 'pages.db'}"
    open_database(url).close()
    app = create_app(ServiceSettings(database_url=url, refresh_seconds=0, keep_media=False))
    return TestClient(app, base_url="https://testserver")


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/docs/oauth2-redirect"])
def test_the_cdn_pages_are_gone_and_refusals_carry_the_csp(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 404
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert not ELSEWHERE.search(r.text)


def test_the_openapi_document_stays(client: TestClient) -> None:
    r = client.get("/openapi.json")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    assert "/v1/scan" in r.json()["paths"]


def test_every_page_loads_only_from_the_service(client: TestClient) -> None:
    pages = [client.get("/login"), client.get("/", follow_redirects=True)]
    for page in pages:
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        policy = page.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "script-src 'self'" in policy
        assert not ELSEWHERE.search(page.text), page.url
    web = Path(childshield.web.__file__).parent
    shipped = [*web.rglob("*.html"), *web.rglob("*.css")]
    assert shipped
    for path in shipped:
        assert not ELSEWHERE.search(path.read_text()), path
