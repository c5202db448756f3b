"""A local RDAP server for tests and benchmarks, answering ``/ip/{address}`` in RFC 9083's format.

Networks are given as :class:`FakeNetwork`; the abuse contact is placed the way registries differ in
placing it: at the top of the network's entities (``style="top"``, as ARIN does) or nested under the
registrant organisation (``style="nested"``, as RIPE NCC does).  Unknown addresses get RFC 9083's error
object with 404.  Requests are counted (to check caching).
"""

from __future__ import annotations

import ipaddress
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class FakeNetwork:
    cidr: str
    handle: str
    name: str
    country: str
    org_handle: str
    org_name: str
    abuse_email: str = ""
    style: str = "nested"


def _card(fn: str, email: str = "") -> list[Any]:
    props: list[Any] = [["version", {}, "text", "4.0"], ["fn", {}, "text", fn], ["kind", {}, "text", "org"]]
    if email:
        props.append(["email", {"type": "work"}, "text", email])
    return ["vcard", props]


def network_object(net: FakeNetwork) -> dict[str, Any]:
    block = ipaddress.ip_network(net.cidr)
    abuse = {
        "objectClassName": "entity",
        "handle": f"{net.org_handle}-ABUSE",
        "roles": ["abuse"],
        "vcardArray": _card("Abuse desk", net.abuse_email),
    }
    org: dict[str, Any] = {
        "objectClassName": "entity",
        "handle": net.org_handle,
        "roles": ["registrant"],
        "vcardArray": _card(net.org_name),
    }
    entities: list[Any] = [org]
    if net.abuse_email:
        if net.style == "nested":
            org["entities"] = [abuse]
        else:
            entities.append(abuse)
    return {
        "rdapConformance": ["rdap_level_0", "cidr0"],
        "objectClassName": "ip network",
        "handle": net.handle,
        "startAddress": str(block.network_address),
        "endAddress": str(block.broadcast_address),
        "ipVersion": f"v{block.version}",
        "name": net.name,
        "type": "ASSIGNED PA",
        "country": net.country,
        "cidr0_cidrs": [{f"v{block.version}prefix": str(block.network_address), "length": block.prefixlen}],
        "entities": entities,
        "events": [{"eventAction": "registration", "eventDate": "2020-01-01T00:00:00Z"}],
        "links": [
            {"rel": "self", "href": f"https://rdap.invalid/ip/{net.cidr}", "type": "application/rdap+json"}
        ],
    }


class FakeRdap:
    def __init__(self, networks: list[FakeNetwork]) -> None:
        self.networks = networks
        self.requests: list[str] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/"

    def __enter__(self) -> FakeRdap:
        rdap = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def do_GET(self) -> None:
                rdap.requests.append(self.path)
                body, code = rdap.answer(self.path)
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/rdap+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def answer(self, path: str) -> tuple[dict[str, Any], int]:
        if path.startswith("/ip/"):
            try:
                ip = ipaddress.ip_address(path[4:].split("?")[0])
            except ValueError:
                return {"errorCode": 400, "title": "bad request"}, 400
            best = None
            for net in self.networks:
                block = ipaddress.ip_network(net.cidr)
                if (
                    ip.version == block.version
                    and ip in block
                    and (best is None or block.prefixlen > best[0])
                ):
                    best = (block.prefixlen, net)
            if best is not None:
                return network_object(best[1]), 200
        return {"errorCode": 404, "title": "not found", "description": ["no such object"]}, 404
