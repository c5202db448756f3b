"""Fetch one URL for scanning: guarded hops, bounded size and time, no cookies, a clear user agent.

The sync driver of :class:`~childshield.net.hops.Hops`: every decision (guard, redirects, limits, what
a failure means) is made there, the same as for the crawler's async ``fetch_answer``; here is only I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from childshield.net.guard import AddressPolicy, Resolver
from childshield.net.hops import SEND_ERRORS, Hops, no_cookies


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
    resolve: Resolver | None = None,
) -> Fetched:
    """GET ``url``, following up to MAX_REDIRECTS redirects, each hop guarded; only a 200 is an answer.
    Raises :class:`~childshield.net.hops.FetchError`."""
    own = client is None
    http = client or httpx.Client(follow_redirects=False, trust_env=False, cookies=no_cookies())
    hops = Hops(url, policy, resolve, max_bytes=max_bytes, timeout=timeout)
    try:
        while True:
            target = hops.target()
            try:
                response = http.send(hops.request(http, target), stream=True)
            except SEND_ERRORS as exc:
                raise hops.send_failed(exc) from None
            try:
                reply = hops.answer(response)
                if reply is None:
                    continue
                if reply.reads:
                    for chunk in response.iter_bytes():
                        reply.add(chunk)
                return Fetched(reply.url, reply.status, reply.content_type, reply.body())
            except httpx.HTTPError as exc:
                raise hops.read_failed(exc) from None
            finally:
                response.close()
    finally:
        if own:
            http.close()
