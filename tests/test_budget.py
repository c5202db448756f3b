"""What one request may cost a worker (issue 15, finding 3): small uploads that decode to huge pictures,
oversized lookup bodies, work counted per call, and health and readiness under such a load.

The attacks run against a real uvicorn server in a subprocess on 127.0.0.1, whose memory is read from
``/proc``; settings reach it through ``CHILDSHIELD_*`` environment variables.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from childshield.accounts.service import create_api_key, create_user
from childshield.media.errors import ImageTooLarge
from childshield.signals.pdq_picture import max_reduction
from childshield.store.db import Database, open_database
from childshield.store.models import Role
from childshield.testing.corpus import encode, generated_photo
from childshield.web.app import create_app
from childshield.web.settings import ServiceSettings
from waiting import HANG_GUARD, join, wait_until

decode_module: Any = importlib.import_module("childshield.media.decode")  # the package re-exports decode()

MB = 1 << 20


def single_colour_png(width: int, height: int) -> bytes:
    """A one-colour RGB PNG written row by row with zlib: ~300 KB for 9999x9999, 400 MB once decoded."""
    row = b"\x00" + bytes((120, 60, 200)) * width
    packer = zlib.compressobj(9)
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes((8, 2, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def big_png() -> bytes:
    return single_colour_png(9999, 9999)


# --------------------------------------------------------------------------- a real server


@dataclass
class Served:
    url: str
    key: str
    process: subprocess.Popen[bytes]

    def memory(self) -> dict[str, int]:
        """VmRSS and VmHWM (peak) of the server, in bytes."""
        out = {}
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                out[name] = int(value.split()[0]) * 1024
        return out

    def reset_peak(self) -> None:
        Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")  # VmHWM := VmRSS

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@contextmanager
def served(tmp_path: Path, **env: str) -> Iterator[Served]:
    """The service in a subprocess (its own memory to measure) on a socket bound here (no port race)."""
    url = f"sqlite:///{tmp_path / 'served.db'}"
    db = open_database(url)
    create_user(db, "platform", Role.SERVICE)
    key = create_api_key(db, "platform")
    db.close()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    code = (
        "import sys, uvicorn\n"
        "from childshield.web.app import create_app\n"
        "from childshield.web.settings import ServiceSettings\n"
        "app = create_app(ServiceSettings(database_url=sys.argv[1], refresh_seconds=0))\n"
        "uvicorn.run(app, fd=int(sys.argv[2]), log_level='warning', backlog=128)\n"
    )
    environ = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data"), **env}
    process = subprocess.Popen(
        [sys.executable, "-c", code, url, str(listener.fileno())], pass_fds=[listener.fileno()], env=environ
    )
    base = f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()
    try:

        def ready() -> bool:
            try:
                return httpx.get(base + "/v1/ready", timeout=60).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, "the server to start", unless=lambda: process.poll() is not None)
        yield Served(base, key, process)
    finally:
        process.terminate()
        try:
            process.wait(2)
        except subprocess.TimeoutExpired:  # scans still in flight: no need to wait them out
            process.kill()
            process.wait()


def post_all(server: Served, path: str, bodies: list[bytes], timeout: float = HANG_GUARD) -> list[int]:
    """Every body posted at once, each from a thread of its own; the status codes (0: no answer)."""
    codes = [0] * len(bodies)

    def one(k: int) -> None:
        try:
            r = httpx.post(server.url + path, content=bodies[k], headers=server.auth(), timeout=timeout)
            codes[k] = r.status_code
        except httpx.HTTPError:
            pass

    threads = [threading.Thread(target=one, args=(k,)) for k in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return codes


def scans_in_flight(server: Served) -> float:
    """The server's count of scans received and not yet answered (from ``/metrics``)."""
    text = httpx.get(server.url + "/metrics", timeout=HANG_GUARD).text
    found = re.search(r"^childshield_scans_in_flight (\S+)$", text, re.MULTILINE)
    assert found, text
    return float(found.group(1))


def warmed(server: Served) -> int:
    """The server's memory after one small scan (imports and caches loaded), its peak reset to it."""
    small = encode(generated_photo(3, 640, 480), "PNG")
    assert (
        httpx.post(
            server.url + "/v1/scan", content=small, headers=server.auth(), timeout=HANG_GUARD
        ).status_code
        == 200
    )
    server.reset_peak()
    return server.memory()["VmRSS"]


# --------------------------------------------------------------------------- decoding big pictures


def peak_growth(tmp_path: Path, upload: bytes, count: int, **env: str) -> int:
    """How much a served worker's peak memory grew while ``count`` scans of ``upload`` ran at once (all
    answered 200: each waits for its turn as long as it takes)."""
    with served(tmp_path, **{"CHILDSHIELD_DECODE_WAIT": str(HANG_GUARD), **env}) as server:
        before = warmed(server)
        codes = post_all(server, "/v1/scan", [upload] * count)
        after = server.memory()
    assert codes == [200] * count
    return after["VmHWM"] - before


def test_concurrent_scans_of_a_300kb_png_of_100_megapixels_keep_memory_bounded(
    tmp_path: Path, big_png: bytes
) -> None:
    """The attack: a 316 KB single-colour 9999x9999 PNG, scanned 6 times at once.  Decoded whole it is
    400 MB a scan (2.4 GB for six; 4.6 GB measured for twelve); decoded a strip at a time, ~50 MB."""
    assert len(big_png) < 400_000
    growth = peak_growth(tmp_path, big_png, 6)
    assert growth < 600 * MB, f"peak grew by {growth / MB:.0f} MB"


def test_the_decode_budget_bounds_decodes_that_cannot_be_reduced(tmp_path: Path) -> None:
    """WebP is decoded whole (~15 bytes a pixel held at the peak): four 16 MP scans at once would hold
    1 GB; a 400 MB budget lets one decode at a time and the others wait their turn."""
    buffer = io.BytesIO()
    Image.new("RGB", (4000, 4000), (10, 200, 30)).save(buffer, "WEBP", lossless=True)
    webp = buffer.getvalue()
    growth = peak_growth(tmp_path, webp, 4, CHILDSHIELD_DECODE_MEMORY_MB="400")
    assert growth < 500 * MB, f"peak grew by {growth / MB:.0f} MB"


def test_strips_give_the_pixels_of_the_whole_picture() -> None:
    """The strip reader is not an approximation: the same pixels as decoding the whole PNG and reducing
    it, for every 8-bit colour type, written by Pillow (adaptive filters) and by libpng (OpenCV)."""
    rng = np.random.default_rng(5)
    photo = np.asarray(Image.fromarray(generated_photo(9, 640, 480)).resize((1137, 801)))
    noise = rng.integers(0, 256, (801, 1137), dtype=np.uint8)
    rgba = np.dstack([photo, noise])
    palette = Image.fromarray(photo).quantize(200)
    files = {
        "L": encode(photo[..., 1], "PNG"),
        "RGB": encode(photo, "PNG"),
        "RGBA": encode(rgba, "PNG"),
        "LA": encode(np.dstack([photo[..., 0], noise]), "PNG"),
        "P": encode(np.asarray(palette), "PNG"),  # as gray indices: L
        "RGB-libpng": cv2.imencode(".png", photo[..., ::-1])[1].tobytes(),
        "RGBA-libpng": cv2.imencode(".png", rgba[..., [2, 1, 0, 3]])[1].tobytes(),
    }
    with_palette = io.BytesIO()
    palette.save(with_palette, "PNG", transparency=5)
    files["P-transparency"] = with_palette.getvalue()
    previous = decode_module._PNG_STRIP_BYTES
    try:
        for name, data in files.items():
            assert decode_module._png_layout(data) is not None, name
            whole = decode_module._picture(Image.open(io.BytesIO(data)), "PNG", 0, max_reduction, data)
            for strip_bytes in (previous, 40_000):  # a few strips, and many
                decode_module._PNG_STRIP_BYTES = strip_bytes
                got = decode_module.decode(data, choose_factor=max_reduction).pictures[0]
                assert got.factor == whole.factor > 1, name
                assert np.array_equal(got.pixels, whole.pixels), name
    finally:
        decode_module._PNG_STRIP_BYTES = previous


def test_decode_budget_waits_refuses_and_serves_in_order() -> None:
    budget = decode_module.DecodeBudget(100)
    with pytest.raises(ImageTooLarge, match="over this worker's decode memory"), budget.take(101):
        pass
    order: list[str] = []
    with budget.take(60):
        with pytest.raises(decode_module.DecodeBusy) as busy, budget.take(50, wait=0.05):
            pass
        assert busy.value.retry_after >= 1

        def later(name: str, cost: int) -> None:
            with budget.take(cost):
                order.append(name)
                time.sleep(0.02)

        big = threading.Thread(target=later, args=("big", 90))
        big.start()
        wait_until(lambda: budget.waiting == 1, '"big" waiting for its share')
        small = threading.Thread(target=later, args=("small", 10))  # fits now, but comes after "big"
        small.start()
        wait_until(lambda: budget.waiting == 2, '"small" waiting behind "big"')
        assert order == [] and budget.used == 60
    join(big, '"big"')
    join(small, '"small"')
    assert order == ["big", "small"] and budget.used == 0


# --------------------------------------------------------------------------- lookups


def test_an_oversized_lookup_body_is_refused_unread(tmp_path: Path) -> None:
    """A lookup declaring 30 MB is answered 413 at once, without the server reading its body; one sent
    chunked is cut off at the limit; a body within the limit is looked up."""
    with served(tmp_path, CHILDSHIELD_MAX_LOOKUP_BYTES="1000000") as server:
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=HANG_GUARD) as s:
            s.sendall(
                (
                    f"POST /v1/lookup HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {server.key}\r\n"
                    "Content-Type: application/json\r\nContent-Length: 30000000\r\n\r\n"
                ).encode()
            )
            s.sendall(b'{"signals": [')  # and no more: a server waiting for the body never answers
            received = b""
            while not received.endswith(b"}"):  # the headers and the JSON may come in two segments
                piece = s.recv(4096)
                if not piece:
                    break
                received += piece
            answer = received.decode()
        assert answer.startswith("HTTP/1.1 413"), answer[:200]
        assert "over the limit of 1,000,000 bytes" in answer

        signal = {"type": "md5", "value": "0" * 32, "id": "x" * 150}

        def chunked(count: int) -> Iterator[bytes]:
            yield b'{"signals": ['
            for k in range(count):
                yield (b"," if k else b"") + json.dumps(signal).encode()
            yield b"]}"

        before = server.memory()["VmRSS"]
        r = httpx.post(
            server.url + "/v1/lookup", content=chunked(200_000), headers=server.auth(), timeout=HANG_GUARD
        )
        assert r.status_code == 413 and "over the limit" in r.json()["detail"]
        assert server.memory()["VmRSS"] - before < 100 * MB  # 40 MB of JSON is ~600 MB once parsed
        fits = httpx.post(
            server.url + "/v1/lookup",
            json={"signals": [signal] * 2000},
            headers=server.auth(),
            timeout=HANG_GUARD,
        )
        assert fits.status_code == 200 and len(fits.json()["results"]) == 2000


def test_the_lookup_schema_is_unchanged(db: Database) -> None:
    with TestClient(create_app(ServiceSettings(database_url=db.url))) as c:
        spec = c.get("/openapi.json").json()
    body = spec["paths"]["/v1/lookup"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/LookupIn"}


# --------------------------------------------------------------------------- rate limits by work


@pytest.fixture
def service_key(db: Database) -> str:
    create_user(db, "platform", Role.SERVICE)
    return create_api_key(db, "platform")


def test_lookups_are_counted_by_signal(
    db: Database, service_key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key allowed 10 units: one lookup of 7 signals leaves 3; a lookup of 4 is refused (its request
    still costs 1, as every request does), one of 2 then spends the rest."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    settings = ServiceSettings(database_url=db.url, refresh_seconds=0, scan_rate=0.001, scan_burst=10)
    headers = {"Authorization": f"Bearer {service_key}"}

    def lookup(c: TestClient, n: int) -> httpx.Response:
        body = {"signals": [{"type": "md5", "value": f"{k:032x}"} for k in range(n)]}
        answer: httpx.Response = c.post("/v1/lookup", json=body, headers=headers)
        return answer

    with TestClient(create_app(settings)) as c:
        assert lookup(c, 7).status_code == 200
        refused = lookup(c, 4)
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
        assert lookup(c, 2).status_code == 200
        assert lookup(c, 1).status_code == 429


def test_scans_are_counted_by_bytes_and_pixels(
    db: Database, service_key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 2500x2000 picture over 1 MiB costs 1 + its started MiB + 5 (megapixels decoded): with an
    allowance of two such scans, the third is refused, where counting calls would have allowed 16."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    levels = np.random.default_rng(2).integers(0, 4, (2000, 2500), dtype=np.uint8) * 60
    data = encode(levels, "PNG", compress_level=1)
    cost = 1 + -(-len(data) // MB) + 5
    assert len(data) > MB and 2 * cost <= 16
    settings = ServiceSettings(database_url=db.url, refresh_seconds=0, scan_rate=0.001, scan_burst=2 * cost)
    headers = {"Authorization": f"Bearer {service_key}", "Content-Type": "application/octet-stream"}
    with TestClient(create_app(settings)) as c:
        codes = [c.post("/v1/scan", content=data, headers=headers).status_code for _ in range(3)]
    assert codes == [200, 200, 429]


# --------------------------------------------------------------------------- health under load


def test_health_and_ready_answer_while_scans_fill_the_worker(tmp_path: Path) -> None:
    """48 slow scans at once (1000-frame animations, every frame hashed) take every scan slot, and more
    than the 40 threads Starlette's pool has; health and readiness must still answer while they run
    (before scans had threads of their own, health waited for all 48: 49 s).  What is asserted is the
    order (every answer came while the scans were still in flight), not a time, which load would move."""
    frames = []
    for k in range(1000):
        a = np.zeros((96, 96), np.uint8)
        a[(k * 7) % 80 : (k * 7) % 80 + 16, (k * 3) % 80 : (k * 3) % 80 + 16] = 255
        a[k % 96, :] = 128
        frames.append(Image.fromarray(a))
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=40)
    gif = buffer.getvalue()
    env = {
        "CHILDSHIELD_SCAN_THREADS": "1",
        "CHILDSHIELD_DECODE_WAIT": str(HANG_GUARD),  # the 48th waits for the 47 before it
        "CHILDSHIELD_METRICS_OPEN": "1",
    }
    with served(tmp_path, **env) as server:
        load = threading.Thread(
            target=post_all, args=(server, "/v1/scan", [gif] * 48, HANG_GUARD), daemon=True
        )
        load.start()
        # Every upload received: the scan slot busy, the rest waiting their turn.
        wait_until(
            lambda: scans_in_flight(server) == 48,
            "the server to hold all 48 scans",
            unless=lambda: not load.is_alive(),
        )
        took: dict[str, float] = {}
        for path in ("/v1/health", "/v1/ready", "/v1/health", "/v1/ready"):
            start = time.perf_counter()
            r = httpx.get(server.url + path, timeout=HANG_GUARD)
            took[path] = max(took.get(path, 0.0), time.perf_counter() - start)
            assert r.status_code == 200, (path, r.text)
        # one scan thread and 48 scans of ~1 s of hashing each: health waiting behind them ends after them
        assert load.is_alive(), f"health answered only after the scans were over: {took}"


def test_a_scan_waits_for_decode_memory_then_is_told_to_come_back(
    db: Database, service_key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the worker's decode memory taken (by other scans, or the crawler), a scan waits
    ``decode_wait_seconds`` and is answered 503 with ``Retry-After``; once it is free the same scan
    passes.  A picture needing more than the whole budget is refused as too large (422)."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    settings = ServiceSettings(
        database_url=db.url, refresh_seconds=0, decode_memory_mb=50, decode_wait_seconds=0.3
    )
    headers = {"Authorization": f"Bearer {service_key}", "Content-Type": "application/octet-stream"}
    data = encode(generated_photo(4, 640, 480), "PNG")
    with TestClient(create_app(settings)) as c:
        budget = c.app.state.matchers.hashing.budget  # type: ignore[attr-defined]
        with budget.take(budget.max_bytes):
            start = time.monotonic()
            busy = c.post("/v1/scan", content=data, headers=headers)
            assert time.monotonic() - start >= 0.3
        assert busy.status_code == 503 and int(busy.headers["Retry-After"]) >= 1
        assert "busy" in busy.json()["detail"]
        assert c.post("/v1/scan", content=data, headers=headers).status_code == 200
        assert budget.used == 0
        big = io.BytesIO()
        Image.new("RGB", (4000, 4000), (1, 2, 3)).save(big, "WEBP", lossless=True)  # ~256 MB to decode
        refused = c.post("/v1/scan", content=big.getvalue(), headers=headers)
        assert refused.status_code == 422 and "over this worker's decode memory" in refused.json()["detail"]
