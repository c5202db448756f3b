"""Watching a live stream: frames sampled continuously, hashed and matched, an alert for each match.

A ``Watch`` reads one source with PyAV (FFmpeg): RTMP, HLS (m3u8), RTSP, SRT, MPEG-TS over TCP/UDP, a
local file (played in real time with ``realtime``, else as fast as it decodes) or a capture device
(``format="v4l2"``).  It takes a frame once a second (``Sampling.rate``) and at every scene change, so a
known picture that appears is usually caught at its first frame; each taken frame is hashed (PDQ, plus
the query-side variants the banks want: mirrored, letterboxed) and matched through the same index as
uploads.  A match raises an ``Alert`` (stream id, the stream's time, the matches), at most once per item
per ``realert_after`` seconds.

A stream that drops is reconnected (backoff up to ``max_backoff``); one that sends nothing for
``read_timeout`` seconds is reported ``stalled`` and reconnected: FFmpeg's reads are interrupted by the
timeout, so a worker never hangs.  ``stop()`` ends a watch within about a second.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from childshield.errors import Unavailable
from childshield.matching.allowlist import allow_listed
from childshield.matching.matcher import Match, MatchResult
from childshield.media.video import (
    SNIFF_BYTES,
    FramePicker,
    PacketFrames,
    Sampling,
    StreamClock,
    VideoInfo,
    container_format,
    demuxer_options,
    frame_picture,
)
from childshield.net.guard import AddressPolicy, Resolver
from childshield.signals.pdq_picture import hash_picture
from childshield.signals.pdq_variants import query_variants
from childshield.stream.hls import HlsError, HlsReader, is_hls
from childshield.stream.relay import Relay, RtspReplies
from childshield.stream.sources import SourceRefused, check_source

log = logging.getLogger("childshield.stream")

Queries = Sequence[tuple[str, str, int | None]]
MatchMany = Callable[[Queries, Sequence[str]], list[MatchResult]]
"""(queries, their variant names) -> results: the matcher, however the caller shares it."""


@dataclass(frozen=True)
class WatchConfig:
    sampling: Sampling = field(default_factory=Sampling)
    variants: bool = True
    """Also match each frame's query-side variants (mirrored, borders trimmed)."""
    realtime: bool = False
    """Pace a file by its timestamps, as if it were broadcast (streams pace themselves)."""
    open_timeout: float = 15.0
    read_timeout: float = 10.0
    """No data for this long: the stream is stalled, and reconnected."""
    max_backoff: float = 30.0
    max_reconnects: int | None = None
    """None: forever (live sources come back); a number: give up after that many in a row."""
    realert_after: float = 60.0
    format: str | None = None
    """FFmpeg's input format when it cannot be told from the source (``v4l2``, ``mpegts``)."""
    options: dict[str, str] = field(default_factory=dict)
    """FFmpeg options for the input (e.g. ``{"protocol_whitelist": "tcp,http,hls"}``)."""
    guard: AddressPolicy | None = None
    """The address guard for network sources, checked again at every connection: HLS is read through
    ``stream.hls`` (every request guarded), not FFmpeg's reader; other schemes are opened at the address
    checked (RTSP and TLS through ``stream.relay``: no redirect followed)."""
    resolve: Resolver | None = None
    """How the guard resolves names (``socket.getaddrinfo`` when None)."""


@dataclass(frozen=True)
class Alert:
    stream_id: str
    source: str
    stream_time: float
    """Seconds from the start of the stream (of this connection) of the frame that matched."""
    wall_time: float
    """``time.time()`` when the match was found."""
    matches: tuple[Match, ...]
    pdq: str
    quality: int


@dataclass
class WatchStatus:
    stream_id: str
    source: str
    state: str = "starting"
    """starting, connecting, running, stalled, reconnecting, ended, failed, stopped."""
    connects: int = 0
    frames_decoded: int = 0
    frames_hashed: int = 0
    alerts: int = 0
    last_frame_at: float | None = None
    """``time.time()`` of the last frame decoded."""
    error: str = ""
    started_at: float = field(default_factory=time.time)
    cpu_seconds: float = 0.0
    """CPU time of the watch's thread."""

    def as_dict(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class Stalled(Unavailable):
    """A source that sends no video frame for ``read_timeout`` seconds."""


class Watch:
    def __init__(
        self,
        stream_id: str,
        source: str,
        match: MatchMany,
        on_alert: Callable[[Alert], None],
        config: WatchConfig | None = None,
        *,
        on_status: Callable[[WatchStatus], None] | None = None,
    ) -> None:
        self.stream_id, self.source = stream_id, source
        self.match, self.on_alert = match, on_alert
        self.config = config or WatchConfig()
        self.on_status = on_status
        self.status = WatchStatus(stream_id, source)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._alerted: dict[tuple[str, int], float] = {}
        self._cpu_start = 0.0

    # -- running ------------------------------------------------------------------------------
    def start(self) -> Watch:
        self._thread = threading.Thread(target=self.run, name=f"watch-{self.stream_id}", daemon=True)
        self._thread.start()
        return self

    def stop(self, wait: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(wait)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _set(self, state: str, error: str = "") -> None:
        self.status.state, self.status.error = state, error[:500]
        if self.on_status is not None:
            try:
                self.on_status(self.status)
            except Exception:  # a status listener's trouble never stops the watch
                log.exception("status callback failed")

    def run(self) -> None:
        """Watch until stopped, the source ends (a file), or reconnects run out.  Nothing ends the
        thread without a final state: an unexpected error is recorded and the source tried again."""
        import av

        backoff, failures = 1.0, 0
        self._cpu_start = time.thread_time()
        try:
            while not self._stop.is_set():
                self._set("connecting" if self.status.connects == 0 else "reconnecting", self.status.error)
                frames = 0
                try:
                    ended, frames = self._read_once()
                except Stalled as exc:
                    self._set("stalled", str(exc))
                    ended = False
                except (HlsError, SourceRefused) as exc:  # refused by the guard, or not a source we read
                    self._set("reconnecting", str(exc))
                    ended = False
                except av.error.FFmpegError as exc:
                    stalled = isinstance(exc, (av.error.ExitError, TimeoutError)) or "timed out" in str(exc)
                    self._set("stalled" if stalled else "reconnecting", f"{type(exc).__name__}: {exc}")
                    ended = False
                except Exception as exc:  # the decoder, the matcher, the database: recorded, tried again
                    log.exception("watch %s failed", self.stream_id)
                    self._set("reconnecting", f"{type(exc).__name__}: {exc}")
                    ended = False
                if self._stop.is_set():
                    break
                if ended and not self._is_live():
                    self._set("ended")
                    return
                failures = 0 if frames else failures + 1  # a connection that brought frames was good
                limit = self.config.max_reconnects
                if limit is not None and failures > limit:
                    self._set("failed", self.status.error or "the stream did not come back")
                    return
                self._stop.wait(backoff)
                backoff = min(self.config.max_backoff, backoff * 2) if failures else 1.0
            self._set("stopped")
        except BaseException as exc:  # pragma: no cover - never leave a watch looking alive
            self._set("failed", f"{type(exc).__name__}: {exc}")
            raise
        finally:
            self.status.cpu_seconds = time.thread_time() - self._cpu_start

    def _is_live(self) -> bool:
        """Network sources are live: their end is a drop, to be reconnected."""
        return "://" in self.source and not self.source.startswith("file:")

    def _open(self, relays: list[Relay]):  # type: ignore[no-untyped-def]  # noqa: ANN202
        """The container of one connection; a relay it needs is added to ``relays`` (closed after)."""
        import av

        cfg = self.config
        source, options, fmt = self.source, dict(cfg.options), cfg.format
        if cfg.guard is not None and is_hls(source):
            reader = HlsReader(source, cfg.guard, stop=self._stop, timeout=cfg.read_timeout)
            fmt = fmt or container_format(reader.peek(SNIFF_BYTES))
            if fmt is None:  # never FFmpeg's probing on a remote server's bytes (SDP, playlists...)
                raise HlsError("the HLS segments are not in a container childshield reads (MPEG-TS, MP4)")
            return av.open(reader, format=fmt, options=demuxer_options(fmt), metadata_errors="ignore")
        if cfg.guard is not None and "://" in source:
            checked = check_source(source, cfg.guard, cfg.resolve)  # at every connection: names move
            source, options = checked.url, {**options, **checked.options}
            if checked.relayed:
                tls = checked.scheme in ("rtsps", "rtmps")
                relay = Relay(
                    (str(checked.ip), checked.port),
                    replies=RtspReplies if checked.scheme.startswith("rtsp") else None,
                    tls_host=checked.host if tls else None,
                    timeout=cfg.open_timeout,
                )
                relays.append(relay.start())
                source, options = checked.relay_url(relay.port), {**options, **checked.relay_options()}
        elif "://" not in source and fmt is None and os.path.isfile(source):
            with open(source, "rb") as file:  # our sniffing names the demuxer where it can
                fmt = container_format(file.read(SNIFF_BYTES))
            options = {"protocol_whitelist": "file", **options}
            if fmt is not None:
                options = {**demuxer_options(fmt), **options}
        return av.open(
            source,
            format=fmt,
            options=options,
            timeout=(cfg.open_timeout, cfg.read_timeout),
            metadata_errors="ignore",
        )

    def _read_once(self) -> tuple[bool, int]:
        """One connection: (whether the source ended normally, frames decoded)."""
        import av

        relays: list[Relay] = []
        try:
            return self._read(relays)
        except av.error.FFmpegError:
            cut = next((r.cut for r in relays if r.cut), "")
            if cut:  # the relay's reason, not FFmpeg's "end of file"
                raise SourceRefused(cut) from None
            raise
        finally:
            for relay in relays:
                relay.close()

    def _read(self, relays: list[Relay]) -> tuple[bool, int]:
        import av

        cfg = self.config
        container = self._open(relays)
        frames = 0
        with container:
            if not container.streams.video:
                raise av.error.InvalidDataError(0, "the source has no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            self.status.connects += 1
            self._set("running")
            picker = FramePicker(cfg.sampling)
            rate = float(stream.average_rate) if stream.average_rate else None
            clock = StreamClock(rate)
            started = last_frame = time.monotonic()

            def stop() -> bool:  # asked between packets of any stream
                if self._stop.is_set():
                    return True
                if time.monotonic() - last_frame > cfg.read_timeout:
                    raise Stalled(f"no video frame for {cfg.read_timeout:g} s")
                return False

            for frame in PacketFrames(container, stream, VideoInfo())(stop):
                last_frame = time.monotonic()
                frames += 1
                self.status.frames_decoded += 1
                self.status.last_frame_at = time.time()
                t = clock(frame.time)
                if cfg.realtime:  # a file played as if broadcast: wait for the frame's moment
                    ahead = t - (time.monotonic() - started)
                    if ahead > 0 and self._stop.wait(ahead):
                        return False, frames
                    last_frame = time.monotonic()
                if picker.pick(frame, t) is None:
                    continue
                self.status.cpu_seconds = time.thread_time() - self._cpu_start
                self._hash_and_match(frame_picture(frame, cfg.sampling.max_side, 0), t)
            return not self._stop.is_set(), frames

    def _hash_and_match(self, picture, t: float) -> None:  # type: ignore[no-untyped-def]  # noqa: ANN001
        pdq, quality, _ = hash_picture(picture)
        if pdq is None:
            return
        self.status.frames_hashed += 1
        queries: list[tuple[str, str, int | None]] = [("pdq", pdq, quality)]
        names = [""]
        if self.config.variants:
            for name, (value, _) in query_variants(picture).items():
                queries.append(("pdq", value, quality))
                names.append(name)
        found: dict[tuple[str, int], Match] = {}
        results = self.match(queries, names)
        for result in results:
            for m in (*result.matches, *result.suppressed):
                key = (m.bank, m.item_id)
                if key not in found or m.distance < found[key].distance:
                    found[key] = m
        allowed = [m for r in results for m in r.allowed_by]
        if allowed:  # an allow-listed picture: cleared as far as its entries outweigh (matching.allowlist)
            found, _ = allow_listed(found, allowed)
        if not found:
            return
        now = time.time()
        fresh = tuple(
            m for key, m in found.items() if now - self._alerted.get(key, -1e18) >= self.config.realert_after
        )
        if not fresh:
            return
        for m in fresh:
            self._alerted[(m.bank, m.item_id)] = now
        self.status.alerts += 1
        alert = Alert(self.stream_id, self.source, t, now, fresh, pdq, quality)
        try:
            self.on_alert(alert)
        except Exception:  # the alert path's trouble is logged; watching goes on
            log.exception("alert callback failed for stream %s", self.stream_id)
