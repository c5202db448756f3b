"""The address guard: never let a URL given by someone else reach private, loopback, link-local or cloud
metadata addresses (server-side request forgery), unless configuration allows a network explicitly.

Every hop is checked after DNS resolution, and the connection goes to the very address that was checked
(the URL's host is kept for the Host header and for TLS), so a name that resolves to a public address
for the check and to a private one for the connection (DNS rebinding) gets nowhere.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from childshield.errors import Refused

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

METADATA = (
    ipaddress.ip_network("169.254.169.254/32"),
    ipaddress.ip_network("fd00:ec2::254/128"),
    # Azure's wire server (metadata, extensions, health) sits on a public-looking address
    ipaddress.ip_network("168.63.129.16/32"),
)

NOT_PUBLIC = "refused: not a public address"


class BlockedAddress(Refused):
    """The URL leads somewhere the guard does not allow.

    ``str()`` is what a caller outside may be told: it never names the address a name resolved to (that
    would map the inside of the network for whoever asks).  ``detail`` says which address and why, for
    logs and for the operator's own tools (the crawler, the CLI)."""

    def __init__(self, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail or message


class Unresolved(BlockedAddress):
    """The URL's host name has no address (DNS said so, or could not answer).  ``temporary``: the
    resolver could not answer now (``EAI_AGAIN``: a resolver timeout or outage), so asking again later
    may succeed; otherwise the name does not exist or has no address."""

    def __init__(self, message: str, detail: str | None = None, *, temporary: bool = False) -> None:
        super().__init__(message, detail)
        self.temporary = temporary


TEMPORARY_DNS = frozenset({socket.EAI_AGAIN})
"""getaddrinfo's code for "no answer now" (a resolver timeout or outage), as opposed to "no such name"."""


@dataclass(frozen=True)
class AddressPolicy:
    allowed_networks: Sequence[IPNetwork] = field(default_factory=tuple)
    """Networks allowed although not public (e.g. 127.0.0.0/8 for tests, an internal mirror)."""
    ports: Sequence[int] = (80, 443, 8080, 8443)
    """Ports a URL may name (allowed networks may use any)."""

    @classmethod
    def from_text(cls, text: str) -> AddressPolicy:
        """From a comma-separated list of networks (``CHILDSHIELD_FETCH_ALLOW``)."""
        nets = [ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip()]
        return cls(tuple(nets))


def _allowed(ip: IPAddress, policy: AddressPolicy) -> bool:
    return any(ip in net for net in policy.allowed_networks if net.version == ip.version)


def check_ip(ip: IPAddress, policy: AddressPolicy) -> None:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if isinstance(ip, ipaddress.IPv6Address) and not _allowed(ip, policy):
        inner = ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if inner is not None:  # 6to4 and Teredo carry an IPv4 address a relay would reach: check it too
            check_ip(inner, policy)
    if _allowed(ip, policy):
        return
    if any(ip in net for net in METADATA if net.version == ip.version):
        raise BlockedAddress(NOT_PUBLIC, f"{ip} is a cloud metadata address")
    for what, flag in (
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("private", ip.is_private),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved),
        ("unspecified", ip.is_unspecified),
        # deprecated (RFC 3879) but still routed inside some networks; ipaddress counts it as global
        ("site-local", isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local),
    ):
        if flag:
            raise BlockedAddress(NOT_PUBLIC, f"{ip} is a {what} address")
    if not ip.is_global:
        raise BlockedAddress(NOT_PUBLIC, f"{ip} is not a public address")


@dataclass(frozen=True)
class Target:
    """A checked hop: where to connect, and what to say to it."""

    scheme: str
    host: str
    port: int
    ip: IPAddress
    path: str

    @property
    def connect_url(self) -> str:
        literal = f"[{self.ip}]" if self.ip.version == 6 else str(self.ip)
        return f"{self.scheme}://{literal}:{self.port}{self.path}"


Resolver = Callable[..., list[tuple[Any, ...]]]
"""``socket.getaddrinfo``'s signature: ``(host, port, type=...)`` to address infos."""


class HostsResolver:
    """Names pinned to addresses, like a hosts file, in front of the system's resolver (or instead of it):
    for a closed test web on loopback, or an operator who pins names."""

    def __init__(self, hosts: Mapping[str, str | Sequence[str]], *, fallback: Resolver | None = None) -> None:
        self.hosts = {_key(k): [v] if isinstance(v, str) else list(v) for k, v in hosts.items()}
        self.fallback = fallback

    def __call__(
        self, host: str, port: int, type: int = socket.SOCK_STREAM, **_: Any
    ) -> list[tuple[Any, ...]]:
        addresses = self.hosts.get(_key(host))
        if addresses is None:
            try:
                ip = ipaddress.ip_address(host)
            except ValueError:
                if self.fallback is None:
                    raise socket.gaierror(socket.EAI_NONAME, f"{host} is not in the hosts table") from None
                return self.fallback(host, port, type=type)
            addresses = [str(ip)]
        out = []
        for address in addresses:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            out.append((family, type, socket.IPPROTO_TCP, "", (address, port)))
        return out


def ascii_host(name: str) -> str:
    """A host name as DNS, the Host header and TLS take it: an international name in its IDNA form
    (``bücher.example`` → ``xn--bcher-kva.example``); ValueError if it has none."""
    try:
        return name.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise ValueError(f"{name[:200]!r} is not a valid host name") from None


def _key(name: str) -> str:
    name = name.lower().rstrip(".")
    try:
        return ascii_host(name)
    except ValueError:
        return name


def check_url(url: str, policy: AddressPolicy, resolve: Resolver | None = None) -> Target:
    """Parse, resolve and check a URL; raises :class:`BlockedAddress` (or ValueError for a bad URL)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"only http and https URLs can be fetched, not {parts.scheme or 'none'!r}")
    if not parts.hostname:
        raise ValueError("the URL has no host")
    if parts.username or parts.password:
        raise ValueError("URLs with credentials are refused")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ValueError("the URL's port is not a number from 0 to 65535") from None
    host = ascii_host(parts.hostname)
    try:
        infos = (resolve or socket.getaddrinfo)(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        temporary = isinstance(exc, socket.gaierror) and exc.errno in TEMPORARY_DNS
        raise Unresolved(
            f"cannot resolve {host[:200]!r}", f"cannot resolve {host!r}: {exc}", temporary=temporary
        ) from None
    addresses = list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos))
    if not addresses:
        raise Unresolved(f"{host[:200]!r} has no address")
    for ip in addresses:  # every address the name has must pass: the client might be given any of them
        try:
            check_ip(ip, policy)
        except BlockedAddress as exc:
            said = exc.detail if host == str(ip) else f"{host[:200]!r} resolves to {exc.detail}"
            raise BlockedAddress(str(exc), said) from None
    ip = addresses[0]
    if port not in policy.ports and not _allowed(ip, policy):
        raise BlockedAddress(f"refused: port {port} is not allowed")
    path = parts.path or "/"
    if parts.query:
        path += f"?{parts.query}"
    return Target(parts.scheme, host, port, ip, path)
