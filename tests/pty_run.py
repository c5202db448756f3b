"""Run the childshield command with standard error (or output) on a pseudo-terminal, as a person sees it."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
from collections.abc import Callable, Mapping
from dataclasses import dataclass


@dataclass
class Seen:
    returncode: int
    terminal: str
    """What the terminal received (escape sequences included)."""
    piped: str
    """The other stream, piped as to a file."""


def run_on_terminal(
    *args: str,
    env: Mapping[str, str],
    stream: str = "stderr",
    columns: int = 100,
    watch: Callable[[str], None] | None = None,
    timeout: float = 180,
) -> Seen:
    """``childshield ARGS`` with ``stream`` ("stderr" or "stdout") on a terminal ``columns`` wide and the
    other stream piped; ``watch`` is called with what the terminal has received so far, as it comes."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    streams = (
        {"stderr": slave, "stdout": subprocess.PIPE}
        if stream == "stderr"
        else {"stdout": slave, "stderr": subprocess.PIPE}
    )
    environment = {k: v for k, v in env.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "childshield.cli", *args],
        env={**environment, "TERM": "xterm-256color"},
        stdin=subprocess.DEVNULL,
        **streams,  # type: ignore[arg-type]
    )
    os.close(slave)
    received = b""
    other = proc.stdout if stream == "stderr" else proc.stderr
    assert other is not None
    os.set_blocking(other.fileno(), False)
    piped = b""
    try:
        while True:
            ready, _, _ = select.select([master, other], [], [], 1.0)
            if other in ready:
                piped += other.read() or b""
            if master in ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the child closed the terminal
                    chunk = b""
                if not chunk:
                    break
                received += chunk
                if watch is not None:
                    watch(received.decode(errors="replace"))
            elif proc.poll() is not None and not ready:
                break
        proc.wait(timeout=timeout)
        piped += other.read() or b""
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return Seen(proc.returncode, received.decode(errors="replace"), piped.decode(errors="replace"))
