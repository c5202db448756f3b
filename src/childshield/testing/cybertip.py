"""A local CyberTipline for tests: the ESP reporting flow (submit, upload, fileinfo, finish, retract) with
HTTP Basic auth, answering in the API's XML, validating documents against childshield's schema (4100
when invalid), keeping unfinished reports apart from filed ones, and able to fail on request."""

from __future__ import annotations

import base64
import hashlib
import threading
import uuid
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from lxml import etree

from childshield.reporting.cybertip import ReportInvalid, validate


@dataclass
class FakeReport:
    id: int
    document: bytes
    state: str = "open"
    files: dict[str, bytes] = field(default_factory=dict)
    details: dict[str, bytes] = field(default_factory=dict)


def _response(code: int, description: str = "", **fields: Any) -> bytes:
    root = etree.Element("reportResponse")
    etree.SubElement(root, "responseCode").text = str(code)
    etree.SubElement(root, "responseDescription").text = description or ("Success" if code == 0 else "Error")
    for name in ("reportId", "fileId", "hash"):
        if fields.get(name) is not None:
            etree.SubElement(root, name).text = str(fields[name])
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


class FakeCyberTip:
    def __init__(self, username: str = "esp", password: str = "secret") -> None:
        self.credentials = base64.b64encode(f"{username}:{password}".encode()).decode()
        self.reports: dict[int, FakeReport] = {}
        self.fail_next: dict[str, list[int]] = {}
        """Codes to answer on the next calls of an endpoint (e.g. {"upload": [1110]})."""
        self.calls: list[str] = []
        self._next_id = 4_564_654
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def base(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/ispws"

    def filed(self) -> list[FakeReport]:
        return [r for r in self.reports.values() if r.state == "finished"]

    def __enter__(self) -> FakeCyberTip:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if self.headers.get("Authorization") != f"Basic {fake.credentials}":
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                endpoint = self.path.rsplit("/", 1)[-1]
                status, answer = fake.handle(endpoint, body, self.headers.get("Content-Type", ""))
                self.send_response(status)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def __exit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    def handle(self, endpoint: str, body: bytes, content_type: str) -> tuple[int, bytes]:
        with self._lock:
            self.calls.append(endpoint)
            queued = self.fail_next.get(endpoint)
            if queued:
                return 200, _response(queued.pop(0), "injected failure")
            form = _form(body, content_type)
            if endpoint == "submit":
                try:
                    validate(body)
                except ReportInvalid as exc:
                    return 200, _response(4100, f"validation failed: {exc}")
                self._next_id += 1
                self.reports[self._next_id] = FakeReport(self._next_id, body)
                return 200, _response(0, reportId=self._next_id)
            if endpoint in ("upload", "finish", "retract"):
                report = self.reports.get(int(form.get("id", b"0") or 0))
                if report is None:
                    return 200, _response(5001, "report does not exist")
                if report.state == "finished":
                    return 200, _response(5102, "report already finished", reportId=report.id)
                if report.state == "retracted":
                    return 200, _response(5101, "report already retracted", reportId=report.id)
                if endpoint == "upload":
                    data = form.get("file", b"")
                    file_id = uuid.uuid4().hex
                    report.files[file_id] = data
                    return 200, _response(
                        0, reportId=report.id, fileId=file_id, hash=hashlib.md5(data).hexdigest()
                    )
                report.state = "finished" if endpoint == "finish" else "retracted"
                return 200, _response(0, reportId=report.id)
            if endpoint == "fileinfo":
                try:
                    validate(body)
                except ReportInvalid as exc:
                    return 200, _response(4100, f"validation failed: {exc}")
                tree = etree.fromstring(body)
                report = self.reports.get(int(tree.findtext("reportId") or 0))
                if report is None or report.state != "open":
                    return 200, _response(5001, "report does not exist")
                file_id = tree.findtext("fileId") or ""
                if file_id not in report.files:
                    return 200, _response(5002, "file does not exist")
                report.details[file_id] = body
                return 200, _response(0, reportId=report.id)
            return 404, _response(4000, "invalid request")


def _form(body: bytes, content_type: str) -> dict[str, bytes]:
    if content_type.startswith("application/x-www-form-urlencoded"):
        return {k: v[0].encode() for k, v in parse_qs(body.decode()).items()}
    if content_type.startswith("multipart/form-data"):
        message = BytesParser(policy=HTTP).parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
        )
        out: dict[str, bytes] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            if isinstance(name, str) and isinstance(payload, bytes):
                out[name] = payload
        return out
    return {}
