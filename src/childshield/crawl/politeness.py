"""Per-host politeness: at most ``per_host`` requests in flight to one host, ``delay`` seconds between
their starts, and a pause when the host asks for one (429/503 with ``Retry-After``) or fails."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field


@dataclass
class _Host:
    slots: asyncio.Semaphore
    next_start: float = 0.0
    backoff: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


MAX_HOSTS = 10_000


class HostGate:
    def __init__(self, per_host: int = 2, delay: float = 0.0, *, max_backoff: float = 600.0) -> None:
        self.per_host = max(1, per_host)
        self.delay = max(0.0, delay)
        self.max_backoff = max_backoff
        self._hosts: dict[str, _Host] = {}

    def _host(self, host: str) -> _Host:
        found = self._hosts.get(host)
        if found is None:
            if len(self._hosts) >= MAX_HOSTS:  # forget idle hosts whose pauses are over: memory stays bounded
                now = time.monotonic()
                self._hosts = {
                    k: h
                    for k, h in self._hosts.items()
                    if h.next_start > now or h.slots.locked() or h.lock.locked()
                }
            found = self._hosts[host] = _Host(asyncio.Semaphore(self.per_host))
        return found

    def paused_for(self, host: str) -> float:
        """Seconds until the host may be asked again (0 when it may now)."""
        found = self._hosts.get(host)
        return max(0.0, found.next_start - time.monotonic()) if found else 0.0

    @contextlib.asynccontextmanager
    async def slot(self, host: str) -> AsyncIterator[None]:
        h = self._host(host)
        async with h.slots:
            async with h.lock:  # starts are spaced by `delay`, in the order they asked
                wait = h.next_start - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                h.next_start = max(h.next_start, time.monotonic()) + self.delay
            yield

    def slow_down(self, host: str, seconds: float | None) -> float:
        """The host asked us to wait (or failed): pause it; returns the pause.  Without ``seconds`` the
        pause doubles each time (1 s, 2 s, 4 s ... up to ``max_backoff``)."""
        h = self._host(host)
        if seconds is None:
            h.backoff = min(self.max_backoff, max(1.0, h.backoff * 2))
            seconds = h.backoff
        h.next_start = max(h.next_start, time.monotonic() + seconds)
        return seconds

    def doing_fine(self, host: str) -> None:
        found = self._hosts.get(host)
        if found is not None:
            found.backoff = 0.0
