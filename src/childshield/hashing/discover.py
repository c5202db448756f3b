"""Find the files to hash under the paths a user gives."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass

from childshield.media.formats import IMAGE_EXTENSIONS


@dataclass(frozen=True, slots=True)
class Candidate:
    """A file to hash.  ``explicit``: named by the user, so hashed whatever it holds;
    otherwise found in a folder and hashed only if it looks like an image."""

    path: str
    explicit: bool
    error: str | None = None  # the path could not even be looked at


def _reason(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "symbolic link loop"
    if exc.errno == errno.ENOENT:
        return "no such file or directory"
    reason = exc.strerror or type(exc).__name__
    return reason[:1].lower() + reason[1:]


def discover(paths: list[str], *, follow_links: bool = True) -> Iterator[Candidate]:
    """Files under ``paths`` in a stable (sorted) order, each folder visited once.

    Symbolic links to folders are followed unless ``follow_links`` is False; a
    folder reached twice (a link loop, or two links to one place) is walked once.
    """
    seen_dirs: set[tuple[int, int]] = set()
    for path in paths:
        try:
            info = os.stat(path)
        except OSError as exc:
            if os.path.islink(path) and exc.errno == errno.ENOENT:
                yield Candidate(path, True, "broken symbolic link")
            else:
                yield Candidate(path, True, _reason(exc))
            continue
        if stat.S_ISDIR(info.st_mode):
            yield from _walk(path, seen_dirs, follow_links)
        else:
            yield Candidate(path, True)


def _walk(root: str, seen: set[tuple[int, int]], follow_links: bool) -> Iterator[Candidate]:
    try:
        info = os.stat(root)
    except OSError as exc:
        yield Candidate(root, False, _reason(exc))
        return
    key = (info.st_dev, info.st_ino)
    if key in seen:
        return
    seen.add(key)
    try:
        with os.scandir(root) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        yield Candidate(root, False, f"cannot list folder: {_reason(exc)}")
        return
    for entry in entries:
        try:
            is_link = entry.is_symlink()
            if entry.is_dir(follow_symlinks=follow_links):
                yield from _walk(entry.path, seen, follow_links)
                continue
            if is_link and not follow_links:
                continue
            if entry.is_file(follow_symlinks=True):
                yield Candidate(entry.path, False)
            elif is_link:
                try:
                    os.stat(entry.path)
                except OSError as exc:
                    missing = exc.errno == errno.ENOENT
                    yield Candidate(entry.path, False, "broken symbolic link" if missing else _reason(exc))
            # FIFOs, sockets and devices found in folders are not images: skipped.
        except OSError as exc:
            yield Candidate(entry.path, False, _reason(exc))


def looks_like_image_name(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS
