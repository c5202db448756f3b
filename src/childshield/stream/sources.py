"""Which stream sources a service may open, and the FFmpeg protocols each may use.

Over HTTP (``POST /v1/watches``) a source is a network URL whose host passes the address guard (as for
``/v1/scan/url``: no loopback, private, link-local or metadata address unless ``CHILDSHIELD_FETCH_ALLOW``
names it), and FFmpeg is held to that scheme's protocols (``protocol_whitelist``): a playlist cannot
send it to ``file:`` or another protocol.  Local files and capture devices only with
``CHILDSHIELD_WATCH_LOCAL=1`` (the command line may watch anything its user can open)."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from childshield.crawl.guard import AddressPolicy, BlockedAddress, check_ip
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


class SourceRefused(ValueError):
    """A source this service will not open: the message says why."""


def network_options(source: str, policy: AddressPolicy) -> dict[str, str]:
    """Check a network source's host; returns the FFmpeg options that keep it to its protocols."""
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
        infos = socket.getaddrinfo(parts.hostname, port or None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise SourceRefused(f"cannot resolve {parts.hostname!r}: {exc}") from None
    for info in infos:
        try:
            check_ip(ipaddress.ip_address(str(info[4][0]).split("%")[0]), policy)
        except BlockedAddress as exc:
            raise SourceRefused(str(exc)) from None
    return {"protocol_whitelist": PROTOCOLS[scheme]}


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
