"""The crawler's fetch: async, guarded on every hop, bounded in size and time, answers every status.

Unlike ``fetch`` (one image for a scan, where anything but 200 is an error), the crawler needs to know
what a server said: 404 and 410 mean gone, 429 and 503 mean slow down (with ``Retry-After``), and a
timeout or a reset is worth another try later.  This is the async driver of
:class:`~childshield.net.hops.Hops`, which makes every decision (guard, redirects, limits, what a
failure means) for both; here is only I/O.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx

from childshield.media.formats import sniff
from childshield.net.guard import AddressPolicy, Resolver
from childshield.net.hops import SEND_ERRORS, FetchError, Hops, overtime

CrawlFetchError = FetchError
"""No answer worth keeping: ``retry`` says whether another try later could do better (the same error as
``fetch``'s, as both walk their hops with :class:`~childshield.net.hops.Hops`)."""


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
    hops = Hops(
        url,
        policy,
        resolve,
        max_bytes=max_bytes,
        timeout=timeout,
        page_bytes=page_bytes,
        only_ok=False,
        cancels=True,
    )
    try:
        return await asyncio.wait_for(_walk(client, hops), timeout)
    except TimeoutError:
        raise overtime(timeout) from None


async def _walk(client: httpx.AsyncClient, hops: Hops) -> Answer:
    while True:
        target = await asyncio.to_thread(hops.target)
        try:
            response = await client.send(hops.request(client, target), stream=True)
        except SEND_ERRORS as exc:
            raise hops.send_failed(exc) from None
        try:
            reply = hops.answer(response)
            if reply is None:
                continue
            if reply.reads:
                async for chunk in response.aiter_bytes():
                    reply.add(chunk)
            return Answer(
                reply.url, reply.status, reply.content_type, reply.body(), reply.retry_after, reply.ip
            )
        except httpx.HTTPError as exc:
            raise hops.read_failed(exc) from None
        finally:
            await response.aclose()
