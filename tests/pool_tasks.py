"""Task functions for the supervised pool tests.

They live in their own module (not in a test module) so that forkserver
workers can import them by name without importing pytest and the test module.
Each item is ``(kind, value)``; the kind says how the worker misbehaves.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

HOG_BYTES = 1 << 30  # far beyond the memory limits the tests set


def task(item: tuple[str, object]) -> object:
    kind, value = item
    if kind == "segv":
        os.kill(os.getpid(), signal.SIGSEGV)  # what a decoder bug in native code does
    elif kind == "abort":
        os.abort()
    elif kind == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)  # what the kernel's OOM killer does
    elif kind == "exit":
        os._exit(int(value))  # type: ignore[call-overload]
    elif kind == "hang":
        Path(str(value)).write_text(str(os.getpid()))
        time.sleep(300)
    elif kind == "hog":
        return len(bytearray(HOG_BYTES))
    elif kind == "raise":
        raise ValueError(f"bad item {value}")
    elif kind == "pid":
        return (value, os.getpid())
    elif kind == "parent":
        return os.getppid()
    return value * 2  # type: ignore[operator]


def vm_size(_: object) -> int:
    """The worker's address-space size in bytes (what an RLIMIT_AS limit is compared with)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def die_after_returning(pid_file: str, x: int) -> int:
    """Returns, then the worker dies a moment later while idle (a delayed crash); it writes its pid to
    ``pid_file`` first, for the source to wait for its death."""
    if x == 2:
        import threading

        Path(pid_file).write_text(str(os.getpid()))
        threading.Timer(0.1, os._exit, (7,)).start()
    return x * 10


def _exited(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def slow_source(n: int, pid_file: str) -> Iterator[int]:
    """``range(n)``, pausing before 3 until the worker that returned 2 has died: the pool waits for input
    while it dies, whatever the load."""
    from waiting import wait_until

    for i in range(n):
        if i == 3:
            wait_until(lambda: Path(pid_file).exists() and _exited(int(Path(pid_file).read_text())),
                       "the worker to die after returning item 2")  # fmt: skip
        yield i
