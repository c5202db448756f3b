"""A closed web on loopback for crawler tests and benchmarks: several sites, each a real HTTP server on
its own 127.0.0.x address, serving pages, benign images, redirects, errors, stalls and huge bodies.

Sites are reached by name through :class:`~childshield.net.guard.HostsResolver` (``web.resolver``),
never through DNS.  Content can change while the web runs (``web.remove(site, path)``), and every request
is logged per site, so tests can see what was fetched, how often and when.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from childshield.net.guard import HostsResolver


@dataclass
class Resource:
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    stall: float = 0.0
    """Seconds to wait before answering (a slow server)."""
    trickle: int = 0
    """Bytes to send without end, slowly (a huge body); the length is not declared."""
    hold: threading.Event | None = field(default=None, compare=False)
    """Answer only once this is set (a server that never answers in time, however slow the client);
    the web sets it when it closes."""


def page(html: str) -> Resource:
    return Resource(html.encode())


def image(data: bytes, content_type: str = "image/jpeg") -> Resource:
    return Resource(data, content_type)


def redirect(location: str, status: int = 302) -> Resource:
    return Resource(b"", "text/plain", status, {"Location": location})


def status(code: int, **headers: str) -> Resource:
    return Resource(b"", "text/plain", code, {k.replace("_", "-"): v for k, v in headers.items()})


@dataclass
class Hit:
    site: str
    path: str
    at: float
    cookie: str = ""
    """The request's Cookie header (a crawler should never send one)."""
    user_agent: str = ""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class LocalWeb:
    def __init__(self, sites: Mapping[str, Mapping[str, Resource]]) -> None:
        self.sites: dict[str, dict[str, Resource]] = {name: dict(paths) for name, paths in sites.items()}
        self.log: list[Hit] = []
        self.ports: dict[str, int] = {}
        self.addresses: dict[str, str] = {}
        self._servers: list[tuple[_Server, threading.Thread]] = []
        self._lock = threading.Lock()
        self.once: dict[tuple[str, str], list[Resource]] = {}
        """Answers given before the resource itself, one per request (e.g. a 429, then the page)."""

    def __enter__(self) -> LocalWeb:
        for k, name in enumerate(self.sites):
            address = f"127.0.0.{k + 2}"
            server = _Server((address, 0), self._handler(name))
            thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            )
            thread.start()
            self.ports[name] = server.server_address[1]
            self.addresses[name] = address
            self._servers.append((server, thread))
        for paths in self.sites.values():  # links written as http://NAME/... get the site's port
            for resource in paths.values():
                if resource.content_type.startswith("text/html"):
                    resource.body = self.localize(resource.body)
        return self

    def localize(self, body: bytes) -> bytes:
        for name, port in self.ports.items():
            body = body.replace(f"//{name}/".encode(), f"//{name}:{port}/".encode())
        return body

    def __exit__(self, *_: object) -> None:
        for paths in self.sites.values():  # requests held for the test let go, so their threads end
            for resource in paths.values():
                if resource.hold is not None:
                    resource.hold.set()
        for server, thread in self._servers:
            server.shutdown()
            server.server_close()
            thread.join(5)

    @property
    def resolver(self) -> HostsResolver:
        return HostsResolver(self.addresses)

    def url(self, site: str, path: str = "/") -> str:
        return f"http://{site}:{self.ports[site]}{path}"

    def remove(self, site: str, path: str) -> None:
        with self._lock:
            self.sites[site].pop(path, None)

    def put(self, site: str, path: str, resource: Resource) -> None:
        with self._lock:
            self.sites[site][path] = resource

    def requests(self, site: str | None = None, path: str | None = None) -> list[Hit]:
        with self._lock:
            return [
                h for h in self.log if (site is None or h.site == site) and (path is None or h.path == path)
            ]

    def _answer(self, site: str, path: str, cookie: str = "", agent: str = "") -> Resource | None:
        with self._lock:
            self.log.append(Hit(site, path, time.monotonic(), cookie, agent))
            queued = self.once.get((site, path))
            if queued:
                return queued.pop(0)
            return self.sites[site].get(path)

    def _handler(self, site: str) -> Callable[..., BaseHTTPRequestHandler]:
        web = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: Any) -> None:
                pass

            def do_GET(self) -> None:
                found = web._answer(
                    site, self.path, self.headers.get("Cookie", ""), self.headers.get("User-Agent", "")
                )
                if found is None:
                    found = Resource(b"not found", "text/plain", 404)
                if found.stall:
                    time.sleep(found.stall)
                if found.hold is not None:
                    found.hold.wait()
                try:
                    self.send_response(found.status)
                    self.send_header("Content-Type", found.content_type)
                    for key, value in found.headers.items():
                        self.send_header(key, value)
                    if found.trickle:
                        self.send_header("Connection", "close")
                        self.end_headers()
                        for _ in range(found.trickle // 65536 + 1):
                            self.wfile.write(b"x" * 65536)
                            self.wfile.flush()
                        return
                    self.send_header("Content-Length", str(len(found.body)))
                    self.end_headers()
                    self.wfile.write(found.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        return Handler


def site_tree(
    pages: int, per_page: Callable[[int], str], *, prefix: str = "/p"
) -> Iterator[tuple[str, Resource]]:
    """``pages`` linked pages (``/p0`` ... ), each holding ``per_page(k)``'s HTML."""
    for k in range(pages):
        yield f"{prefix}{k}", page(per_page(k))
