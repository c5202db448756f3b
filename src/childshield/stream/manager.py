"""Many watches in one process, sharing one matcher; each alert goes the way of every match: a decision
recorded with the banks' policy (``actions.decisions``), its webhook queued in the same transaction, the
stream id and the stream's time in its context.  Used by ``childshield watch`` and by ``serve``'s
``/v1/watches``."""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace

from childshield.actions.decisions import decide, record_decision, snapshot
from childshield.errors import Invalid, NotFound
from childshield.matching.holder import MatcherHolder
from childshield.matching.matcher import Matcher, MatchResult
from childshield.store.db import Database
from childshield.stream.watch import Alert, Queries, Watch, WatchConfig, WatchStatus

STREAM_ID = re.compile(r"[A-Za-z0-9._:-]{1,100}")
MAX_WATCHES = 64


class WatchError(Invalid, ValueError):
    """A watch that cannot be started or found: the message says why.  A ``ValueError`` too (the
    command line takes it as a bad parameter)."""


class WatchNotFound(NotFound, WatchError):
    """No watch of that stream id."""


class Watches:
    def __init__(
        self,
        db: Database,
        holder: MatcherHolder,
        *,
        webhook_url: str | None = None,
        config: WatchConfig | None = None,
        on_alert: Callable[[Alert, int], None] | None = None,
    ) -> None:
        self.db, self.holder, self.webhook_url = db, holder, webhook_url
        self.config = config or WatchConfig()
        self.extra = on_alert
        self._watches: dict[str, Watch] = {}
        self._lock = threading.Lock()

    def _match(self, queries: Queries, names: Sequence[str]) -> list[MatchResult]:
        return self.holder.run(lambda m: m.match_many(queries, query_variants=list(names)))

    def _alert(self, alert: Alert) -> None:
        def record(m: Matcher) -> int:
            return record_decision(
                self.db,
                content_id=uuid.uuid4().hex,
                decision=decide(alert.matches, m),
                policy=snapshot(m),
                matches=alert.matches,
                actor="watch",
                sha256=None,
                pdq=alert.pdq,
                source="watch",
                webhook_url=self.webhook_url,
                context={
                    "stream_id": alert.stream_id,
                    "stream_time": f"{alert.stream_time:.3f}",
                    "source": alert.source[:500],
                },
            )

        decision_id = self.holder.run(record)
        if self.extra is not None:
            self.extra(alert, decision_id)

    def start(
        self, source: str, stream_id: str | None = None, config: WatchConfig | None = None
    ) -> WatchStatus:
        stream_id = stream_id or uuid.uuid4().hex[:12]
        if not STREAM_ID.fullmatch(stream_id):
            raise WatchError("a stream id is 1 to 100 letters, digits, '.', '_', ':' or '-'")
        if not source or len(source) > 2000 or any(ord(c) < 32 for c in source):
            raise WatchError("the source must be a URL, a path or a device of at most 2000 characters")
        with self._lock:
            live = {k: w for k, w in self._watches.items() if w.alive}
            if stream_id in live:
                raise WatchError(f"stream {stream_id!r} is watched already")
            if len(live) >= MAX_WATCHES:
                raise WatchError(f"at most {MAX_WATCHES} streams are watched at once")
            watch = Watch(stream_id, source, self._match, self._alert, config or self.config)
            self._watches = {**live, stream_id: watch}
            watch.start()  # inside the lock: a second start with this id sees it alive
        return watch.status

    def stop(self, stream_id: str) -> WatchStatus:
        with self._lock:
            watch = self._watches.get(stream_id)
        if watch is None:
            raise WatchNotFound(f"no stream {stream_id!r}")
        watch.stop()
        return watch.status

    def statuses(self) -> list[WatchStatus]:
        with self._lock:
            return [replace(w.status) for w in self._watches.values()]

    def close(self) -> None:
        with self._lock:
            watches = list(self._watches.values())
        for w in watches:
            w.stop(wait=0)  # all asked at once, then waited for
        for w in watches:
            w.stop()
