"""Who hosts an address: an RDAP client (RFC 9082 queries, RFC 9083 responses) for IP networks.

``lookup_ip`` asks ``{base}/ip/{address}`` and reads the network (handle, name, range, country), the
organisation it is registered to, and the abuse contact: the e-mail of an entity with the ``abuse`` role,
wherever it is nested (ARIN puts it at the top, RIPE and others under the registrant).  The base URL
comes from the IANA bootstrap registry (RFC 9224) or is configured (a national registry, a test server).
Registries redirect queries for space they do not hold; redirects are followed (a few).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from childshield import __version__
from childshield.errors import Unavailable

IANA_BOOTSTRAP = {4: "https://data.iana.org/rdap/ipv4.json", 6: "https://data.iana.org/rdap/ipv6.json"}
MAX_BODY = 1_000_000


UNREACHABLE = "unreachable"
"""No answer at all: the server refused or dropped the connection, TLS failed, or it timed out."""
NOT_FOUND = "not-found"
MALFORMED = "malformed"
NO_SERVICE = "no-service"
"""The bootstrap registry names no RDAP server for the address."""


class RdapError(Unavailable):
    """No usable answer: the message says why, ``cause`` in one word (``unreachable``, ``not-found``,
    ``http-503``, ``malformed``, ``no-service``)."""

    def __init__(self, message: str, cause: str = MALFORMED) -> None:
        super().__init__(message)
        self.cause = cause


@dataclass(frozen=True)
class Network:
    handle: str
    name: str
    cidr: str
    country: str
    org_handle: str
    org_name: str
    abuse_email: str

    @property
    def provider_key(self) -> str:
        """What identifies the hosting provider: its organisation, else the network."""
        return self.org_handle or self.handle or self.cidr


def _vcard(entity: Mapping[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    array = entity.get("vcardArray")
    if isinstance(array, list) and len(array) == 2 and isinstance(array[1], list):
        for prop in array[1]:
            if isinstance(prop, list) and len(prop) >= 4 and isinstance(prop[0], str):
                value = prop[3]
                if isinstance(value, str):
                    out.setdefault(prop[0].lower(), []).append(value.strip())
    return out


def _entities(obj: Mapping[str, Any], depth: int = 0) -> Iterator[Mapping[str, Any]]:
    if depth > 5:
        return
    for entity in obj.get("entities") or []:
        if isinstance(entity, Mapping):
            yield entity
            yield from _entities(entity, depth + 1)


def _roles(entity: Mapping[str, Any]) -> set[str]:
    roles = entity.get("roles")
    return {r.lower() for r in roles if isinstance(r, str)} if isinstance(roles, list) else set()


def parse_network(doc: Mapping[str, Any], address: str) -> Network:
    """The hosting facts of an RFC 9083 ``ip network`` object."""
    if doc.get("objectClassName") != "ip network":
        raise RdapError(f"not an ip network object: {str(doc.get('objectClassName'))[:40]!r}")
    cidrs = doc.get("cidr0_cidrs")
    cidr = ""
    if isinstance(cidrs, list) and cidrs and isinstance(cidrs[0], Mapping):
        prefix = cidrs[0].get("v4prefix") or cidrs[0].get("v6prefix")
        if prefix is not None:
            cidr = f"{prefix}/{cidrs[0].get('length')}"
    if not cidr:
        start, end = str(doc.get("startAddress") or ""), str(doc.get("endAddress") or "")
        try:
            first, last, ip = (
                ipaddress.ip_address(start),
                ipaddress.ip_address(end),
                ipaddress.ip_address(address),
            )
            nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = list(
                ipaddress.summarize_address_range(first, last)
            )
            cidr = str(next(n for n in nets if ip in n))
        except (TypeError, ValueError, StopIteration):
            cidr = address
    org_handle = org_name = abuse = ""
    for entity in _entities(doc):
        roles, card = _roles(entity), _vcard(entity)
        if "abuse" in roles and not abuse and card.get("email"):
            abuse = card["email"][0]
        if "registrant" in roles and not org_handle:
            org_handle = str(entity.get("handle") or "")
            org_name = (card.get("fn") or card.get("org") or [""])[0]
    return Network(
        handle=str(doc.get("handle") or ""),
        name=str(doc.get("name") or ""),
        cidr=cidr,
        country=str(doc.get("country") or "").upper()[:2],
        org_handle=org_handle,
        org_name=org_name or str(doc.get("name") or ""),
        abuse_email=abuse,
    )


def base_for(address: str, bootstrap: Mapping[str, Any]) -> str:
    """The RDAP base URL serving ``address`` in an IANA bootstrap document (longest prefix wins)."""
    ip = ipaddress.ip_address(address)
    best: tuple[int, str] | None = None
    for service in bootstrap.get("services") or []:
        if not (isinstance(service, Sequence) and len(service) == 2):
            continue
        prefixes, urls = service
        url = (
            next((u for u in urls if isinstance(u, str) and u.startswith("https://")), None)
            or (urls or [None])[0]
        )
        for prefix in prefixes:
            try:
                net = ipaddress.ip_network(prefix, strict=False)
            except (TypeError, ValueError):
                continue
            if ip.version == net.version and ip in net and url and (best is None or net.prefixlen > best[0]):
                best = (net.prefixlen, url)
    if best is None:
        raise RdapError(f"no RDAP service for {address} in the bootstrap registry", NO_SERVICE)
    return best[1]


class RdapClient:
    def __init__(
        self,
        base: str | None = None,
        *,
        bootstrap: Mapping[int, Mapping[str, Any]] | None = None,
        client: httpx.Client | None = None,
        timeout: float = 15.0,
    ) -> None:
        self.base = base.rstrip("/") + "/" if base else None
        self._bootstrap = dict(bootstrap or {})
        self._client = client or httpx.Client(
            timeout=timeout,
            follow_redirects=True,
            max_redirects=4,
            headers={"Accept": "application/rdap+json", "User-Agent": f"childshield/{__version__}"},
            trust_env=False,
        )

    def close(self) -> None:
        self._client.close()

    def _base(self, address: str) -> str:
        if self.base:
            return self.base
        version = ipaddress.ip_address(address).version
        if version not in self._bootstrap:
            self._bootstrap[version] = self._get(IANA_BOOTSTRAP[version])
        return base_for(address, self._bootstrap[version]).rstrip("/") + "/"

    def _get(self, url: str) -> Mapping[str, Any]:
        try:
            response = self._client.get(url)
        except httpx.HTTPError as exc:
            said = f"{type(exc).__name__} asking {url[:200]}"
            raise RdapError(f"{said}: {str(exc)[:300]}" if str(exc) else said, UNREACHABLE) from None
        if response.status_code == 404:
            raise RdapError(f"{url[:200]}: not found", NOT_FOUND)
        if response.status_code != 200:
            raise RdapError(f"{url[:200]}: HTTP {response.status_code}", f"http-{response.status_code}")
        if len(response.content) > MAX_BODY:
            raise RdapError(f"{url[:200]}: answer too large")
        try:
            doc = response.json()
        except ValueError:
            raise RdapError(f"{url[:200]}: not JSON") from None
        if not isinstance(doc, Mapping):
            raise RdapError(f"{url[:200]}: not an RDAP object")
        return doc

    def lookup_ip(self, address: str) -> Network:
        ip = ipaddress.ip_address(address)
        return parse_network(self._get(f"{self._base(str(ip))}ip/{ip}"), str(ip))
