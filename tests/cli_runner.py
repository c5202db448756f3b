"""Run the childshield command in a subprocess against a test database."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

from childshield.store.db import Database

Run = Callable[..., "subprocess.CompletedProcess[str]"]


def cli_for(db: Database, *prefix: str, timeout: float = 180) -> Run:
    """A function running ``childshield PREFIX... ARGS...`` on ``db``: ``run(*args, stdin=None)``."""
    env = {**os.environ, "CHILDSHIELD_DATABASE_URL": db.url}

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "childshield.cli", *prefix, *args]
        return subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=timeout, env=env)

    return run
