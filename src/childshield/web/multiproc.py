"""The folder where the workers of one ``serve`` run count their metrics (prometheus-client's
multiprocess mode).

Each run gets a new, private folder (mode 0700: the figures name banks), removed when the run ends, so
counts of an earlier run (or of one that was killed and left its folder behind) never add to this
run's.  It is made inside ``$PROMETHEUS_MULTIPROC_DIR`` when an operator names one (a tmpfs, say), else
in the system's temporary folder.  Nothing here imports prometheus-client: the variable must be set
before any worker imports it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ENV_VAR = "PROMETHEUS_MULTIPROC_DIR"
PREFIX = "childshield-metrics-"


@contextmanager
def run_directory(workers: int) -> Iterator[Path | None]:
    """For a run of ``workers`` processes: a fresh folder, named in ``$PROMETHEUS_MULTIPROC_DIR`` for
    them while the run lasts, then removed.  None (metrics in memory) for one worker unless an operator
    asked for the multiprocess mode."""
    base = os.environ.get(ENV_VAR)
    if workers <= 1 and not base:
        yield None
        return
    if base:
        Path(base).mkdir(parents=True, exist_ok=True, mode=0o700)
    path = Path(tempfile.mkdtemp(prefix=PREFIX, dir=base or None))
    os.environ[ENV_VAR] = str(path)
    try:
        yield path
    finally:
        if base:
            os.environ[ENV_VAR] = base
        else:
            os.environ.pop(ENV_VAR, None)
        shutil.rmtree(path, ignore_errors=True)
