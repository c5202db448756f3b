"""Local live streams for tests and benchmarks: a video sent as MPEG-TS over TCP at its own pace (an
FFmpeg-based sender, through PyAV), and HLS served by a local HTTP server.  Loopback only."""

from __future__ import annotations

import functools
import http.server
import io
import socket
import threading
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TcpSender:
    """Sends ``video`` (any container PyAV reads) as MPEG-TS to the first client of
    ``tcp://127.0.0.1:port``, each packet at its time (as a live encoder would), ``times`` times over
    (a new connection each time: the stream drops and comes back).  With ``stall_after`` it goes silent
    at that time of the video, connection open.  ``sent_at`` maps each packet's time (seconds) to the wall
    clock (``time.time()``) when it went out, over all rounds (the last wins).

    The sender runs in its own process: FFmpeg's listening socket holds Python's lock while it waits."""

    def __init__(
        self, video: bytes, *, times: int = 1, realtime: bool = True, stall_after: float | None = None
    ) -> None:
        import multiprocessing

        self.port = free_port()
        self.url = f"tcp://127.0.0.1:{self.port}"
        self.sent_at: dict[float, float] = {}
        self.rounds = 0
        context = multiprocessing.get_context("spawn")
        self._queue = context.Queue()
        self._process = context.Process(
            target=_send, args=(video, self.port, times, realtime, stall_after, self._queue), daemon=True
        )
        self._reader = threading.Thread(target=self._collect, daemon=True)

    def _collect(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if item == "round":
                self.rounds += 1
            else:
                t, wall = item
                self.sent_at[t] = wall

    def __enter__(self) -> TcpSender:
        self._process.start()
        self._reader.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._process.kill()
        self._process.join(10)
        self._queue.put(None)
        self._reader.join(5)


def _send(video: bytes, port: int, times: int, realtime: bool, stall: float | None, queue) -> None:  # type: ignore[no-untyped-def]  # noqa: ANN001
    import av

    for _ in range(times):
        try:
            with av.open(io.BytesIO(video), "r") as source:
                stream = source.streams.video[0]
                target = f"tcp://127.0.0.1:{port}?listen=1&listen_timeout=30000"
                with av.open(target, "w", format="mpegts") as out:
                    sent = out.add_stream_from_template(stream)
                    started = time.monotonic()
                    for packet in source.demux(stream):
                        if packet.dts is None:
                            continue
                        t = float(packet.pts * packet.time_base) if packet.pts is not None else 0.0
                        if stall is not None and t >= stall:
                            time.sleep(3600)  # connected, and silent
                        if realtime:
                            ahead = t - (time.monotonic() - started)
                            if ahead > 0:
                                time.sleep(ahead)
                        packet.stream = sent
                        out.mux(packet)
                        queue.put((round(t, 3), time.time()))
        except (av.error.FFmpegError, OSError):
            pass  # the client went away: the next round
        queue.put("round")


class HlsServer:
    """HLS (a VOD playlist and its segments) made from ``video`` with PyAV's HLS muxer and served over
    HTTP on 127.0.0.1; ``url`` is the playlist."""

    def __init__(self, video: bytes, folder: Path, *, segment_seconds: float = 2.0) -> None:
        import av

        folder.mkdir(parents=True, exist_ok=True)
        with av.open(io.BytesIO(video), "r") as source:
            stream = source.streams.video[0]
            options = {"hls_time": str(segment_seconds), "hls_playlist_type": "vod"}
            with av.open(str(folder / "live.m3u8"), "w", format="hls", options=options) as out:
                sent = out.add_stream_from_template(stream)
                for packet in source.demux(stream):
                    if packet.dts is None:
                        continue
                    packet.stream = sent
                    out.mux(packet)
        handler = functools.partial(_Quiet, directory=str(folder))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/live.m3u8"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HlsServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass
