"""Per-caller rate limits (token buckets), one set per worker process.

A caller (an API key, or an address for sign-ins) may spend ``rate`` units per second on average with
bursts of ``burst``; over that it gets HTTP 429 with ``Retry-After``.  What a unit is, is the caller's
choice: sign-ins count attempts; scans and lookups count work (``web.deps``: a request costs 1, a
lookup 1 more per signal after the first, a scan 1 more per started MiB uploaded and per started
megapixel decoded), so one large request costs what many small ones would.  Work that is only known once
done (the pixels a scan decoded) is charged afterwards with ``debit``: the bucket goes into debt and the
caller's next requests wait until it is paid back.

Limits are per worker: with N workers the whole service allows up to N times as much, which is what a
limit against a runaway client or a password guesser needs (use the reverse proxy for a global limit).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    def __init__(self, rate: float, burst: float, *, max_callers: int = 100_000) -> None:
        self.rate = rate
        self.burst = max(1.0, burst)
        self.max_callers = max_callers
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def _bucket(self, caller: str, now: float) -> _Bucket:
        bucket = self._buckets.get(caller)
        if bucket is None:
            if len(self._buckets) >= self.max_callers:  # forget the idlest half: memory stays bounded
                keep = sorted(self._buckets.items(), key=lambda kv: kv[1].at)[len(self._buckets) // 2 :]
                self._buckets = dict(keep)
            bucket = self._buckets[caller] = _Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        return bucket

    def check(self, caller: str, cost: float = 1.0) -> float:
        """0 when allowed (and counted); else the seconds until it would be.

        A cost over ``burst`` counts as ``burst``: a request bigger than the burst is allowed on a full
        bucket (and empties it) rather than never."""
        if self.rate <= 0 or cost <= 0:
            return 0.0
        cost = min(cost, self.burst)
        now = time.monotonic()
        with self._lock:
            bucket = self._bucket(caller, now)
            if bucket.tokens >= cost:
                bucket.tokens -= cost
                return 0.0
            return (cost - bucket.tokens) / self.rate

    def debit(self, caller: str, cost: float) -> None:
        """Charge work already done, allowed or not: the bucket may go into debt (down to ``-burst``)."""
        if self.rate <= 0 or cost <= 0:
            return
        now = time.monotonic()
        with self._lock:
            bucket = self._bucket(caller, now)
            bucket.tokens = max(-self.burst, bucket.tokens - cost)


def retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
