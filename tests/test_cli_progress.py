"""Progress as a person at a terminal sees it: bars for ``bank add`` and ``bank import`` on standard
error only, and the crawl's live line counting what really happened, failures too (issue 16.17)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from childshield.banks import create_bank
from childshield.store.db import open_database
from childshield.testing.corpus import encode, generated_photo
from pty_run import run_on_terminal

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    url = f"sqlite:///{tmp_path_factory.mktemp('progress') / 'cli.db'}"
    db = open_database(url)
    create_bank(db, "known")
    db.close()
    return {**os.environ, "CHILDSHIELD_DATABASE_URL": url}


def hash_list(path: Path, rows: int, offset: int = 0) -> Path:
    path.write_text(
        "signal_type,signal\n" + "".join(f"md5,{k + offset:032x}\n" for k in range(rows)), encoding="utf-8"
    )
    return path


def test_bank_import_and_add_show_progress_on_a_terminal_only(env: dict[str, str], tmp_path: Path) -> None:
    listing = hash_list(tmp_path / "list.csv", 2500)
    seen = run_on_terminal("bank", "import", "known", str(listing), env=env)
    shown = ANSI.sub("", seen.terminal)
    assert seen.returncode == 0
    assert "reading" in shown and "storing" in shown and "2500/2500" in shown
    assert "bank 'known': 2500 added, 0 already present, 0 skipped" in shown
    assert seen.piped == ""  # nothing of the bars on standard output

    for k in range(2):
        (tmp_path / f"p{k}.jpg").write_bytes(encode(generated_photo(30 + k, 96, 96), "JPEG", quality=90))
    pictures = [str(tmp_path / "p0.jpg"), str(tmp_path / "p1.jpg")]
    seen = run_on_terminal("bank", "add", "known", "--workers", "1", *pictures, env=env)
    shown = ANSI.sub("", seen.terminal)
    assert seen.returncode == 0 and "hashing" in shown and "2/2" in shown and "storing" in shown
    assert seen.piped == ""

    # Written to a file (no terminal): the summary alone, no bar.
    again = hash_list(tmp_path / "more.csv", 10, offset=10_000)
    done = subprocess.run(
        [sys.executable, "-m", "childshield.cli", "bank", "import", "known", str(again)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0 and done.stdout == ""
    assert done.stderr == "bank 'known': 10 added, 0 already present, 0 skipped\n"


class _Held(ThreadingHTTPServer):
    daemon_threads = True
    release = threading.Event()


class _Handler(BaseHTTPRequestHandler):
    server: _Held
    protocol_version = "HTTP/1.1"

    def log_message(self, *_: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/held":  # answered only once the test has seen the live line move
            self.server.release.wait(60)
        body = b'<html><a href="/held">next</a></html>' if self.path == "/" else b"<html>end</html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def held_site() -> Iterator[_Held]:
    server = _Held(("127.0.0.1", 0), _Handler)
    server.release = threading.Event()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


def test_the_crawls_live_line_counts_fetches_and_failures_while_it_runs(
    env: dict[str, str], held_site: _Held
) -> None:
    port = held_site.server_address[1]
    added = subprocess.run(
        [sys.executable, "-m", "childshield.cli", "crawl", "add",
         f"http://site.test:{port}/", "http://refused.test/x"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    lines: list[str] = []

    def watch(so_far: str) -> None:
        # The second page is held until the line shows the first page fetched and the refused URL
        # failed: a line that stayed at zero would hold the crawl until the server gives up waiting.
        found = re.findall(r"crawling: [^\r\n\x1b]*", ANSI.sub("", so_far))
        lines[:] = found
        if any("1 fetched" in line and "1 failed" in line for line in found):
            held_site.release.set()

    seen = run_on_terminal(
        "crawl", "run", "--allow", "127.0.0.0/8", "--timeout", "90",
        "--resolve", "site.test=127.0.0.1", "--resolve", "refused.test=10.255.255.1",
        env=env, watch=watch,
    )  # fmt: skip
    assert held_site.release.is_set(), lines  # the live line moved while the crawl was running
    assert any(
        line.startswith("crawling: 1 fetched (1 pages, 0 media), 0 matched, 1 failed") for line in lines
    )
    assert seen.returncode == 1  # a URL failed: work not done
    assert "fetched 2 (2 pages, 0 media)" in ANSI.sub("", seen.terminal)
