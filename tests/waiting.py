"""Waiting in tests for what the test waits for, never for a time that load could outlast.

A loaded machine makes everything slower, never different: a test that waits for an event (a line
printed, a row written, a request served) passes there as it does on an idle one.  The only clock
left is the hang guard, minutes long, so that a real hang still fails the test (saying what it waited
for) instead of blocking the run forever.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

HANG_GUARD = 600.0
"""Seconds after which a wait is taken for a hang: no load makes a test's event that late."""


class Hung(AssertionError):
    """What a test waited for did not happen within the hang guard."""


def wait_until(
    condition: Callable[[], T],
    what: str,
    *,
    unless: Callable[[], object] | None = None,
    every: float | None = None,
    hang_guard: float = HANG_GUARD,
) -> T:
    """Poll ``condition`` until it is true and return its value.  ``unless`` ends the wait early when
    it is true (e.g. the server died): then ``condition`` is asked once more and the wait fails unless
    it holds.  The sleep between polls starts at 1 ms and grows to 50 ms, so short waits stay short;
    ``every`` fixes it instead (a condition that also watches for something fleeting)."""
    start = time.monotonic()
    pause = every if every is not None else 0.001
    while True:
        value = condition()
        if value:
            return value
        if unless is not None and unless():
            value = condition()
            if value:
                return value
            raise AssertionError(f"gave up waiting for {what}: it can no longer happen")
        if time.monotonic() - start > hang_guard:
            raise Hung(f"{what}: still not after {hang_guard:g} s (a hang)")
        time.sleep(pause)
        if every is None:
            pause = min(pause * 2, 0.05)


def wait_event(event: threading.Event, what: str, *, hang_guard: float = HANG_GUARD) -> None:
    """Wait for ``event`` to be set."""
    if not event.wait(hang_guard):
        raise Hung(f"{what}: still not after {hang_guard:g} s (a hang)")


def join(thread: threading.Thread, what: str, *, hang_guard: float = HANG_GUARD) -> None:
    """Wait for ``thread`` to end."""
    thread.join(hang_guard)
    if thread.is_alive():
        raise Hung(f"{what}: still running after {hang_guard:g} s (a hang)")


def exited(process: subprocess.Popen[Any], what: str, *, hang_guard: float = HANG_GUARD) -> int:
    """Wait for ``process`` to exit; its exit status."""
    try:
        return process.wait(hang_guard)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise Hung(f"{what}: still running after {hang_guard:g} s (a hang): killed") from None
