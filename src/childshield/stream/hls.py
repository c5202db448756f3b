"""HLS read by childshield itself, every request through the address guard, handed to FFmpeg as one
byte stream.  Used for HLS watches started over HTTP: FFmpeg's own HLS reader would fetch whatever hosts
a playlist names (an internal address, a metadata service), where this one fetches each playlist and
segment with the crawler's guarded ``fetch`` (every hop resolved and checked, redirects too).

Supported: a master playlist (its first variant is taken), media playlists live or finished, MPEG-TS
segments and fragmented MP4 (``#EXT-X-MAP``: the init section is sent once, before the first
fragment).  Encrypted segments (``#EXT-X-KEY`` other than ``NONE``) are refused with a clear error.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urljoin

from childshield.errors import Unavailable
from childshield.net.fetch import Fetched, fetch
from childshield.net.guard import AddressPolicy
from childshield.net.hops import FetchError

MAX_PLAYLIST = 1 << 20
MAX_SEGMENT = 64 << 20


class HlsError(Unavailable, OSError):
    """A playlist or segment that cannot be had: the message says which and why.

    An ``OSError`` too: the watch retries it as it does a lost connection."""


@dataclass
class Playlist:
    segments: list[tuple[int, str]] = field(default_factory=list)
    """(media sequence number, absolute URL)."""
    target: float = 6.0
    ended: bool = False
    init: str | None = None
    variant: str | None = None
    """For a master playlist: the first variant's URL."""


def parse(text: str, base: str) -> Playlist:
    """A playlist's segments (absolute URLs) and what matters of its tags; raises HlsError."""
    lines = [line.strip() for line in text.splitlines()]
    if not lines or lines[0] != "#EXTM3U":
        raise HlsError("not an HLS playlist (no #EXTM3U)")
    out = Playlist()
    sequence = 0
    expect_variant = False
    for line in lines[1:]:
        if not line:
            continue
        if line.startswith("#EXT-X-STREAM-INF"):
            expect_variant = True
        elif line.startswith("#EXT-X-TARGETDURATION:"):
            try:
                out.target = max(0.5, min(60.0, float(line.split(":", 1)[1])))
            except ValueError:
                raise HlsError("a malformed #EXT-X-TARGETDURATION") from None
        elif line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            if out.segments:  # RFC 8216: before the first segment; later, it would renumber those read
                raise HlsError("#EXT-X-MEDIA-SEQUENCE after a segment")
            try:
                sequence = int(line.split(":", 1)[1])
            except ValueError:
                raise HlsError("a malformed #EXT-X-MEDIA-SEQUENCE") from None
        elif line.startswith("#EXT-X-ENDLIST"):
            out.ended = True
        elif line.startswith("#EXT-X-KEY") and "METHOD=NONE" not in line:
            raise HlsError("encrypted HLS segments are not supported")
        elif line.startswith("#EXT-X-MAP"):
            uri = line.partition('URI="')[2].partition('"')[0]
            if not uri:
                raise HlsError("#EXT-X-MAP without a URI")
            out.init = urljoin(base, uri)
        elif not line.startswith("#"):
            if expect_variant:
                out.variant = out.variant or urljoin(base, line)
                expect_variant = False
            else:
                out.segments.append((sequence, urljoin(base, line)))
                sequence += 1
    return out


Fetcher = Callable[[str, int], Fetched]


class HlsReader:
    """A readable byte stream of an HLS stream's segments, in order, fetched through the guard.  Live
    playlists are read again every half target duration; ``read`` returns ``b""`` at the end of a
    finished stream, or when ``stop`` is set."""

    def __init__(
        self,
        url: str,
        policy: AddressPolicy,
        *,
        stop: threading.Event | None = None,
        timeout: float = 20.0,
        fetcher: Fetcher | None = None,
    ) -> None:
        self.url, self.policy, self.timeout = url, policy, timeout
        self.stop = stop or threading.Event()
        self.fetcher = fetcher or (lambda u, limit: fetch(u, policy, max_bytes=limit, timeout=timeout))
        self._buffer = bytearray()
        self._done: int | None = None  # the last media sequence number sent
        self._init_sent = False
        self._ended = False
        self.fetched: list[str] = []

    def _get(self, url: str, limit: int) -> bytes:
        try:
            got = self.fetcher(url, limit)
        except FetchError as exc:
            raise HlsError(f"{url[:200]}: {exc}") from None
        if got.status != 200:
            raise HlsError(f"{url[:200]}: HTTP {got.status}")
        self.fetched.append(url)
        return got.body

    def _playlist(self) -> Playlist:
        url = self.url
        for _ in range(3):  # a master playlist names a media playlist (not another master, usually)
            text = self._get(url, MAX_PLAYLIST).decode("utf-8", "replace")
            playlist = parse(text, url)
            if playlist.variant is None or playlist.segments:
                return playlist
            url = self.url = playlist.variant
        raise HlsError("master playlists nested too deep")

    def _more(self) -> None:
        """Fetch the next segment(s) into the buffer, waiting for a live playlist to grow."""
        while not self.stop.is_set():
            playlist = self._playlist()
            new = [(n, u) for n, u in playlist.segments if self._done is None or n > self._done]
            if self._done is None and not playlist.ended:
                new = new[-3:]  # joining a live stream: start near its live edge
            if new:
                if playlist.init and not self._init_sent:
                    self._buffer += self._get(playlist.init, MAX_SEGMENT)
                    self._init_sent = True
                for n, segment in new:
                    if self.stop.is_set():
                        return
                    self._buffer += self._get(segment, MAX_SEGMENT)
                    self._done = n
                    if len(self._buffer) > MAX_SEGMENT:
                        return
                return
            if playlist.ended:
                self._ended = True
                return
            self.stop.wait(playlist.target / 2)

    def peek(self, size: int) -> bytes:
        """The next ``size`` bytes (fewer at the end), left to be read: how the container is told."""
        while len(self._buffer) < size and not self._ended and not self.stop.is_set():
            self._more()
        return bytes(self._buffer[:size])

    def read(self, size: int = -1) -> bytes:
        while not self._buffer and not self._ended and not self.stop.is_set():
            self._more()
        if size < 0:
            size = len(self._buffer)
        out = bytes(self._buffer[:size])
        del self._buffer[:size]
        return out

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self.stop.set()


def is_hls(url: str) -> bool:
    path = url.split("?", 1)[0].lower()
    return url.lower().startswith(("http://", "https://")) and path.endswith((".m3u8", ".m3u"))
