"""Live streams: a known picture shown in a stream is alerted with the stream's time, over MPEG-TS on TCP
(a local FFmpeg-based sender, paced like a live encoder), HLS from a local HTTP server, and a file; drops
are reconnected, stalls reported without hanging, many streams watched at once; the API and the command.
All streams are made of generated pictures and stay on loopback."""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from childshield.banks.entries import add_outcomes
from childshield.banks.service import create_bank
from childshield.hashing.result import HashOutcome
from childshield.hashing.service import HashOptions, hash_bytes
from childshield.matching.holder import MatcherHolder
from childshield.media.video import Sampling
from childshield.store.db import Database
from childshield.store.models import Decision, WebhookDelivery
from childshield.stream.manager import WatchError, Watches
from childshield.stream.watch import Alert, WatchConfig
from childshield.testing.corpus import encode
from childshield.testing.streams import HlsServer, TcpSender
from childshield.testing.video import clip, encode_video, scene
from waiting import wait_until

PHOTO = scene(99, 320, 240)
OTHER = [scene(s, 320, 240) for s in range(50, 60)]
SHOWN_AT = 74 / 30  # the known picture's first frame: after 74 frames at 30 fps


@pytest.fixture(scope="module")
def stream_video() -> bytes:
    """2.47 s of other scenes, the known picture for 2 s, then other scenes (30 fps, a key frame a second)."""
    frames = clip(OTHER[:1], 74 / 30, fps=30) + clip([PHOTO], 2.0, fps=30) + clip(OTHER[1:4], 1.5, fps=30)
    return encode_video(frames, fps=30, options={"g": "30"})


def holder_with_known(db: Database) -> MatcherHolder:
    create_bank(db, "known")
    photo = hash_bytes(encode(PHOTO, "PNG"), HashOptions(bank_variants=True))
    add_outcomes(db, "known", [HashOutcome("known.png", result=photo)])
    holder = MatcherHolder(db)
    holder.run(lambda m: None)
    return holder


FINAL = ("ended", "failed", "stopped")
"""States a watch does not leave."""


def wait_for(condition: Callable[[], object], what: str, watches: Watches | None = None) -> None:
    """Wait for ``condition``; with ``watches``, give up once every watch is over without it."""
    over = None if watches is None else (lambda: all(s.state in FINAL for s in watches.statuses()))
    wait_until(condition, what, unless=over)


def test_a_known_picture_in_a_live_tcp_stream_is_alerted_with_its_time(
    db: Database, stream_video: bytes
) -> None:
    holder = holder_with_known(db)
    alerts: list[tuple[Alert, int, float]] = []
    watches = Watches(db, holder, webhook_url="http://127.0.0.1:9/hook",
                      on_alert=lambda a, d: alerts.append((a, d, time.time())))  # fmt: skip
    with TcpSender(stream_video) as sender:
        watches.start(sender.url, "cam-1", WatchConfig(read_timeout=60, max_reconnects=20))
        wait_for(lambda: alerts, "an alert from the TCP stream", watches)
        alert, decision_id, found_at = alerts[0]
        sent = min(wall for t, wall in sender.sent_at.items() if t >= SHOWN_AT - 1e-3)
        status = watches.statuses()[0]
    watches.close()
    assert alert.stream_id == "cam-1" and alert.stream_time == pytest.approx(SHOWN_AT, abs=0.04)
    assert [m.bank for m in alert.matches] == ["known"]
    assert found_at - sent < 10  # recorded for the benchmark's figures; here only that it was this frame
    assert status.connects == 1 and status.alerts == 1 and status.frames_hashed >= 3
    with db.session() as session:
        decision = session.get_one(Decision, decision_id)
        assert decision.source == "watch" and decision.decision == "review"
        assert decision.context == {"stream_id": "cam-1", "stream_time": f"{alert.stream_time:.3f}",
                                    "source": sender.url}  # fmt: skip
        payload = session.scalars(select(WebhookDelivery.payload)).one()
    payload = json.loads(payload) if isinstance(payload, str) else payload
    assert payload["context"]["stream_id"] == "cam-1" and payload["matches"][0]["bank"] == "known"


def test_hls_from_a_local_http_server(db: Database, stream_video: bytes, tmp_path: Path) -> None:
    holder = holder_with_known(db)
    alerts: list[Alert] = []
    watches = Watches(db, holder, on_alert=lambda a, d: alerts.append(a))
    with HlsServer(stream_video, tmp_path / "hls", segment_seconds=1.0) as hls:
        watches.start(hls.url, "hls-1", WatchConfig(realtime=True, read_timeout=60))
        wait_for(lambda: alerts, "an alert from the HLS stream", watches)
    watches.close()
    assert alerts[0].stream_time == pytest.approx(SHOWN_AT, abs=0.04)


def test_drops_are_reconnected_and_stalls_reported_without_hanging(db: Database, stream_video: bytes) -> None:
    holder = holder_with_known(db)
    alerts: list[Alert] = []
    watches = Watches(db, holder, on_alert=lambda a, d: alerts.append(a))
    config = WatchConfig(read_timeout=2, realert_after=0, max_reconnects=50)
    with TcpSender(stream_video, times=2, realtime=False) as sender:  # drops after each round
        watches.start(sender.url, "drops", config)

        def at_start() -> int:  # alerts of the known picture's first frame: one per connection
            return sum(a.stream_time == pytest.approx(SHOWN_AT, abs=0.04) for a in alerts)

        wait_for(
            lambda: at_start() >= 2 and watches.statuses()[0].connects >= 2,
            "the known picture alerted on two connections",
            watches,
        )
    with TcpSender(stream_video, stall_after=1.0) as silent:  # connected, then nothing
        watches.start(silent.url, "stalls", config)
        wait_for(
            lambda: any(s.stream_id == "stalls" and s.state == "stalled" for s in watches.statuses()),
            "the silent stream reported stalled",
            watches,
        )
        stopped = watches.stop("stalls")
        assert stopped.state in ("stopped", "stalled", "reconnecting")
    watches.close()


def test_many_streams_in_one_process(db: Database, stream_video: bytes, tmp_path: Path) -> None:
    holder = holder_with_known(db)
    alerts: list[Alert] = []
    watches = Watches(db, holder, on_alert=lambda a, d: alerts.append(a),
                      config=WatchConfig(sampling=Sampling(rate=1.0)))  # fmt: skip
    paths = []
    for n in range(4):
        path = tmp_path / f"s{n}.mp4"
        path.write_bytes(stream_video)
        paths.append(path)
        watches.start(str(path), f"file-{n}")
    wait_for(lambda: all(s.state in FINAL for s in watches.statuses()), "the four files read to their end")
    assert all(s.state == "ended" for s in watches.statuses())
    assert sorted(a.stream_id for a in alerts) == [f"file-{n}" for n in range(4)]
    with pytest.raises(WatchError, match="stream id"):
        watches.start(str(paths[0]), "bad id!")
    watches.close()


def test_watches_over_the_api(db: Database, stream_video: bytes, tmp_path: Path) -> None:
    from childshield.web.app import create_app
    from childshield.web.settings import ServiceSettings
    from review_helpers import auth, browser, people

    keys = people(db)
    holder_with_known(db)
    (tmp_path / "s.mp4").write_bytes(stream_video)
    guarded = browser(create_app(ServiceSettings(database_url=db.url, refresh_seconds=0)))
    refused = guarded.post("/v1/watches", json={"source": "tcp://127.0.0.1:9"}, headers=auth(keys["admin"]))
    assert refused.status_code == 422 and "not a public address" in refused.text
    local = guarded.post("/v1/watches", json={"source": str(tmp_path / "s.mp4")}, headers=auth(keys["admin"]))
    assert local.status_code == 422 and "CHILDSHIELD_WATCH_LOCAL" in local.text
    assert (
        guarded.post(
            "/v1/watches", json={"source": "file:///etc/passwd"}, headers=auth(keys["admin"])
        ).status_code
        == 422
    )
    assert guarded.get("/v1/watches", headers=auth(keys["service"])).status_code == 403

    app = create_app(ServiceSettings(database_url=db.url, refresh_seconds=0, fetch_allow="127.0.0.0/8"))
    client = browser(app)
    plain_http = client.post(
        "/v1/watches", json={"source": "http://127.0.0.1:9/v.mp4"}, headers=auth(keys["admin"])
    )
    assert plain_http.status_code == 422 and "HLS playlists" in plain_http.text
    with TcpSender(stream_video) as sender:
        r = client.post(
            "/v1/watches", json={"source": sender.url, "stream_id": "cam-9"}, headers=auth(keys["admin"])
        )
        assert r.status_code == 201, r.text
        assert client.post("/v1/watches", json={"source": sender.url, "stream_id": "cam-9"},
                           headers=auth(keys["admin"])).status_code == 422  # fmt: skip
        wait_for(
            lambda: client.get("/v1/watches", headers=auth(keys["admin"])).json()[0]["alerts"] >= 1,
            "an alert counted by the API's watch",
            app.state.watches,
        )
        stopped = client.delete("/v1/watches/cam-9", headers=auth(keys["admin"]))
        assert stopped.status_code == 200 and stopped.json()["state"] == "stopped"
    assert client.delete("/v1/watches/nope", headers=auth(keys["admin"])).status_code == 404
    app.state.watches.close()
    with db.session() as session:
        contexts = [d.context for d in session.scalars(select(Decision).where(Decision.source == "watch"))]
    assert contexts and contexts[0]["stream_id"] == "cam-9"


def test_the_watch_command(tmp_path: Path, stream_video: bytes) -> None:
    from childshield.store.db import open_database
    from cli_runner import cli_for

    db = open_database(f"sqlite:///{tmp_path / 'w.db'}")
    holder_with_known(db)
    (tmp_path / "s.mkv").write_bytes(stream_video)
    run = cli_for(db, "watch")(str(tmp_path / "s.mkv"), "--stream-id", "recording-1")
    assert run.returncode == 3, run.stderr
    (row,) = [json.loads(line) for line in run.stdout.splitlines()]
    assert row["stream_id"] == "recording-1" and row["stream_time"] == pytest.approx(SHOWN_AT, abs=0.04)
    assert "recording-1: ended" in run.stderr
    db.close()


def test_hls_over_the_api_is_read_through_the_guard(
    db: Database, stream_video: bytes, tmp_path: Path
) -> None:
    """A playlist on an allowed host that names segments elsewhere: those requests are refused by the
    address guard before they are made (FFmpeg's own HLS reader would have fetched them)."""
    import functools
    import http.server
    import threading

    from childshield.net.guard import AddressPolicy

    holder = holder_with_known(db)
    alerts: list[Alert] = []
    watches = Watches(db, holder, on_alert=lambda a, d: alerts.append(a))
    allowed = AddressPolicy.from_text("127.0.0.1/32")
    with HlsServer(stream_video, tmp_path / "hls", segment_seconds=1.0) as hls:
        watches.start(hls.url, "guarded", WatchConfig(guard=allowed, read_timeout=60, max_reconnects=1))
        wait_for(lambda: alerts, "an alert from the allowed HLS stream", watches)  # same host: read, matched
        assert alerts[0].stream_time == pytest.approx(SHOWN_AT, abs=0.04)

        elsewhere: list[str] = []

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *_: object) -> None:
                elsewhere.append(self.path)

        other = http.server.ThreadingHTTPServer(
            ("127.0.0.3", 0), functools.partial(Handler, directory=str(tmp_path / "hls"))
        )
        threading.Thread(target=other.serve_forever, daemon=True).start()
        playlist = (tmp_path / "hls" / "live.m3u8").read_text()
        moved = "\n".join(
            f"http://127.0.0.3:{other.server_address[1]}/{line}" if line.endswith(".ts") else line
            for line in playlist.splitlines()
        )
        (tmp_path / "hls" / "moved.m3u8").write_text(moved + "\n")
        watches.start(
            hls.url.replace("live.m3u8", "moved.m3u8"),
            "moved",
            WatchConfig(guard=allowed, read_timeout=60, max_reconnects=1),
        )
        wait_for(
            lambda: any(s.stream_id == "moved" and s.state in FINAL for s in watches.statuses()),
            "the moved playlist's watch to end",
        )
        status = next(s for s in watches.statuses() if s.stream_id == "moved")
        other.shutdown()
    watches.close()
    assert status.state == "failed"
    assert "not a public address" in status.error and not elsewhere  # refused before any request was made


PLAYLIST_LINES = [
    "#EXTM3U", "#EXT-X-TARGETDURATION:2", "#EXT-X-TARGETDURATION:x", "#EXT-X-MEDIA-SEQUENCE:7",
    "#EXT-X-ENDLIST", '#EXT-X-MAP:URI="i.mp4"', "#EXT-X-MAP:", "#EXT-X-STREAM-INF:BANDWIDTH=1",
    "#EXT-X-KEY:METHOD=AES-128", "seg.ts", "../a b.ts", "http://x/y.ts", "",
]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(PLAYLIST_LINES), st.text(max_size=20)), max_size=12))
def test_any_playlist_is_read_or_refused_clearly(lines: list[str]) -> None:
    from childshield.stream.hls import HlsError, parse

    try:
        playlist = parse("\n".join(lines), "http://127.0.0.1/live/index.m3u8")
    except HlsError:
        return
    assert all(urlsplit(url).scheme for _, url in playlist.segments)  # absolute (the guard checks the rest)
    assert [n for n, _ in playlist.segments] == sorted(n for n, _ in playlist.segments)


class Listener:
    """A loopback TCP listener standing in for an address the guard refuses: it only counts who came."""

    def __init__(self, host: str, port: int = 0) -> None:
        import socket
        import threading

        self.sock = socket.create_server((host, port))
        self.port = int(self.sock.getsockname()[1])
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        import socket

        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def test_an_rtsp_redirect_to_a_refused_address_is_never_followed(db: Database, stream_video: bytes) -> None:
    """An allowed RTSP server answers DESCRIBE with a 302 to a refused address (here 127.0.0.2, loopback,
    outside the allowed 127.0.0.1/32): FFmpeg's client would follow it, at every reconnect.  Cut before
    FFmpeg sees it; the victim never gets a connection."""
    from childshield.net.guard import AddressPolicy
    from childshield.testing.streams import RtspServer

    victim = Listener("127.0.0.2")
    watches = Watches(db, holder_with_known(db))
    allowed = AddressPolicy.from_text("127.0.0.1/32")
    redirect = f"rtsp://127.0.0.2:{victim.port}/inside"
    with RtspServer(stream_video, redirect=redirect) as server:
        watches.start(server.url, "moved", WatchConfig(guard=allowed, read_timeout=60, max_reconnects=1))
        wait_for(lambda: watches.statuses()[0].state in FINAL, "the redirected RTSP watch to end")
        status = watches.statuses()[0]
    watches.close()
    victim.close()
    assert server.connections >= 2 and server.requests.count("DESCRIBE") >= 2  # reconnected, cut again
    assert victim.accepted == 0
    assert status.state == "failed"
    assert "redirects are not followed" in status.error and redirect in status.error


def test_rtsp_is_watched_through_the_guarded_relay(db: Database, stream_video: bytes) -> None:
    from childshield.net.guard import AddressPolicy
    from childshield.testing.streams import RtspServer

    alerts: list[Alert] = []
    watches = Watches(db, holder_with_known(db), on_alert=lambda a, d: alerts.append(a))
    allowed = AddressPolicy.from_text("127.0.0.1/32")
    with RtspServer(stream_video) as server:
        watches.start(server.url, "cam-rtsp", WatchConfig(guard=allowed, read_timeout=60, max_reconnects=3))
        wait_for(lambda: alerts, "an alert from the RTSP stream", watches)
    watches.close()
    assert alerts[0].stream_time == pytest.approx(SHOWN_AT, abs=0.1)
    assert server.requests[:4] == ["OPTIONS", "DESCRIBE", "SETUP", "PLAY"]


def test_a_name_is_checked_at_every_connection_and_ffmpeg_gets_the_address(
    db: Database, stream_video: bytes
) -> None:
    """``stream.test`` is known only to the guard's resolver: FFmpeg, given the checked address, never
    resolves the name itself (it could not, and a rebinding name could answer it differently).  When
    the name moves to a refused address, the next connection is refused before it is made."""
    import socket

    from childshield.net.guard import AddressPolicy, HostsResolver

    answers = ["127.0.0.1"]

    def resolve(
        host: str, port: int, type: int = socket.SOCK_STREAM, **_: object
    ) -> list[tuple[object, ...]]:
        return HostsResolver({"stream.test": answers[-1]})(host, port, type)

    alerts: list[Alert] = []
    watches = Watches(db, holder_with_known(db), on_alert=lambda a, d: alerts.append(a))
    config = WatchConfig(guard=AddressPolicy.from_text("127.0.0.1/32"), resolve=resolve, read_timeout=60,
                         max_reconnects=1)  # fmt: skip
    with TcpSender(stream_video) as sender:
        victim = Listener("127.0.0.2", sender.port)
        watches.start(f"tcp://stream.test:{sender.port}", "named", config)
        wait_for(lambda: alerts, "an alert from the named stream", watches)
        answers.append("127.0.0.2")  # the name now points inside
        wait_for(lambda: watches.statuses()[0].state in FINAL, "the named stream's watch to end")
        status = watches.statuses()[0]
    watches.close()
    victim.close()
    assert status.state == "failed"
    assert status.connects == 1 and "not a public address" in status.error  # where it resolved: not said
    assert victim.accepted == 0


def test_a_checked_source_names_the_address_not_the_host() -> None:
    from childshield.net.guard import AddressPolicy, HostsResolver
    from childshield.stream.sources import SourceRefused, check_source

    resolve = HostsResolver(
        {"cam.test": "127.0.0.1", "v6.test": "::1", "both.test": ["127.0.0.1", "10.0.0.1"]}
    )
    policy = AddressPolicy.from_text("127.0.0.1/32,::1/128")
    checked = check_source("rtsp://user:pw@cam.test/live/1?x=2", policy, resolve)
    assert checked.url == "rtsp://user:pw@127.0.0.1:554/live/1?x=2" and checked.host == "cam.test"
    assert checked.relayed and checked.relay_url(4000) == "rtsp://user:pw@127.0.0.1:4000/live/1?x=2"
    assert checked.relay_options() == {"protocol_whitelist": "rtsp,tcp", "rtsp_transport": "tcp"}
    assert check_source("srt://v6.test:9000", policy, resolve).url == "srt://[::1]:9000"
    rtmps = check_source("rtmps://cam.test/app/key", policy, resolve)
    assert rtmps.url == "rtmps://127.0.0.1:443/app/key" and rtmps.relay_url(5) == "rtmp://127.0.0.1:5/app/key"
    with pytest.raises(SourceRefused, match="not a public address") as refused:  # any address refused: all
        check_source("tcp://both.test:9000", policy, resolve)
    assert "10.0.0.1 is a private address" in refused.value.detail


RTSP_OK = b"RTSP/1.0 200 OK\r\nCSeq: 1\r\nContent-Length: 5\r\n\r\nhello"
NUL_ENDS = b"RTSP/1.0 200 OK\r\n\x00x\r\n"
TWO_LENGTHS = b"RTSP/1.0 200 OK\r\nContent-Length: 5\r\nContent-Length: 0\r\n\r\n"


@pytest.mark.parametrize(
    ("stream", "passed"),
    [
        (RTSP_OK + b"$\x00\x00\x03abc" + RTSP_OK, RTSP_OK + b"$\x00\x00\x03abc" + RTSP_OK),
        (b"RTSP/1.0 200 OK\r\nContent-Length: 14\r\n\r\nRTSP/1.0 302\n\n", None),  # a body: passed
        (RTSP_OK + b"RTSP/1.0 302 Found\r\nLocation: rtsp://10.0.0.1/\r\n\r\n", RTSP_OK),
        (RTSP_OK + b"RTSP/1.0 302 Found\nLocation: rtsp://10.0.0.1/\n\n", RTSP_OK),  # bare \n, as FFmpeg
        (RTSP_OK + b"  RTSP/1.0  301\r\r\n\r\n", RTSP_OK),
        (RTSP_OK + b"RTSP/1.0 4294967598 Found\r\n\r\n", RTSP_OK),  # FFmpeg's atoi wraps it to 302
        (RTSP_OK + b"RTSP/1.0 200 OK\r\n$\x00\x00\x00\r\n\r\n", RTSP_OK),  # a packet inside a reply
        (TWO_LENGTHS + b"RTSP/1.0 307\r\n\r\n", TWO_LENGTHS),  # the last length counts, as in FFmpeg
        (b"RTSP/1.0 200 OK\r\nX: " + b"0" * 5000 + b"\r\n\r\n", b""),
        (b"\r$\x01\x00\x02ok\n", b"\r$\x01\x00\x02ok\n"),
        (NUL_ENDS + b"RTSP/1.0 302 Found\r\n\r\n", NUL_ENDS),  # FFmpeg: a line from a NUL on is empty
    ],
)  # fmt: skip
def test_rtsp_replies_are_read_as_ffmpeg_reads_them(stream: bytes, passed: bytes | None) -> None:
    """Whatever the chunking, the relay passes the same bytes, and nothing of a redirect (or of a reply
    FFmpeg might read as one)."""
    from childshield.stream.relay import RtspReplies

    for size in (1, 2, 3, 7, len(stream)):
        replies, out = RtspReplies(), b""
        for k in range(0, len(stream), size):
            out += replies.feed(stream[k : k + size])
        assert out == (stream if passed is None else passed), size
        assert bool(replies.refused) == (passed is not None and passed != stream), size


def test_rtsps_is_relayed_over_tls_verified_for_the_host(stream_video: bytes, tmp_path: Path) -> None:
    """The relay makes the TLS connection (FFmpeg would send the address, not the name, as SNI, and
    verifies nothing by default): a certificate for the host is taken, one it cannot verify is not."""
    import ssl

    import av

    from childshield.stream.relay import Relay, RtspReplies
    from childshield.testing.streams import RtspServer
    from smtp_helpers import self_signed

    cert, key = self_signed(tmp_path)
    served = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    served.load_cert_chain(cert, key)
    trusted = ssl.create_default_context(cafile=str(cert))
    options = {"rtsp_transport": "tcp", "protocol_whitelist": "rtsp,tcp"}
    with RtspServer(stream_video, tls=served) as server:
        address = ("127.0.0.1", server.port)
        relay = Relay(address, replies=RtspReplies, tls_host="localhost", tls_context=trusted)
        with relay, av.open(f"rtsp://127.0.0.1:{relay.port}/live", options=options, timeout=(5, 5)) as c:
            frames = 0
            for _ in c.decode(video=0):
                frames += 1
                if frames == 10:
                    break
        untrusted = Relay(address, replies=RtspReplies, tls_host="localhost")  # the system's CAs only
        with untrusted, pytest.raises(av.error.FFmpegError):
            av.open(f"rtsp://127.0.0.1:{untrusted.port}/live", options=options, timeout=(5, 5))
        assert frames == 10 and "certificate verify failed" in untrusted.cut
    assert server.requests[:4] == ["OPTIONS", "DESCRIBE", "SETUP", "PLAY"]


def ffmpeg_statuses(data: bytes) -> list[int]:
    """The status codes FFmpeg's RTSP client reads from ``data``: its reply reader (``ff_rtsp_read_reply``)
    written again byte by byte, as a second opinion on the relay's own framing."""

    def number(word: bytes) -> int:  # C's atoi/strtol: sign, digits, clamped to long, then an int
        found = re.match(rb"[ \t\v\f]*([+-]?)([0-9]*)", word)
        assert found is not None
        value = int(found.group(2) or b"0") * (-1 if found.group(1) == b"-" else 1)
        value = max(-(2**63), min(2**63 - 1, value))
        return (value + 2**31) % 2**32 - 2**31

    codes, i = [], 0
    while i < len(data):
        lines: list[bytes] = []
        while True:
            line = bytearray()
            while True:
                if i >= len(data):
                    return codes
                ch = data[i]
                i += 1
                if ch == 0x0A:
                    break
                if ch == 0x24 and not line:  # an interleaved packet: skipped
                    if i + 3 > len(data):
                        return codes
                    i += 3 + int.from_bytes(data[i + 1 : i + 3], "big")
                elif ch != 0x0D and len(line) < 4095:
                    line.append(ch)
            text = bytes(line).partition(b"\x00")[0]  # a C string
            if not text:
                break
            lines.append(text)
        length = 0
        if lines:
            words = [w for w in re.split(rb"[ \t]+", lines[0]) if w]
            if words and words[0].startswith(b"RTSP/"):
                codes.append(number(words[1]) if len(words) > 1 else 0)
            for header in lines[1:]:
                if header[:15].lower() == b"content-length:":
                    length = number(header[15:])
        i += max(0, length)
    return codes


REPLY_PARTS = [
    b"RTSP/1.0 200 OK\r\n", b"RTSP/1.0 302 Found\r\n", b"RTSP/1.0 4294967598 x\n", b"  RTSP/1.0\t0302\n",
    b"RTSP/1.0 +301\r\n", b"RTSP/1.0 401 Unauthorized\r\n", b"RTSP/1.0\x0b302\n", b"RTSP/1.0 200\x0b302\n",
    b"Content-Length: 5\r\n", b"content-length:  +3\n", b"Content-Length: -1\r\n",
    b"Content-Length: 3\x005\n", b"Content-Length: 4294967301\r\n", b"\r\n", b"\n", b"\r", b"$",
    b"$\x00\x00\x05", b"\x00", b"\x00x\n", b"hello", b"Location: rtsp://10.0.0.1/\r\n",
    b"ANNOUNCE rtsp://x/ RTSP/1.0\r\n", b"CSeq: 2\r\n",
]  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(REPLY_PARTS), max_size=30), st.lists(st.integers(1, 40), min_size=1))
def test_no_redirect_ffmpeg_would_read_passes_the_relay(parts: list[bytes], sizes: list[int]) -> None:
    from childshield.stream.relay import RtspReplies

    stream = b"".join(parts)
    replies, out, k = RtspReplies(), b"", 0
    while k < len(stream):
        size = sizes[k % len(sizes)]
        out += replies.feed(stream[k : k + size])
        k += size
    assert stream.startswith(out)  # passed on unchanged, or cut: never altered
    assert not any(300 <= code < 400 for code in ffmpeg_statuses(out)), out
