"""The crawler's fetch: async, guarded on every hop, bounded in size and time, answers every status.

Unlike ``fetch`` (one image for a scan, where anything but 200 is an error), the crawler needs to know
what a server said: 404 and 410 mean gone, 429 and 503 mean slow down (with ``Retry-After``), and a
timeout or a reset is worth another try later.  Redirects are followed (each hop checked by the address
guard after resolution, connecting to the checked address), with loop detection.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from dataclasses import dataclass

import httpx

from childshield.media.formats import sniff
from childshield.net.fetch import SEND_ERRORS, TIMEOUT, TOO_LARGE, FetchError, Hops
from childshield.net.guard import AddressPolicy, Resolver

CrawlFetchError = FetchError
"""No answer worth keeping: ``retry`` says whether another try later could do better (the same error as
``fetch``'s, as both walk their hops with :class:`~childshield.net.fetch.Hops`)."""


@dataclass(frozen=True)
class Answer:
    url: str
    """The final URL, after redirects."""
    status: int
    content_type: str
    body: bytes
    retry_after: float | None = None
    ip: str = ""
    """The address the final hop connected to (where the content is hosted)."""

    @property
    def kind(self) -> str:
        """``media`` (an image, by its bytes), ``page`` (HTML) or ``other``."""
        if self.status != 200:
            return "other"
        if sniff(self.body[:32]) is not None:
            return "media"
        ctype = self.content_type.split(";")[0].strip().lower()
        head = self.body[:512].lstrip().lower()
        if ctype in ("text/html", "application/xhtml+xml") or head.startswith((b"<!doctype html", b"<html")):
            return "page"
        return "other"


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


async def fetch_answer(
    client: httpx.AsyncClient,
    url: str,
    policy: AddressPolicy,
    *,
    max_bytes: int,
    timeout: float,
    resolve: Resolver | None = None,
    page_bytes: int | None = None,
) -> Answer:
    """GET ``url`` (following redirects, each hop guarded); the answer for any status.  Bodies of
    non-200 answers are not read; ``text/*`` bodies are limited to ``page_bytes`` when given, others to
    ``max_bytes``.  Raises :class:`CrawlFetchError`."""
    try:
        return await asyncio.wait_for(
            _fetch(client, url, policy, max_bytes, timeout, resolve, page_bytes), timeout
        )
    except TimeoutError:
        raise CrawlFetchError(f"timed out after {timeout:g} s", retry=True, cause=TIMEOUT) from None


async def _fetch(
    client: httpx.AsyncClient,
    url: str,
    policy: AddressPolicy,
    max_bytes: int,
    timeout: float,
    resolve: Resolver | None,
    page_bytes: int | None = None,
) -> Answer:
    hops = Hops(url, policy, resolve)
    while True:
        target = await asyncio.to_thread(hops.target)
        try:
            response = await client.send(hops.request(client, target, timeout), stream=True)
        except SEND_ERRORS as exc:
            raise hops.send_failed(exc) from None
        try:
            if hops.follow(response):
                continue
            current = hops.current
            ctype = response.headers.get("content-type", "")
            if response.status_code != 200:
                wait = retry_after(response.headers.get("retry-after"))
                return Answer(current, response.status_code, ctype, b"", wait, str(target.ip))
            if page_bytes is not None and ctype.lower().startswith("text/"):
                max_bytes = min(max_bytes, page_bytes)
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise CrawlFetchError(
                    f"the body is {int(declared)} bytes, over the limit of {max_bytes}", cause=TOO_LARGE
                )
            chunks, size = [], 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise CrawlFetchError(f"the body is over the limit of {max_bytes} bytes", cause=TOO_LARGE)
                chunks.append(chunk)
            return Answer(current, 200, ctype, b"".join(chunks), None, str(target.ip))
        except httpx.HTTPError as exc:
            raise hops.read_failed(exc) from None
        finally:
            await response.aclose()
