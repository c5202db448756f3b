"""Hash many files in parallel, safely, in a stable order."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from childshield.hashing.discover import Candidate, looks_like_image_name
from childshield.hashing.pool import SupervisedPool
from childshield.hashing.result import HashOutcome
from childshield.hashing.service import HashOptions, hash_bytes, read_file
from childshield.media.errors import MediaError
from childshield.media.formats import sniff
from childshield.media.video import has_video_extension, is_video

DEFAULT_TIMEOUT = 120.0
DEFAULT_MEMORY_LIMIT = 4 << 30

_options = HashOptions()


@dataclass(frozen=True, slots=True)
class Skipped:
    """A file found in a folder that is not an image (by name and by content)."""

    path: str


def _init_worker(options: HashOptions) -> None:
    global _options
    _options = options


def hash_candidate(candidate: Candidate, options: HashOptions | None = None) -> HashOutcome | Skipped:
    """Hash one candidate; never raises for a bad file (the error is in the outcome)."""
    opts = options or _options
    if candidate.error is not None:
        return HashOutcome(candidate.path, error=candidate.error)
    try:
        by_content = not candidate.explicit and not (
            looks_like_image_name(candidate.path) or has_video_extension(candidate.path)
        )
        if by_content:
            head = read_file(candidate.path, head=1024)
            if sniff(head[:32]) is None and not is_video(head):
                return Skipped(candidate.path)
        data = read_file(candidate.path, opts.max_bytes)
    except MediaError as exc:
        return HashOutcome(candidate.path, error=str(exc))
    try:
        result = hash_bytes(data, opts, path=candidate.path)
    except MediaError as exc:
        return HashOutcome(candidate.path, error=str(exc), size_bytes=len(data))
    return HashOutcome(candidate.path, result=result)


def hash_many(
    candidates: Iterable[Candidate],
    options: HashOptions,
    *,
    workers: int | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    memory_limit: int | None = DEFAULT_MEMORY_LIMIT,
    fork: bool = False,
) -> Iterator[HashOutcome | Skipped]:
    """Outcomes in input order, computed in ``workers`` supervised processes.

    A file that crashes or hangs its decoder, or exhausts the worker's memory,
    gets an error outcome; the other files are unaffected.  ``fork``: see ``SupervisedPool`` (for
    commands, whose process is short-lived and small).
    """
    pool: SupervisedPool[Candidate, HashOutcome | Skipped] = SupervisedPool(
        hash_candidate,
        workers=workers,
        timeout=timeout,
        memory_limit=memory_limit,
        initializer=_init_worker,
        initargs=(options,),
        fork=fork,
    )
    for candidate, ok, value in pool.map(candidates):
        if ok:
            assert isinstance(value, HashOutcome | Skipped)
            yield value
        else:
            yield HashOutcome(candidate.path, error=str(value))
