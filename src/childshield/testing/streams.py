"""Local live streams for tests and benchmarks: a video sent as MPEG-TS over TCP at its own pace (an
FFmpeg-based sender, through PyAV), and HLS served by a local HTTP server.  Loopback only."""

from __future__ import annotations

import contextlib
import functools
import http.server
import io
import socket
import ssl
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


class RtspServer:
    """A small RTSP server on 127.0.0.1 (``url``) that plays ``video``'s H.264 as RTP interleaved on the
    control connection (RTSP over TCP), paced at its own speed, to each client that asks.  With
    ``redirect`` it answers DESCRIBE with ``302 Found`` and that ``Location`` instead (a server sending
    its clients elsewhere); with ``tls`` (a server context) it is RTSPS.  ``connections`` counts the
    clients; ``requests`` lists the methods asked."""

    def __init__(
        self,
        video: bytes,
        *,
        redirect: str | None = None,
        host: str = "127.0.0.1",
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.packets = _rtp_packets(video)
        self.redirect, self.tls = redirect, tls
        self.connections = 0
        self.requests: list[str] = []
        self._listener = socket.create_server((host, 0))
        self.port = int(self._listener.getsockname()[1])
        self.url = f"{'rtsps' if tls else 'rtsp'}://{host}:{self.port}/live"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> RtspServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):  # shut down first: that wakes the thread waiting in accept()
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        buf = b""
        if self.tls is not None:
            try:
                client = self.tls.wrap_socket(client, server_side=True)
            except (OSError, ssl.SSLError):  # a client that does not trust the certificate
                client.close()
                return
        with client:
            try:
                while not self._stop.is_set():
                    while b"\r\n\r\n" not in buf:
                        data = client.recv(65536)
                        if not data:
                            return
                        buf += data
                    head, _, buf = buf.partition(b"\r\n\r\n")
                    lines = head.decode("latin-1").split("\r\n")
                    method = lines[0].split(" ", 1)[0]
                    if method == "$":  # an interleaved RTCP report from the client (none expected)
                        continue
                    self.requests.append(method)
                    cseq = next(
                        (ln.split(":", 1)[1].strip() for ln in lines if ln.lower().startswith("cseq:")), "0"
                    )
                    if method == "DESCRIBE" and self.redirect:
                        client.sendall(_reply(cseq, "302 Found", f"Location: {self.redirect}\r\n"))
                        continue
                    if method == "DESCRIBE":
                        sdp = ("v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=test\r\nt=0 0\r\n"
                               "m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
                               "a=fmtp:96 packetization-mode=1\r\na=control:track1\r\n")  # fmt: skip
                        extra = f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n"
                        client.sendall(_reply(cseq, "200 OK", extra) + sdp.encode())
                    elif method == "SETUP":
                        extra = "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\nSession: 4242\r\n"
                        client.sendall(_reply(cseq, "200 OK", extra))
                    elif method == "PLAY":
                        client.sendall(_reply(cseq, "200 OK", "Session: 4242\r\nRange: npt=0.000-\r\n"))
                        self._play(client)
                        return
                    else:
                        extra = (
                            "Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN\r\n"
                            if method == "OPTIONS"
                            else ""
                        )
                        client.sendall(_reply(cseq, "200 OK", extra))
            except OSError:
                return

    def _play(self, client: socket.socket) -> None:
        started = time.monotonic()
        for t, packet in self.packets:
            if self._stop.is_set():
                return
            ahead = t - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
            client.sendall(b"$\x00" + len(packet).to_bytes(2, "big") + packet)
        time.sleep(0.5)


def _reply(cseq: str, status: str, extra: str = "") -> bytes:
    return f"RTSP/1.0 {status}\r\nCSeq: {cseq}\r\n{extra}\r\n".encode()


def _rtp_packets(video: bytes) -> list[tuple[float, bytes]]:
    """``video``'s H.264 as RTP packets (RFC 6184: single NAL units, FU-A for large ones), each with
    the time it is due."""
    import av

    out: list[tuple[float, bytes]] = []
    seq = 0
    ts = io.BytesIO()
    with av.open(io.BytesIO(video), "r") as source, av.open(ts, "w", format="mpegts") as target:
        stream = source.streams.video[0]
        copy = target.add_stream_from_template(stream)
        for packet in source.demux(stream):  # MPEG-TS holds H.264 as Annex B (start codes)
            if packet.dts is not None:
                packet.stream = copy
                target.mux(packet)
    with av.open(io.BytesIO(ts.getvalue()), "r", format="mpegts") as source:
        stream = source.streams.video[0]
        for packet in source.demux(stream):
            if packet.pts is None:
                continue
            t = float(packet.pts * packet.time_base)
            stamp = round(t * 90000) & 0xFFFFFFFF
            nals = [
                n
                for n in bytes(packet).replace(b"\x00\x00\x00\x01", b"\x00\x00\x01").split(b"\x00\x00\x01")
                if n
            ]
            for k, nal in enumerate(nals):
                last = k == len(nals) - 1
                if len(nal) <= 1400:
                    pieces = [(nal, last)]
                else:
                    chunks = [nal[1 + i : 1 + i + 1400] for i in range(0, len(nal) - 1, 1400)]
                    pieces = []
                    for j, chunk in enumerate(chunks):
                        start, end = j == 0, j == len(chunks) - 1
                        indicator = (nal[0] & 0xE0) | 28
                        header = (0x80 if start else 0) | (0x40 if end else 0) | (nal[0] & 0x1F)
                        pieces.append((bytes([indicator, header]) + chunk, last and end))
                for payload, marker in pieces:
                    rtp = bytes([0x80, (0x80 if marker else 0) | 96]) + seq.to_bytes(2, "big")
                    rtp += stamp.to_bytes(4, "big") + (0x12345678).to_bytes(4, "big")
                    out.append((t, rtp + payload))
                    seq = (seq + 1) & 0xFFFF
    return out
