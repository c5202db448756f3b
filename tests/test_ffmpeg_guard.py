"""FFmpeg held to the containers we read: uploaded bytes never make it open a socket or a URL (its SDP
demuxer, probed on a few bytes of text, binds the UDP ports the text names), and one video's decoding is
bounded by the pixels it decodes.  Every socket here is on loopback; every video is generated."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from childshield.media.errors import MediaError
from childshield.media.video import VideoInfo, VideoLimits, container_format, sample_frames
from childshield.testing.video import encode_video, scene
from waiting import HANG_GUARD, wait_until

SRC = str(Path(__file__).resolve().parents[1] / "src")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sdp(port: int) -> bytes:
    """A session description FFmpeg would receive RTP for on ``port`` of loopback."""
    return (
        "v=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nc=IN IP4 127.0.0.1\nt=0 0\n"
        f"m=video {port} RTP/AVP 96\na=rtpmap:96 H264/90000\n"
    ).encode()


def crafted(kind: str, port: int) -> bytes:
    """An SDP body behind the first bytes of a container our sniffing takes for a video (text without
    a NUL before the ``c=IN IP`` line: FFmpeg's probe then scores SDP above the container's own)."""
    body = sdp(port)
    if kind == "flv":
        return b"FLV\n" + body
    if kind == "ogg":
        return b"OggS theora\n" + body
    # MPEG-TS: a sync byte ("G") at every 188th byte, the SDP lines in between
    out = bytearray(b"#" * 188 * 6)
    for k in range(6):
        out[188 * k] = 0x47
        out[188 * k + 1] = 0x0A
    out[2 : 2 + len(body)] = body
    return bytes(out)


def udp_ports_bound() -> set[int]:
    ports = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            ports.add(int(line.split()[1].rsplit(":", 1)[1], 16))
    return ports


def sockets_of(pid: int) -> set[str]:
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:"):
            out.add(link)
    return out


@pytest.mark.parametrize("kind", ["flv", "ogg", "mpegts"])
def test_an_upload_with_a_session_description_opens_no_socket(kind: str, tmp_path: Path) -> None:
    """Hashed as an upload is (``hash_bytes``) in a process of its own, watched from outside: no socket
    ever appears in it, the port the text names is never bound, and it fails at once, clearly."""
    port = free_udp_port()
    data = crafted(kind, port)
    assert container_format(data[:1024]) == kind  # our sniffing takes it for that container
    (tmp_path / "upload").write_bytes(data)
    script = textwrap.dedent(f"""
        import sys
        from childshield.hashing.service import hash_bytes
        from childshield.media.errors import MediaError
        try:
            hash_bytes(open({str(tmp_path / "upload")!r}, "rb").read())
        except MediaError as exc:
            print("refused:", exc)
            sys.exit(0)
        sys.exit(1)
    """)
    env = {**os.environ, "PYTHONPATH": SRC}
    child = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True)
    seen: set[str] = set()
    bound = False

    def ended() -> bool:  # watched until it ends: every socket it opened on the way is seen
        nonlocal seen, bound
        try:
            seen |= sockets_of(child.pid)
        except OSError:  # the child has just ended
            return True
        bound = bound or port in udp_ports_bound()
        return child.poll() is not None

    wait_until(ended, "the hashing process to end", every=0.002)
    out, _ = child.communicate(timeout=HANG_GUARD)
    assert not seen and not bound, (seen, bound)
    assert child.returncode == 0 and "refused:" in out, out


def test_the_api_refuses_such_an_upload_at_once(db: object, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from childshield.accounts.service import create_api_key, create_user
    from childshield.store.models import Role
    from childshield.web.app import create_app
    from childshield.web.settings import ServiceSettings

    create_user(db, "platform", Role.SERVICE)  # type: ignore[arg-type]
    key = create_api_key(db, "platform")  # type: ignore[arg-type]
    port = free_udp_port()
    app = create_app(ServiceSettings(database_url=db.url, refresh_seconds=0))  # type: ignore[attr-defined]
    bound = threading.Event()
    answered = threading.Event()

    def watch() -> None:  # unguarded, FFmpeg bound the port and held a thread 20 s listening on it
        while not answered.is_set():
            if port in udp_ports_bound():
                bound.set()
            time.sleep(0.002)

    watcher = threading.Thread(target=watch, daemon=True)
    with TestClient(app) as client:
        watcher.start()
        r = client.post("/v1/scan", content=crafted("flv", port), headers={"Authorization": f"Bearer {key}"})
        answered.set()
        watcher.join()
    assert r.status_code == 422 and r.json()["detail"], r.text
    assert not bound.is_set(), "FFmpeg bound the port the crafted file named"


def test_files_given_by_path_are_read_the_same_way(tmp_path: Path) -> None:
    port = free_udp_port()
    path = tmp_path / "clip.flv"
    path.write_bytes(crafted("flv", port))
    with pytest.raises(MediaError):
        list(sample_frames(path))
    good = tmp_path / "good.mp4"
    good.write_bytes(encode_video([scene(1)] * 10))
    assert len(list(sample_frames(good))) == 1
    with pytest.raises(MediaError, match="not a video container"):
        list(sample_frames(b"#EXTM3U\n#EXT-X-TARGETDURATION:1\nhttp://127.0.0.1:9/a.ts\n"))


def test_decoding_stops_at_the_pixel_budget_keeping_the_frames_before() -> None:
    """Large, nearly static frames are cheap to send and dear to decode: the budget (pixels decoded,
    summed) stops the work; the frames hashed before it stand, and the note says why it stopped."""
    base = scene(3, 256, 256)
    big = np.ascontiguousarray(np.kron(base, np.ones((16, 16, 1), np.uint8)))  # 4096x4096
    data = encode_video([big] * 24, fps=10, options={"preset": "ultrafast", "g": "300"})
    assert len(data) < 2_000_000
    info = VideoInfo()
    limits = VideoLimits(max_decoded_pixels=4096 * 4096 * 8, decoder_threads=1)
    frames = list(sample_frames(data, limits=limits, info=info))
    assert [f.timestamp for f in frames] == [0.0] and info.decoded == 9
    assert "decoded pixels" in info.note
    whole = VideoInfo()
    assert len(list(sample_frames(data, info=whole))) == 3 and whole.decoded == 24 and not whole.note


def test_hls_segments_of_a_guarded_watch_open_no_socket(tmp_path: Path) -> None:
    """A watched HLS stream whose segment is a session description behind MPEG-TS sync bytes: read as
    MPEG-TS (our sniffing), never probed by FFmpeg, so the UDP port it names is never bound."""
    import functools
    import http.server
    import threading

    from childshield.net.guard import AddressPolicy
    from childshield.stream.watch import Watch, WatchConfig

    port = free_udp_port()
    (tmp_path / "seg0.ts").write_bytes(crafted("mpegts", port))
    (tmp_path / "live.m3u8").write_text(
        "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\nseg0.ts\n#EXT-X-ENDLIST\n"
    )

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(tmp_path))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/live.m3u8"
    config = WatchConfig(guard=AddressPolicy.from_text("127.0.0.1/32"), read_timeout=60, max_reconnects=0)
    watch = Watch("hls-sdp", url, lambda queries, names: [], lambda alert: None, config).start()
    bound = False

    def ended() -> bool:  # watched until the watch ends: what it bound on the way is seen
        nonlocal bound
        bound = bound or port in udp_ports_bound()
        return not watch.alive

    wait_until(ended, "the watch of the crafted stream to end", every=0.002)
    watch.stop()
    server.shutdown()
    server.server_close()
    assert not bound
    assert watch.status.state == "failed" and watch.status.error


def test_one_video_is_decoded_with_the_threads_it_is_given(tmp_path: Path) -> None:
    """FFmpeg's default is a thread per core (and more): ``decoder_threads`` caps what one upload takes.
    Counted in a process of its own, where no other test's threads come and go."""
    script = textwrap.dedent("""
        import os
        from childshield.media.video import VideoLimits, sample_frames
        from childshield.testing.video import encode_video, scene
        data = encode_video([scene(s, 640, 480) for s in range(30)], fps=10)
        for threads in (1, 3):
            before = peak = len(os.listdir("/proc/self/task"))
            for _ in sample_frames(data, limits=VideoLimits(decoder_threads=threads)):
                peak = max(peak, len(os.listdir("/proc/self/task")))
            print(threads, peak - before)
    """)
    env = {**os.environ, "PYTHONPATH": SRC}
    run = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=HANG_GUARD
    )
    assert run.returncode == 0, run.stderr
    extra = dict(line.split() for line in run.stdout.splitlines())
    assert int(extra["1"]) <= 1 and 2 <= int(extra["3"]) <= 3, extra
