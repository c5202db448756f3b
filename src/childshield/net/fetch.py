"""Fetch one URL for scanning: guarded hops, bounded size and time, no cookies, a clear user agent.

The hop logic (guard check before each request, redirects followed by hand, loops and unparseable
redirects refused) lives here once, in :class:`Hops`, and is shared by ``fetch`` and the crawler's async
``fetch_answer``: both refuse the same URLs for the same reasons.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
from urllib.parse import urljoin

import httpx

from childshield import __version__
from childshield.net.guard import AddressPolicy, BlockedAddress, Resolver, Target, Unresolved, check_url

USER_AGENT = f"childshield/{__version__} (hash matching; +https://github.com/childshield)"
MAX_REDIRECTS = 5


REFUSED = "refused"
"""The address guard refused the URL (not a public address, a port not allowed)."""
DNS = "dns"
"""The host name has no address, or the resolver could not answer (then ``retry`` is set)."""
BAD_URL = "bad-url"
REDIRECT = "redirect"
"""A redirect loop, too many redirects, or a redirect to nowhere."""
TIMEOUT = "timeout"
NETWORK = "network"
"""The connection failed or broke (refused, reset, TLS)."""
TOO_LARGE = "too-large"
# A server's answer other than 200 that proves nothing is ``http-<status>`` (``http-503``).


class FetchError(Exception):
    """The URL could not be fetched.  ``str()`` says why in words anyone may be told (never which
    internal address a name resolved to); ``detail`` says it in full, for logs and operators; ``retry``
    says whether another try later could do better; ``cause`` is one of the short names above, for
    counting failures by cause and putting them back in the queue by cause."""

    def __init__(
        self, message: str, *, retry: bool = False, detail: str | None = None, cause: str = NETWORK
    ) -> None:
        super().__init__(message)
        self.retry = retry
        self.detail = detail or message
        self.cause = cause


@dataclass(frozen=True)
class Fetched:
    url: str
    """The final URL, after redirects."""
    status: int
    content_type: str
    body: bytes


class Hops:
    """The hops of one guarded fetch, without I/O: the caller asks for each hop's target, builds and sends
    the request, and hands back the answer to learn where a redirect leads."""

    def __init__(self, url: str, policy: AddressPolicy, resolve: Resolver | None = None) -> None:
        self.current = url
        self.policy, self.resolve = policy, resolve
        self.seen: set[str] = set()

    def target(self) -> Target:
        """Check the current URL (loop, guard); blocks on DNS, so async callers run it in a thread."""
        if len(self.seen) > MAX_REDIRECTS:
            raise FetchError(f"more than {MAX_REDIRECTS} redirects", cause=REDIRECT)
        if self.current in self.seen:
            raise FetchError(f"redirect loop at {self.current[:200]}", cause=REDIRECT)
        self.seen.add(self.current)
        try:
            return check_url(self.current, self.policy, self.resolve)
        except Unresolved as exc:
            raise FetchError(
                f"{self.current[:200]}: {exc}",
                detail=f"{self.current[:200]}: {exc.detail}",
                retry=exc.temporary,
                cause=DNS,
            ) from None
        except BlockedAddress as exc:
            raise FetchError(
                f"{self.current[:200]}: {exc}", detail=f"{self.current[:200]}: {exc.detail}", cause=REFUSED
            ) from None
        except ValueError as exc:
            raise FetchError(f"refused {self.current[:200]}: {exc}", cause=BAD_URL) from None

    def request(
        self, client: httpx.Client | httpx.AsyncClient, target: Target, timeout: float
    ) -> httpx.Request:
        """The GET for a checked hop: to the checked address, the URL's host in Host and for TLS."""
        try:
            return client.build_request(
                "GET",
                target.connect_url,
                headers={
                    "Host": host_header(target.host, target.port, target.scheme),
                    "User-Agent": USER_AGENT,
                },
                timeout=httpx.Timeout(timeout),
                extensions={"sni_hostname": target.host},
            )
        except httpx.InvalidURL:
            raise FetchError(
                f"refused {self.current[:200]}: the URL cannot be fetched", cause=BAD_URL
            ) from None

    def send_failed(self, exc: Exception) -> FetchError:
        """What a failed send means.  httpx builds the next request of every redirect itself (even when
        not following it) and raises InvalidURL, not an HTTPError, for a Location it cannot parse: that is
        the server's answer, not worth another try."""
        if isinstance(exc, httpx.InvalidURL):
            return FetchError(
                f"{self.current[:200]} redirects to a URL that cannot be fetched", cause=REDIRECT
            )
        said = f"{type(exc).__name__} fetching {self.current[:200]}"
        return FetchError(
            said,
            retry=True,
            detail=f"{said}: {str(exc)[:300]}" if str(exc) else said,
            cause=TIMEOUT if isinstance(exc, httpx.TimeoutException) else NETWORK,
        )

    def read_failed(self, exc: httpx.HTTPError) -> FetchError:
        """What a body that broke off means: worth another try."""
        said = f"{type(exc).__name__} reading {self.current[:200]}"
        return FetchError(
            said,
            retry=True,
            detail=f"{said}: {str(exc)[:300]}" if str(exc) else said,
            cause=TIMEOUT if isinstance(exc, httpx.TimeoutException) else NETWORK,
        )

    def follow(self, response: httpx.Response) -> bool:
        """True (and the next hop current) if ``response`` is a redirect."""
        if not response.is_redirect:
            return False
        location = response.headers.get("location", "")
        if not location:
            raise FetchError("a redirect without a Location", cause=REDIRECT)
        try:
            self.current = urljoin(self.current, location)
        except ValueError:  # e.g. a bracketed host that is no IPv6 address
            raise FetchError(
                f"{self.current[:200]} redirects to a URL that cannot be fetched", cause=REDIRECT
            ) from None
        return True


SEND_ERRORS = (httpx.HTTPError, httpx.InvalidURL)
"""What sending a request may raise for reasons of the server's own (see :meth:`Hops.send_failed`)."""


def fetch(
    url: str,
    policy: AddressPolicy,
    *,
    max_bytes: int = 50 * 1024 * 1024,
    timeout: float = 20.0,
    client: httpx.Client | None = None,
    resolve: Resolver | None = None,
) -> Fetched:
    """GET ``url``, following up to MAX_REDIRECTS redirects, each hop guarded.  Raises FetchError."""
    own = client is None
    http = client or httpx.Client(follow_redirects=False, trust_env=False, cookies=no_cookies())
    deadline = time.monotonic() + timeout
    hops = Hops(url, policy, resolve)
    try:
        while True:
            target = hops.target()
            left = deadline - time.monotonic()
            if left <= 0:
                raise FetchError("timed out", retry=True, cause=TIMEOUT)
            try:
                response = http.send(hops.request(http, target, left), stream=True)
            except SEND_ERRORS as exc:
                raise hops.send_failed(exc) from None
            try:
                if hops.follow(response):
                    continue
                current = hops.current
                if response.status_code != 200:
                    raise FetchError(
                        f"HTTP {response.status_code} from {current[:200]}",
                        cause=f"http-{response.status_code}",
                    )
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    raise FetchError(
                        f"the body is {int(declared)} bytes, over the limit of {max_bytes}", cause=TOO_LARGE
                    )
                chunks, size = [], 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > max_bytes:
                        raise FetchError(f"the body is over the limit of {max_bytes} bytes", cause=TOO_LARGE)
                    if time.monotonic() > deadline:
                        raise FetchError("timed out", retry=True, cause=TIMEOUT)
                    chunks.append(chunk)
                return Fetched(
                    current, response.status_code, response.headers.get("content-type", ""), b"".join(chunks)
                )
            except httpx.HTTPError as exc:
                raise hops.read_failed(exc) from None
            finally:
                response.close()
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
