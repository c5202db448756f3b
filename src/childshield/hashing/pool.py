"""A supervised process pool for work on untrusted files.

Decoders are native code fed hostile bytes: one may crash, spin forever or eat
all memory.  ``concurrent.futures`` loses the whole pool when a worker dies
and cannot say which item killed it.  Here every worker has its own pipe and
works through small batches in order, sending each result as soon as it is
done, so the parent always knows which item a worker is on.  A worker that
dies or overruns the per-item time limit is killed and replaced; its current
item is reported as failed and the rest of its batch goes back in the queue.
Results come back in input order.
"""

from __future__ import annotations

import collections
import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import time
import types
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_STOP = None


def _address_space() -> int:
    """This process's address space now, in bytes (0 where it cannot be read)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _limit_memory(limit_bytes: int | None, forked: bool = False) -> None:
    """Cap the worker's address space at ``limit_bytes``.  A forked worker starts with its parent's
    (the libraries loaded, a scan's index), which counts too; where that is already over the cap, the
    cap is that much plus ``limit_bytes`` (else the worker could not allocate at all)."""
    if not limit_bytes:
        return
    try:
        import resource

        start = _address_space() if forked else 0
        cap = limit_bytes if start < limit_bytes else start + limit_bytes
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    except (ImportError, ValueError, OSError):  # not on this platform: run without the cap
        pass


def _worker_main(
    conn: Connection,
    fn: Callable[[Any], Any],
    initializer: Callable[..., None] | None,
    initargs: tuple[Any, ...],
    memory_limit: int | None,
    forked: bool = False,
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    _limit_memory(memory_limit, forked)
    if initializer is not None:
        initializer(*initargs)
    while True:
        try:
            batch = conn.recv()
        except EOFError:
            return
        if batch is _STOP:
            return
        for seq, item in batch:
            try:
                reply: tuple[int, bool, Any] = (seq, True, fn(item))
            except MemoryError:
                reply = (seq, False, "out of memory (over the worker's memory limit)")
            except Exception as exc:
                reply = (seq, False, f"{type(exc).__name__}: {exc}"[:300])
            conn.send(reply)


@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection
    pending: collections.deque[int] = field(default_factory=collections.deque)
    started: float = 0.0  # when its current item began


def _death_message(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        signum = -exitcode
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = f"signal {signum}"
        if signum == signal.SIGKILL:
            return f"worker was killed ({name}; out of memory?)"
        return f"worker crashed ({name})"
    return f"worker exited unexpectedly (exit code {exitcode})"


def _context() -> multiprocessing.context.BaseContext:
    if sys.platform.startswith("linux"):
        # forkserver: safe with threads in the parent (progress bars) and cheap to start.
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["childshield.hashing.batch"])
        return ctx
    return multiprocessing.get_context("spawn")


@contextlib.contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Start a worker without the program's main module: multiprocessing would import it again in every
    new worker (and in the forkserver), which for the ``childshield`` command is the whole CLI, 1-2 s a
    worker, most of the time of a command that hashes one video.  Workers run only functions of
    importable modules (``fn`` and ``initializer`` are pickled by name), never ``__main__``'s."""
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main


class SupervisedPool(Generic[T, R]):
    """Run ``fn`` over items in worker processes; yield ``(item, ok, result_or_error)`` in input order."""

    def __init__(
        self,
        fn: Callable[[T], R],
        *,
        workers: int | None = None,
        timeout: float | None = 60.0,
        memory_limit: int | None = None,
        batch_size: int = 8,
        initializer: Callable[..., None] | None = None,
        initargs: tuple[Any, ...] = (),
        fork: bool = False,
    ) -> None:
        """``fork``: start workers by forking this process while it runs no other thread (else as
        usual, from the forkserver): a worker then starts at once with every module already loaded,
        which for a command hashing one video is most of its time.  For a short-lived parent (a
        command): a forked worker's address space, which its memory limit counts, starts as big as
        the parent's."""
        if workers is not None and workers < 1:
            raise ValueError("workers must be at least 1")
        self.fn = fn
        self.workers = workers or os.cpu_count() or 1
        self.timeout = timeout
        self.memory_limit = memory_limit
        self.batch_size = max(1, batch_size)
        self.initializer = initializer
        self.initargs = initargs
        self.fork = fork
        self._ctx = _context()
        self._pool: list[_Worker] = []
        self.restarts = 0

    def _spawn(self) -> _Worker:
        # Asked at each start: a thread (a progress display) may have started since the last.
        forked = self.fork and sys.platform.startswith("linux") and threading.active_count() == 1
        ctx = multiprocessing.get_context("fork") if forked else self._ctx
        parent, child = ctx.Pipe(duplex=True)
        process = ctx.Process(  # type: ignore[attr-defined]
            target=_worker_main,
            args=(child, self.fn, self.initializer, self.initargs, self.memory_limit, forked),
            daemon=True,
        )
        with _main_module_hidden():
            process.start()
        child.close()
        return _Worker(process, parent)

    def _retire(self, worker: _Worker, kill: bool) -> None:
        if kill and worker.process.is_alive():
            worker.process.kill()
        worker.process.join(timeout=5)
        worker.conn.close()
        self._pool.remove(worker)

    def _replace(self, worker: _Worker) -> None:
        self._retire(worker, kill=True)
        self._pool.append(self._spawn())
        self.restarts += 1

    @staticmethod
    def _drain(worker: _Worker) -> list[tuple[int, bool, Any]]:
        replies = []
        try:
            while worker.conn.poll():
                replies.append(worker.conn.recv())
        except (EOFError, OSError):
            pass
        return replies

    def map(self, items: Iterable[T]) -> Iterator[tuple[T, bool, R | str]]:
        source = iter(items)
        exhausted = False
        queue: collections.deque[tuple[int, T]] = collections.deque()  # retried items go first
        inputs: dict[int, T] = {}
        done: dict[int, tuple[bool, R | str]] = {}
        next_seq = 0  # next sequence number to hand out
        next_out = 0  # next sequence number to yield
        window = self.workers * self.batch_size * 4  # bound on results held for ordering

        self._pool = [self._spawn() for _ in range(self.workers)]
        try:
            while True:
                # Dispatch to idle workers (replacing any that died between items, blaming nothing).
                for worker in list(self._pool):
                    if worker.pending:
                        continue
                    if not worker.process.is_alive():
                        self._replace(worker)
                        continue
                    batch: list[tuple[int, T]] = []
                    while len(batch) < self.batch_size:
                        if queue:
                            batch.append(queue.popleft())
                            continue
                        if exhausted or next_seq - next_out >= window:
                            break
                        try:
                            item = next(source)
                        except StopIteration:
                            exhausted = True
                            break
                        inputs[next_seq] = item
                        batch.append((next_seq, item))
                        next_seq += 1
                    if batch:
                        try:
                            worker.conn.send(batch)
                        except OSError:  # it died just now: the batch goes back, untouched
                            queue.extendleft(reversed(batch))
                            self._replace(worker)
                            continue
                        worker.pending.extend(seq for seq, _ in batch)
                        worker.started = time.monotonic()

                # Yield what is ready, in order.
                while next_out in done:
                    ok, value = done.pop(next_out)
                    yield inputs.pop(next_out), ok, value
                    next_out += 1

                busy = [w for w in self._pool if w.pending]
                if not busy:
                    if exhausted and not queue:
                        return
                    continue

                wait_for = None
                if self.timeout is not None:
                    now = time.monotonic()
                    wait_for = max(0.0, min(w.started + self.timeout - now for w in busy))
                handles: list[Any] = [w.conn for w in busy] + [w.process.sentinel for w in busy]
                wait(handles, timeout=wait_for)

                for worker in list(busy):
                    hung_up = False
                    while worker.pending and worker.conn.poll():
                        try:
                            seq, ok, value = worker.conn.recv()
                        except (EOFError, OSError):  # the worker's end is closed: it died
                            hung_up = True
                            break
                        worker.pending.remove(seq)
                        done[seq] = (ok, value)
                        worker.started = time.monotonic()
                    if not worker.pending:
                        continue
                    died = hung_up or not worker.process.is_alive()
                    if died:
                        worker.process.join(timeout=5)  # so its exit code (signal) is known
                        # Results it sent just before dying are still in the pipe: take them first,
                        # so the crash is blamed on the item it was really working on.
                        for seq, ok, value in self._drain(worker):
                            worker.pending.remove(seq)
                            done[seq] = (ok, value)
                        if not worker.pending:
                            self._replace(worker)
                            continue
                    overran = self.timeout is not None and time.monotonic() - worker.started > self.timeout
                    if died or overran:
                        current = worker.pending.popleft()
                        reason = (
                            f"timed out after {self.timeout:g} s"
                            if overran and not died
                            else _death_message(worker.process.exitcode)
                        )
                        done[current] = (False, reason)
                        for seq in reversed(worker.pending):
                            queue.appendleft((seq, inputs[seq]))
                        worker.pending.clear()
                        self._replace(worker)
        finally:
            self.close()

    def close(self) -> None:
        for worker in list(self._pool):
            with contextlib.suppress(OSError, ValueError):
                worker.conn.send(_STOP)
        for worker in list(self._pool):
            worker.process.join(timeout=2)
            self._retire(worker, kill=True)
