"""URL normalisation for the frontier: one spelling per resource, so nothing is fetched twice."""

from __future__ import annotations

import hashlib
import re
from urllib.parse import quote, urlsplit, urlunsplit

from childshield.errors import Invalid

MAX_URL = 4096
_SAFE_PATH = "/:@!$&'()*+,;=-._~%"
_SAFE_QUERY = _SAFE_PATH + "?"


class BadUrl(Invalid, ValueError):
    """Not an http(s) URL the crawler can fetch.  A ``ValueError`` too: URL parsing callers catch that."""


def normalize(url: str, base: str | None = None) -> str:
    """The canonical form of ``url`` (resolved against ``base``): http(s) only, host lowercased and
    IDNA-encoded, default port and fragment dropped, path and query percent-encoded consistently."""
    from urllib.parse import urljoin

    url = url.strip()
    if base is not None:
        url = urljoin(base, url)
    if len(url) > MAX_URL:
        raise BadUrl("URL too long")
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise BadUrl(f"not an http(s) URL: {scheme or 'no scheme'}")
        host = parts.hostname
        if not host:
            raise BadUrl("no host")
        if parts.username or parts.password:
            raise BadUrl("URLs with credentials are not crawled")
        port = parts.port
    except ValueError as exc:
        raise BadUrl(str(exc)) from None
    if ":" in host:  # IPv6 literal
        netloc = f"[{host}]"
    else:
        try:
            netloc = host.rstrip(".").encode("idna").decode("ascii").lower()
        except UnicodeError:
            raise BadUrl("invalid host name") from None
    if port is not None and port != (443 if scheme == "https" else 80):
        netloc += f":{port}"
    path = _component(parts.path or "/", _SAFE_PATH)
    query = _component(parts.query, _SAFE_QUERY + "=") if parts.query else ""
    return urlunsplit((scheme, netloc, path, query, ""))


_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _component(text: str, safe: str) -> str:
    """One spelling of a path or query that names the same resource (RFC 3986, 6.2.2): escapes of
    unreserved characters decoded, other escapes kept (upper-cased: ``%2B`` stays ``%2B``, never ``+``),
    characters that must be escaped escaped, a stray ``%`` written ``%25``."""

    def one(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        return char if char in _UNRESERVED else "%" + match.group(1).upper()

    text = re.sub(r"%(?![0-9A-Fa-f]{2})", "%25", text)
    return quote(_ESCAPE.sub(one, text), safe=safe)


def url_hash(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()


def site_of(url: str) -> str:
    """The site a URL belongs to: its host, without a leading ``www.`` (same-site links stay in it)."""
    host = urlsplit(url).hostname or ""
    return host[4:] if host.startswith("www.") else host


def host_of(url: str) -> str:
    return urlsplit(url).hostname or ""
