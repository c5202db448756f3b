"""The address guard and the guarded fetch, against a real HTTP server on loopback (which the guard must
refuse unless loopback is allowed explicitly); ``/v1/scan/url`` end to end."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from childshield.accounts.service import create_api_key, create_user
from childshield.net.fetch import fetch
from childshield.net.guard import AddressPolicy, BlockedAddress, HostsResolver, check_ip, check_url
from childshield.net.hops import FetchError
from childshield.store.db import Database
from childshield.store.models import Role
from childshield.testing.corpus import encode, generated_photo
from childshield.web.app import create_app
from childshield.web.settings import ServiceSettings

LOOPBACK = AddressPolicy.from_text("127.0.0.0/8")
PHOTO = encode(generated_photo(901, 320, 240), "JPEG", quality=90)
BAD_LOCATION = r"http:\\127.0.0.1\x"
"""A Location that httpx cannot parse (a scheme, no host): it raised InvalidURL, not an HTTPError."""


class Site:
    """A small web site on 127.0.0.1: an image, redirects (to itself, in a loop, to a metadata address),
    a huge body, and a 404."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                routes = {
                    "/photo.jpg": (200, {"Content-Type": "image/jpeg"}, PHOTO),
                    "/hop": (302, {"Location": "/photo.jpg"}, b""),
                    "/loop-a": (302, {"Location": "/loop-b"}, b""),
                    "/loop-b": (302, {"Location": "/loop-a"}, b""),
                    "/metadata": (302, {"Location": "http://169.254.169.254/latest/meta-data/"}, b""),
                    "/huge": (200, {"Content-Type": "image/jpeg"}, b"\xff" * 300_000),
                    "/bad-location": (302, {"Location": BAD_LOCATION}, b""),
                }
                code, headers, body = routes.get(self.path, (404, {}, b"no"))
                self.send_response(code)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                self.server.seen_agents.append(self.headers.get("User-Agent", ""))  # type: ignore[attr-defined]

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.seen_agents = []  # type: ignore[attr-defined]
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def site() -> Iterator[Site]:
    s = Site()
    yield s
    s.close()


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "192.168.0.1",
        "172.16.5.5",
        "169.254.169.254",
        "::1",
        "fe80::1",
        "0.0.0.0",
        "::ffff:127.0.0.1",
        "fd00:ec2::254",
        "100.64.0.1",
        "224.0.0.1",
        "fec0::1",  # deprecated site-local, counted as global by ipaddress
        "168.63.129.16",  # Azure's wire server
    ],
)
def test_non_public_addresses_are_refused(address: str) -> None:
    with pytest.raises(BlockedAddress):
        check_ip(ipaddress.ip_address(address), AddressPolicy())


def test_public_addresses_and_allowed_networks_pass() -> None:
    check_ip(ipaddress.ip_address("93.184.216.34"), AddressPolicy())
    check_ip(ipaddress.ip_address("2606:4700::1111"), AddressPolicy())
    check_ip(ipaddress.ip_address("127.0.0.1"), LOOPBACK)
    with pytest.raises(BlockedAddress, match="not a public address") as refused:
        check_ip(ipaddress.ip_address("169.254.169.254"), LOOPBACK)
    assert "metadata" in refused.value.detail


def test_refusals_do_not_say_where_a_name_resolves() -> None:
    """A caller must not learn the inside of the network from the refusals (nothing connects: the name is
    pinned by the resolver, and the guard refuses before any connection)."""
    inside = HostsResolver({"intranet.test": "10.20.30.40", "v6.test": "fec0::1234"})
    for url in ("http://intranet.test/x.jpg", "http://v6.test/x.jpg"):
        with pytest.raises(BlockedAddress) as refused:
            check_url(url, AddressPolicy(), inside)
        assert str(refused.value) == "refused: not a public address"
        with pytest.raises(FetchError) as failed:
            fetch(url, AddressPolicy(), resolve=inside)
        message = str(failed.value)
        assert "not a public address" in message
        assert "10.20.30.40" not in message and "fec0" not in message and "private" not in message
        assert "10.20.30.40" in failed.value.detail or "fec0::1234" in failed.value.detail  # for operators


def test_urls_are_checked_after_resolution() -> None:
    with pytest.raises(BlockedAddress) as refused:
        check_url("http://localhost:8080/x.jpg", AddressPolicy())
    assert "loopback" in refused.value.detail
    for bad in ("ftp://example.org/x", "file:///etc/passwd", "http://user:pw@127.0.0.1/", "http:///nohost"):
        with pytest.raises(ValueError):
            check_url(bad, LOOPBACK)
    target = check_url("http://127.0.0.1:9/a?b=1", LOOPBACK)
    assert (str(target.ip), target.port, target.path) == ("127.0.0.1", 9, "/a?b=1")
    with pytest.raises(BlockedAddress, match="port"):
        check_url("http://93.184.216.34:22/", AddressPolicy())  # a literal: no lookup, no traffic


def test_fetch_follows_guarded_redirects(site: Site) -> None:
    got = fetch(f"{site.base}/hop", LOOPBACK)
    assert got.body == PHOTO and got.url.endswith("/photo.jpg") and got.content_type == "image/jpeg"
    assert all(agent.startswith("childshield/") for agent in site.server.seen_agents)  # type: ignore[attr-defined]
    with pytest.raises(FetchError, match="not a public address") as refused:
        fetch(f"{site.base}/photo.jpg", AddressPolicy())  # not allowed by default
    assert "loopback" in refused.value.detail
    with pytest.raises(FetchError, match="not a public address") as refused:
        fetch(f"{site.base}/metadata", LOOPBACK)  # a redirect to metadata is refused at the hop
    assert "metadata" in refused.value.detail
    with pytest.raises(FetchError, match="redirects to a URL that cannot be fetched"):
        fetch(f"{site.base}/bad-location", LOOPBACK)
    with pytest.raises(FetchError, match="loop"):
        fetch(f"{site.base}/loop-a", LOOPBACK)
    with pytest.raises(FetchError, match="limit"):
        fetch(f"{site.base}/huge", LOOPBACK, max_bytes=100_000)
    with pytest.raises(FetchError, match="404"):
        fetch(f"{site.base}/missing", LOOPBACK)


def test_scan_url_endpoint(db: Database, site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    create_user(db, "boss", Role.ADMIN, password="a long admin passphrase")
    key = {"Authorization": f"Bearer {create_api_key(db, 'boss')}"}
    closed = ServiceSettings(database_url=db.url, refresh_seconds=0)
    opened = ServiceSettings(database_url=db.url, refresh_seconds=0, fetch_allow="127.0.0.0/8")
    with TestClient(create_app(closed)) as c:
        r = c.post("/v1/scan/url", json={"url": f"{site.base}/photo.jpg"}, headers=key)
        assert r.status_code == 422 and "not a public address" in r.json()["detail"]
        assert "loopback" not in r.json()["detail"]
    with TestClient(create_app(opened)) as c:
        c.post("/v1/banks", json={"name": "known"}, headers=key)
        c.post("/v1/banks/known/media", content=PHOTO, headers=key)
        r = c.post("/v1/scan/url", json={"url": f"{site.base}/hop"}, headers=key)
        assert r.status_code == 200, r.text
        assert r.json()["matched"] and r.json()["url"].endswith("/photo.jpg")
        bad = c.post("/v1/scan/url", json={"url": f"{site.base}/metadata"}, headers=key)
        assert bad.status_code == 422 and "not a public address" in bad.json()["detail"]
        assert bad.json()["detail"].endswith(": refused: not a public address")  # the hop, not its kind
        odd = c.post("/v1/scan/url", json={"url": f"{site.base}/bad-location"}, headers=key)
        assert odd.status_code == 422, odd.text
        assert "redirects to a URL that cannot be fetched" in odd.json()["detail"]
    assert np.all([a.startswith("childshield/") for a in site.server.seen_agents])  # type: ignore[attr-defined]


def test_international_host_names_are_fetched_by_their_idna_form(site: Site) -> None:
    """The Host header of ``bücher.test`` could not be encoded (UnicodeEncodeError, a 500 for the API)."""
    port = site.base.rsplit(":", 1)[1]
    pinned = HostsResolver({"bücher.test": "127.0.0.1"})
    got = fetch(f"http://bücher.test:{port}/photo.jpg", LOOPBACK, resolve=pinned)
    assert got.body == PHOTO
    assert check_url(f"http://BÜCHER.test:{port}/", LOOPBACK, pinned).host == "xn--bcher-kva.test"
    with pytest.raises(FetchError, match="not a valid host name"):
        fetch(f"http://a..{'b' * 70}.test:{port}/", LOOPBACK, resolve=pinned)


def _inside(host: str, port: int, type: int = socket.SOCK_STREAM, **_: object) -> list[tuple[Any, ...]]:
    """Every name and literal resolves to a private address: the guard refuses all, nothing connects."""
    return [(socket.AF_INET, type, socket.IPPROTO_TCP, "", ("10.9.8.7", port))]


@settings(max_examples=300, deadline=None)
@given(
    st.text(max_size=40)
    | st.builds(
        lambda s, h: f"{s}://{h}", st.sampled_from(["http", "https", "HTTP", "ftp", ""]), st.text(max_size=40)
    )
)
def test_any_url_is_fetched_or_refused_with_a_fetch_error(url: str) -> None:
    with contextlib.suppress(FetchError):
        fetch(url, AddressPolicy(), resolve=_inside, timeout=1)
        raise AssertionError("a URL got past a guard that refuses every address")
