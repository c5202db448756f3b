"""Which stream sources a service may open, and the FFmpeg protocols each may use.

Over HTTP (``POST /v1/watches``) a source is a network URL whose host passes the address guard (as for
``/v1/scan/url``: no loopback, private, link-local or metadata address unless ``CHILDSHIELD_FETCH_ALLOW``
names it), and FFmpeg is held to that scheme's protocols (``protocol_whitelist``): a playlist cannot
send it to ``file:`` or another protocol.  Local files and capture devices only with
``CHILDSHIELD_WATCH_LOCAL=1`` (the command line may watch anything its user can open).

The host is checked again at every connection (``check_source``), and FFmpeg is given the address that
was checked, never the name (which it would resolve again: DNS rebinding).  RTSP and the TLS schemes go
through a relay on 127.0.0.1 (``stream.relay``): FFmpeg's RTSP client follows redirects to any host,
and TLS needs the host's name, not the address."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from childshield.errors import Refused
from childshield.net.guard import AddressPolicy, BlockedAddress, IPAddress, Resolver, check_ip
from childshield.stream.hls import is_hls

PROTOCOLS: dict[str, str] = {
    "http": "http,https,tcp,tls,crypto,hls",
    "https": "http,https,tcp,tls,crypto,hls",
    "rtmp": "rtmp,rtmps,tcp,tls",
    "rtmps": "rtmp,rtmps,tcp,tls",
    "rtsp": "rtsp,rtp,udp,tcp,tls",
    "rtsps": "rtsp,rtp,udp,tcp,tls",
    "srt": "srt,udp",
    "tcp": "tcp",
    "udp": "udp,rtp",
}
DEFAULT_PORTS = {"http": 80, "https": 443, "rtmp": 1935, "rtmps": 443, "rtsp": 554, "rtsps": 322}
RELAYED = {"rtsp": "rtsp", "rtsps": "rtsp", "rtmps": "rtmp"}
"""Schemes read through ``stream.relay``, and the plain scheme FFmpeg then speaks to it."""
RELAYED_PROTOCOLS = {"rtsp": "rtsp,tcp", "rtmp": "rtmp,tcp"}


class SourceRefused(Refused, ValueError):
    """A source this service will not open: the message says why (never where an internal name resolves:
    ``detail`` has that, for logs and operators).

    A ``ValueError`` too, as callers catch it."""

    def __init__(self, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail or message


@dataclass(frozen=True)
class CheckedSource:
    """A network source whose host passed the guard: where FFmpeg connects, and how."""

    scheme: str
    host: str
    port: int
    ip: IPAddress
    url: str
    """The source with its host replaced by ``ip`` (FFmpeg never resolves the name again)."""
    options: dict[str, str] = field(default_factory=dict)
    """FFmpeg options keeping it to the scheme's protocols."""

    @property
    def relayed(self) -> bool:
        return self.scheme in RELAYED

    def relay_url(self, port: int) -> str:
        """What FFmpeg opens when the source goes through a relay listening on ``port`` of 127.0.0.1."""
        parts = urlsplit(self.url)
        return urlunsplit(
            (RELAYED[self.scheme], _netloc(parts.netloc, "127.0.0.1", port), parts.path, parts.query, "")
        )

    def relay_options(self) -> dict[str, str]:
        plain = RELAYED[self.scheme]
        options = {"protocol_whitelist": RELAYED_PROTOCOLS[plain]}
        if plain == "rtsp":  # the control connection only: no RTP over UDP to where a reply says
            options["rtsp_transport"] = "tcp"
        return options


def check_source(source: str, policy: AddressPolicy, resolve: Resolver | None = None) -> CheckedSource:
    """Resolve and check a network source's host (every address it has must pass); raises
    ``SourceRefused``."""
    parts = urlsplit(source)
    scheme = parts.scheme.lower()
    if scheme not in PROTOCOLS:
        raise SourceRefused(f"sources are {', '.join(sorted(PROTOCOLS))} URLs, not {scheme or 'a path'!r}")
    if not parts.hostname:
        raise SourceRefused("the source has no host")
    if parts.query and scheme in ("tcp", "udp", "srt", "rtmp", "rtmps"):
        raise SourceRefused("options in the URL are not taken for this kind of source (FFmpeg reads them)")
    try:
        port = parts.port or DEFAULT_PORTS.get(scheme, 0)
    except ValueError:
        raise SourceRefused("the port is not a number from 0 to 65535") from None
    try:
        infos = (resolve or socket.getaddrinfo)(parts.hostname, port or None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise SourceRefused(f"cannot resolve {parts.hostname!r}: {exc}") from None
    addresses = list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos))
    if not addresses:
        raise SourceRefused(f"{parts.hostname!r} has no address")
    for ip in addresses:
        try:
            check_ip(ip, policy)
        except BlockedAddress as exc:
            raise SourceRefused(str(exc), exc.detail) from None
    ip = addresses[0]
    literal = f"[{ip}]" if ip.version == 6 else str(ip)
    url = urlunsplit((scheme, _netloc(parts.netloc, literal, port), parts.path, parts.query, parts.fragment))
    return CheckedSource(scheme, parts.hostname, port, ip, url, {"protocol_whitelist": PROTOCOLS[scheme]})


def _netloc(netloc: str, host: str, port: int) -> str:
    """``netloc`` with its host and port replaced, its credentials (``user:pw@``) kept."""
    auth = netloc.rpartition("@")[0]
    return (f"{auth}@" if auth else "") + host + (f":{port}" if port else "")


def network_options(source: str, policy: AddressPolicy, resolve: Resolver | None = None) -> dict[str, str]:
    """Check a network source's host; returns the FFmpeg options that keep it to its protocols."""
    return check_source(source, policy, resolve).options


def service_options(source: str, policy: AddressPolicy, *, allow_local: bool) -> dict[str, str]:
    """What ``serve`` opens: network URLs through ``network_options``; files and devices only when
    allowed (then as ``file`` only).  Over http(s) only HLS playlists, which the watch reads itself with
    the guard on every request (``stream.hls``), never FFmpeg's HTTP client."""
    if "://" in source:
        if urlsplit(source).scheme.lower() in ("http", "https") and not is_hls(source):
            raise SourceRefused("http(s) sources are HLS playlists (.m3u8)")
        return network_options(source, policy)
    if not allow_local:
        raise SourceRefused("local files and devices are watched only with CHILDSHIELD_WATCH_LOCAL=1")
    return {"protocol_whitelist": "file"}
