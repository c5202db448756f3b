"""Fetch one URL for scanning: guarded hops, bounded size and time, no cookies, a clear user agent."""

from __future__ import annotations

import time
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
from urllib.parse import urljoin

import httpx

from childshield import __version__
from childshield.crawl.guard import AddressPolicy, BlockedAddress, check_url

USER_AGENT = f"childshield/{__version__} (hash matching; +https://github.com/childshield)"
MAX_REDIRECTS = 5


class FetchError(Exception):
    """The URL could not be fetched; the message says why (for people)."""


@dataclass(frozen=True)
class Fetched:
    url: str
    """The final URL, after redirects."""
    status: int
    content_type: str
    body: bytes


def fetch(
    url: str,
    policy: AddressPolicy,
    *,
    max_bytes: int = 50 * 1024 * 1024,
    timeout: float = 20.0,
    client: httpx.Client | None = None,
) -> Fetched:
    """GET ``url``, following up to MAX_REDIRECTS redirects, each hop guarded.  Raises FetchError."""
    own = client is None
    http = client or httpx.Client(follow_redirects=False, trust_env=False, cookies=no_cookies())
    deadline = time.monotonic() + timeout
    seen: set[str] = set()
    try:
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            if current in seen:
                raise FetchError(f"redirect loop at {current[:200]}")
            seen.add(current)
            try:
                target = check_url(current, policy)
            except (BlockedAddress, ValueError) as exc:
                raise FetchError(f"refused {current[:200]}: {exc}") from None
            left = deadline - time.monotonic()
            if left <= 0:
                raise FetchError("timed out")
            headers = {
                "Host": host_header(target.host, target.port, target.scheme),
                "User-Agent": USER_AGENT,
            }
            request = http.build_request(
                "GET",
                target.connect_url,
                headers=headers,
                timeout=httpx.Timeout(left),
                extensions={"sni_hostname": target.host},
            )
            try:
                response = http.send(request, stream=True)
            except httpx.HTTPError as exc:
                raise FetchError(f"{type(exc).__name__} fetching {current[:200]}") from None
            try:
                if response.is_redirect:
                    location = response.headers.get("location", "")
                    if not location:
                        raise FetchError("a redirect without a Location")
                    current = urljoin(current, location)
                    continue
                if response.status_code != 200:
                    raise FetchError(f"HTTP {response.status_code} from {current[:200]}")
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    raise FetchError(f"the body is {int(declared)} bytes, over the limit of {max_bytes}")
                chunks, size = [], 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > max_bytes:
                        raise FetchError(f"the body is over the limit of {max_bytes} bytes")
                    if time.monotonic() > deadline:
                        raise FetchError("timed out")
                    chunks.append(chunk)
                return Fetched(
                    current, response.status_code, response.headers.get("content-type", ""), b"".join(chunks)
                )
            except httpx.HTTPError as exc:
                raise FetchError(f"{type(exc).__name__} reading {current[:200]}") from None
            finally:
                response.close()
        raise FetchError(f"more than {MAX_REDIRECTS} redirects")
    finally:
        if own:
            http.close()


def no_cookies() -> CookieJar:
    """A cookie jar that keeps nothing: a fetch never sends a cookie a site set earlier."""
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


def host_header(host: str, port: int, scheme: str) -> str:
    name = f"[{host}]" if ":" in host else host
    default = 443 if scheme == "https" else 80
    return name if port == default else f"{name}:{port}"
