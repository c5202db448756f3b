"""One matcher per worker process, kept current with the banks, shared by the request threads.

HMA's matcher reloads its index on a fixed 65 s schedule and grows memory on every reload; here a
worker asks the store for its revision at most once per ``refresh_seconds`` (one indexed read) and
catches up in place only when something changed.  Searches run concurrently (the index is read-only to
them); a catch-up waits for the searches in flight and holds new ones back for its few milliseconds.

Everything the worker scans (API uploads, URL scans, the crawler's media) is hashed here, with the
worker's ``HashOptions``: its decode budget bounds the memory of all their decodes together.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

from childshield.matching.matcher import Matcher
from childshield.matching.scan import ScanResult
from childshield.store.db import Database

if TYPE_CHECKING:
    from childshield.hashing.service import HashOptions

T = TypeVar("T")


class _ReadWriteLock:
    """Many readers or one writer; a waiting writer holds new readers back (no starvation)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False
        self._waiting = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writing or self._waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._waiting += 1
            while self._writing or self._readers:
                self._cond.wait()
            self._waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


class MatcherHolder:
    def __init__(
        self, db: Database, refresh_seconds: float = 1.0, *, hashing: HashOptions | None = None
    ) -> None:
        from childshield.hashing.service import HashOptions

        self.db = db
        self.refresh_seconds = refresh_seconds
        self.hashing = hashing or HashOptions()
        """The base of every scan's options (the decode budget, video limits); the matcher adds the rest."""
        self._lock = _ReadWriteLock()
        self._refreshing = threading.Lock()
        self._matcher: Matcher | None = None
        self._checked = 0.0

    def _current(self) -> None:
        """Load, or catch up when due (one thread does it; the others go on with the matcher as is)."""
        if self._matcher is not None and time.monotonic() - self._checked < self.refresh_seconds:
            return
        if not self._refreshing.acquire(blocking=self._matcher is None):
            return
        try:
            with self._lock.write():
                if self._matcher is None:
                    self._matcher = Matcher.load(self.db)
                else:
                    self._matcher.refresh()
                self._checked = time.monotonic()
        finally:
            self._refreshing.release()

    def run(self, work: Callable[[Matcher], T]) -> T:
        """``work(matcher)`` with a current matcher that no catch-up changes while it runs."""
        self._current()
        with self._lock.read():
            assert self._matcher is not None
            return work(self._matcher)

    @property
    def loaded(self) -> bool:
        return self._matcher is not None

    def scan(self, data: bytes, *, wait: float | None = None) -> ScanResult:
        """Hash ``data`` outside the lock (a long video must not hold up the other threads), then match
        it with a current matcher.  ``wait``: seconds to wait for decode memory before ``DecodeBusy``
        (None: the options' own, by default as long as it takes)."""
        return self.scan_then(data, lambda m, result: result, wait=wait)

    def scan_then(
        self, data: bytes, then: Callable[[Matcher, ScanResult], T], *, wait: float | None = None
    ) -> T:
        """``scan``, then ``then(matcher, result)`` with the same matcher (its policy decides)."""
        from childshield.hashing.service import hash_bytes
        from childshield.matching.scan import scan_hashed

        base = self.hashing if wait is None else dataclasses.replace(self.hashing, budget_wait=wait)
        # Every frame of an animation (GIF, WebP, APNG: up to 1000) is matched, not only the first.
        options = self.run(lambda m: dataclasses.replace(base, variants=m.wants_query_variants, frames=True))
        hashed = hash_bytes(data, options)
        return self.run(lambda m: then(m, scan_hashed(m, hashed, data, options)))
