"""``/metrics`` of ``childshield serve --workers 2`` (issue 16.8): every scrape, whichever worker answers
it, reports the scans of both workers, nothing of an earlier run, and the run's folder of counts is
removed when the service stops.  A real server in a subprocess on a loopback port."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from childshield.accounts.service import create_api_key, create_user
from childshield.store.db import open_database
from childshield.store.models import Role
from childshield.testing.corpus import encode

SCANS = 16
MAX_SCANS = 400
SCRAPES = 8
STALE = 1000
SCANNED = re.compile(r'^childshield_scans_total\{outcome="clean"\} (\S+)$', re.MULTILINE)


def _stale_counts(folder: Path, environ: dict[str, str]) -> None:
    """Counts an earlier run left in the operator's folder: they must never show in this run."""
    code = f"from childshield.web.metrics import Metrics\nMetrics().scans.labels('clean').inc({STALE})\n"
    subprocess.run(
        [sys.executable, "-c", code], env={**environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)}, check=True
    )
    assert list(folder.glob("counter_*.db"))


def _port(log: Path, process: subprocess.Popen[bytes]) -> int:
    while True:  # no deadline: a loaded machine starts slowly, and a server that died says so
        found = re.search(r"Uvicorn running on http://127\.0\.0\.1:(\d+)", log.read_text())
        if found:
            return int(found.group(1))
        assert process.poll() is None, log.read_text()
        time.sleep(0.1)


def _ready(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    ready = 0
    while ready < 4:  # answered by the workers (each call a new connection, so either worker)
        try:
            ready = ready + 1 if httpx.get(base + "/v1/ready", timeout=30).status_code == 200 else 0
        except httpx.HTTPError:
            ready = 0
        assert process.poll() is None, log.read_text()
        time.sleep(0.05)


def test_metrics_add_up_every_worker_and_nothing_of_an_earlier_run(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'served.db'}"
    db = open_database(url)
    create_user(db, "root", Role.ADMIN, password="a long admin passphrase")
    key = create_api_key(db, "root")
    db.close()
    operator_folder = tmp_path / "metrics"
    operator_folder.mkdir()
    environ = {
        **os.environ,
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "CHILDSHIELD_KEEP_MEDIA": "false",
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    _stale_counts(operator_folder, environ)
    environ["PROMETHEUS_MULTIPROC_DIR"] = str(operator_folder)

    log = tmp_path / "serve.log"
    command = [sys.executable, "-m", "childshield.cli", "serve", "--workers", "2", "--port", "0", "--db", url]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=environ)
    try:
        base = f"http://127.0.0.1:{_port(log, process)}"
        _ready(base, process, log)
        headers = {"Authorization": f"Bearer {key}"}
        picture = encode(np.random.default_rng(5).integers(0, 255, (64, 64, 3), dtype=np.uint8), "PNG")
        (run_folder,) = [p for p in operator_folder.iterdir() if p.is_dir()]
        assert run_folder.stat().st_mode & 0o777 == 0o700
        scans = 0
        # Each scan on a new connection, which either worker may take; on until both have scanned (the
        # check's precondition: one worker's /metrics is then short of the total).
        while scans < SCANS or len(list(run_folder.glob("counter_*.db"))) < 2:
            assert scans < MAX_SCANS, sorted(os.listdir(run_folder))
            r = httpx.post(base + "/v1/scan", content=picture, headers=headers, timeout=60)
            assert r.status_code == 200, r.text
            scans += 1

        totals = []
        for _ in range(SCRAPES):
            r = httpx.get(base + "/metrics", headers=headers, timeout=60)
            assert r.status_code == 200
            totals.append(float(SCANNED.findall(r.text)[0]))
            assert "childshield_review_items" in r.text and "childshield_webhook_deliveries" in r.text
        assert totals == [float(scans)] * SCRAPES
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(120)
    assert process.returncode == 0, log.read_text()
    assert [p.name for p in operator_folder.iterdir() if p.is_dir()] == []  # the run's folder is gone
    assert list(operator_folder.glob("counter_*.db"))  # the operator's own files are left alone
