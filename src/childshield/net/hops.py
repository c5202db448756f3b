"""One guarded GET, without I/O: which hop may be fetched, which redirect is followed, the size and time
limits, and what each failure means.

Both drivers walk a :class:`Hops` the same way, doing only the I/O themselves (``fetch`` with an
``httpx.Client``, the crawler's ``fetch_answer`` with an ``httpx.AsyncClient``)::

    hops = Hops(url, policy, resolve, max_bytes=..., timeout=...)
    while True:
        target = hops.target()                      # guard, loops, redirect count (blocks on DNS)
        try:
            response = client.send(hops.request(client, target), stream=True)
        except SEND_ERRORS as exc:
            raise hops.send_failed(exc) from None
        try:
            reply = hops.answer(response)           # None: a redirect, followed
            if reply is None:
                continue
            if reply.reads:
                for chunk in response.iter_bytes():
                    reply.add(chunk)                # size (and clock) limits
            return reply                            # reply.body(), reply.url, ...
        except httpx.HTTPError as exc:
            raise hops.read_failed(exc) from None
        finally:
            response.close()

so both refuse the same URLs, follow the same redirects and fail with the same :class:`FetchError`
(message, ``detail``, ``cause``, ``retry``) for the same reasons.
"""

from __future__ import annotations

import email.utils
import time
from http.cookiejar import CookieJar, DefaultCookiePolicy
from urllib.parse import urljoin

import httpx

from childshield import __version__
from childshield.errors import Invalid
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


class FetchError(Invalid):
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


SEND_ERRORS = (httpx.HTTPError, httpx.InvalidURL)
"""What sending a request may raise for reasons of the server's own (see :meth:`Hops.send_failed`)."""


def overtime(timeout: float) -> FetchError:
    """The whole fetch ran past ``timeout`` (for a driver that cancels it there, see :class:`Hops`)."""
    return FetchError(f"timed out after {timeout:g} s", retry=True, cause=TIMEOUT)


def _timed_out() -> FetchError:
    return FetchError("timed out", retry=True, cause=TIMEOUT)


def retry_after(value: str | None, *, cap: float = 3600.0) -> float | None:
    """Seconds from a ``Retry-After`` header (seconds or an HTTP date), capped; None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(cap, float(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, min(cap, when.timestamp() - time.time()))


class Reply:
    """The last hop's answer: where it came from, what it said and, when ``reads``, its body, read chunk
    by chunk within the limits."""

    def __init__(
        self,
        url: str,
        response: httpx.Response,
        target: Target,
        *,
        limit: int,
        deadline: float | None,
    ) -> None:
        self.url = url
        """The final URL, after redirects."""
        self.status = response.status_code
        self.content_type = response.headers.get("content-type", "")
        self.ip = str(target.ip)
        """The address the final hop connected to (where the content is hosted)."""
        self.retry_after = None if self.status == 200 else retry_after(response.headers.get("retry-after"))
        self.reads = self.status == 200
        """Whether the body is worth reading (another status's body is not read)."""
        self.limit, self._deadline = limit, deadline
        self._chunks: list[bytes] = []
        self._size = 0

    def add(self, chunk: bytes) -> None:
        """One more chunk of the body; FetchError past the size limit (or the clock's)."""
        self._size += len(chunk)
        if self._size > self.limit:
            raise FetchError(f"the body is over the limit of {self.limit} bytes", cause=TOO_LARGE)
        if self._deadline is not None and time.monotonic() > self._deadline:
            raise _timed_out()
        self._chunks.append(chunk)

    def body(self) -> bytes:
        return b"".join(self._chunks)


class Hops:
    """The hops of one guarded GET, without I/O: the driver asks for each hop's target, sends the request
    built here, and hands back the answer to learn whether a redirect was followed or what to read.

    Limits: ``max_bytes`` for a body (``page_bytes``, when given, for ``text/*`` ones); ``timeout`` for the
    whole fetch, all hops and the body.  A sync driver is held to it by the clock, read here before each
    hop (each request gets the time left) and after each chunk; an async driver that cancels the whole
    fetch at ``timeout`` (``asyncio.wait_for``, then :func:`overtime`) passes ``cancels=True``, and each
    request may take all of it.

    ``only_ok``: anything but 200 is a FetchError (``http-<status>``), as for a scan, where a 404 proves
    nothing; otherwise every status is an answer (the crawler needs 404, 410, 429 and 503).
    """

    def __init__(
        self,
        url: str,
        policy: AddressPolicy,
        resolve: Resolver | None = None,
        *,
        max_bytes: int,
        timeout: float,
        page_bytes: int | None = None,
        only_ok: bool = True,
        cancels: bool = False,
    ) -> None:
        self.current = url
        self.policy, self.resolve = policy, resolve
        self.max_bytes, self.page_bytes, self.timeout = max_bytes, page_bytes, timeout
        self.only_ok = only_ok
        self.deadline = None if cancels else time.monotonic() + timeout
        self.seen: set[str] = set()
        self._target: Target | None = None
        self._left = timeout

    def target(self) -> Target:
        """Check the current URL (loop, redirect count, guard, clock); blocks on DNS, so async drivers run
        it in a thread."""
        if len(self.seen) > MAX_REDIRECTS:
            raise FetchError(f"more than {MAX_REDIRECTS} redirects", cause=REDIRECT)
        if self.current in self.seen:
            raise FetchError(f"redirect loop at {self.current[:200]}", cause=REDIRECT)
        self.seen.add(self.current)
        try:
            target = check_url(self.current, self.policy, self.resolve)
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
        if self.deadline is not None:
            self._left = self.deadline - time.monotonic()
            if self._left <= 0:
                raise _timed_out()
        self._target = target
        return target

    def request(self, client: httpx.Client | httpx.AsyncClient, target: Target) -> httpx.Request:
        """The GET for a checked hop: to the checked address, the URL's host in Host and for TLS."""
        try:
            return client.build_request(
                "GET",
                target.connect_url,
                headers={
                    "Host": host_header(target.host, target.port, target.scheme),
                    "User-Agent": USER_AGENT,
                },
                timeout=httpx.Timeout(self._left),
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

    def answer(self, response: httpx.Response) -> Reply | None:
        """None if ``response`` is a redirect (its Location is then the current hop); else the final
        :class:`Reply`.  Raises FetchError for a redirect to nowhere, a status refused by ``only_ok``, or
        a declared size over the limit."""
        if self._follow(response):
            return None
        if self.only_ok and response.status_code != 200:
            raise FetchError(
                f"HTTP {response.status_code} from {self.current[:200]}", cause=f"http-{response.status_code}"
            )
        if self._target is None:
            raise RuntimeError("answer() before target()")
        limit = self.max_bytes
        ctype = response.headers.get("content-type", "")
        if self.page_bytes is not None and ctype.lower().startswith("text/"):
            limit = min(limit, self.page_bytes)
        reply = Reply(self.current, response, self._target, limit=limit, deadline=self.deadline)
        declared = response.headers.get("content-length", "")
        if reply.reads and declared.isdigit() and int(declared) > limit:
            raise FetchError(f"the body is {int(declared)} bytes, over the limit of {limit}", cause=TOO_LARGE)
        return reply

    def _follow(self, response: httpx.Response) -> bool:
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


def no_cookies() -> CookieJar:
    """A cookie jar that keeps nothing: a fetch never sends a cookie a site set earlier."""
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


def host_header(host: str, port: int, scheme: str) -> str:
    name = f"[{host}]" if ":" in host else host
    default = 443 if scheme == "https" else 80
    return name if port == default else f"{name}:{port}"
