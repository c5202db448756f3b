"""Shared by the benchmarks: a database kept between runs, and random PDQ hashes (stand-ins for a large
shared hash list; they match nothing)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from childshield.store.db import Database, open_database


def kept_database(folder: Path, name: str, ready: str) -> tuple[str, Database | None]:
    """The URL of ``folder/name.db`` and, unless ``folder/ready`` says it was built already, the
    database opened fresh (old files removed) for building."""
    url = f"sqlite:///{folder / f'{name}.db'}"
    if (folder / ready).is_file():
        return url, None
    for stale in folder.glob(f"{name}.db*"):
        stale.unlink()
    return url, open_database(url)


def random_pdq(rng: np.random.Generator, count: int) -> list[str]:
    words = rng.integers(0, 2**63, size=(count, 4), dtype=np.uint64)
    return ["".join(f"{int(w):016x}" for w in row) for row in words]
