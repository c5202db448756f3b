"""A local CyberTipline for tests, following NCMEC's documentation of the ESP reporting API: ``GET
/status``, ``GET /xsd`` and the flow submit, upload, fileinfo, finish (or retract), with HTTP Basic auth
and a ``Request-ID`` header on every answer.

* Documents are validated against NCMEC's own schema file when there is one (``schema_file``, by
  default ``CHILDSHIELD_CYBERTIP_XSD``), else against childshield's subset; an invalid one is answered
  4100.
* ``finish`` answers a ``reportDoneResponse`` listing the files of the report; every other call (and a
  refused finish) a ``reportResponse``.
* Unfinished reports expire as NCMEC's do: 24 hours after they were opened, or 1 hour after their last
  change, by ``clock`` (injectable: tests move it on).  An expired report is gone (5001, "report does not
  exist"); ``expired`` keeps them for the tests to look at.
* It fails on request (``fail_next``) and can lose files (``lose_files``) to show what a client does when
  the list NCMEC finished with is not the one it uploaded."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from lxml import etree

from childshield.reporting.config import ncmec_schema_file
from childshield.reporting.cybertip import SCHEMA

OPEN_FOR = dt.timedelta(hours=24)
"""An unfinished report is deleted this long after it was opened..."""
IDLE_FOR = dt.timedelta(hours=1)
"""...or this long after its last change, whichever comes first."""


@dataclass
class FakeReport:
    id: int
    document: bytes
    opened_at: dt.datetime
    changed_at: dt.datetime
    state: str = "open"
    files: dict[str, bytes] = field(default_factory=dict)
    details: dict[str, bytes] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    """The file name each upload was sent under."""


def _response(code: int, description: str = "", **fields: Any) -> bytes:
    root = etree.Element("reportResponse")
    etree.SubElement(root, "responseCode").text = str(code)
    etree.SubElement(root, "responseDescription").text = description or ("Success" if code == 0 else "Error")
    for name in ("reportId", "fileId", "hash"):
        if fields.get(name) is not None:
            etree.SubElement(root, name).text = str(fields[name])
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def _done(report_id: int, file_ids: list[str]) -> bytes:
    root = etree.Element("reportDoneResponse")
    etree.SubElement(root, "responseCode").text = "0"
    etree.SubElement(root, "reportId").text = str(report_id)
    files = etree.SubElement(root, "files")
    for file_id in file_ids:
        etree.SubElement(files, "fileId").text = file_id
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


@lru_cache(maxsize=4)
def _schema(path: str) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(path, parser=etree.XMLParser(no_network=True)))


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class FakeCyberTip:
    def __init__(
        self,
        username: str = "esp",
        password: str = "secret",
        *,
        schema_file: str | Path | None = None,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.username = username
        self.credentials = base64.b64encode(f"{username}:{password}".encode()).decode()
        self.schema_file = str(schema_file or ncmec_schema_file() or SCHEMA)
        """The schema documents are validated with: NCMEC's file where the tests have it, else ours."""
        self.clock = clock or _utcnow
        self.reports: dict[int, FakeReport] = {}
        self.expired: list[FakeReport] = []
        self.fail_next: dict[str, list[int]] = {}
        """Codes to answer on the next calls of an endpoint (e.g. {"upload": [1110]})."""
        self.lose_files = 0
        """Leave this many files out of the next finish's list (as if NCMEC had lost them)."""
        self.calls: list[str] = []
        self.request_ids: list[tuple[str, str]] = []
        """(endpoint, Request-ID) of every answer, in order."""
        self._next_id = 4_564_654
        self._lock = threading.Lock()
        self._finished = threading.Condition(self._lock)
        self._server: ThreadingHTTPServer | None = None

    @property
    def base(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/ispws"

    def filed(self) -> list[FakeReport]:
        return [r for r in self.reports.values() if r.state == "finished"]

    def wait_filed(self, count: int, until: Callable[[], bool] = lambda: False) -> bool:
        """Wait until ``count`` reports are filed (True) or ``until()`` says to stop (False); ``until``
        is asked whenever a report is filed and after each ``notify``."""
        with self._finished:
            while len(self.filed()) < count:
                if until():
                    return False
                self._finished.wait()
            return True

    def notify(self) -> None:
        """Wake ``wait_filed`` to ask its ``until`` again."""
        with self._finished:
            self._finished.notify_all()

    def __enter__(self) -> FakeCyberTip:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def _answer(self, endpoint: str, status: int, answer: bytes) -> None:
                request_id = uuid.uuid4().hex
                with fake._lock:
                    fake.request_ids.append((endpoint, request_id))
                self.send_response(status)
                self.send_header("Request-ID", request_id)
                if answer:
                    self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def _authorised(self, endpoint: str) -> bool:
                if self.headers.get("Authorization") == f"Basic {fake.credentials}":
                    return True
                self._answer(endpoint, 401, b"")
                return False

            def do_GET(self) -> None:
                endpoint = self.path.rsplit("/", 1)[-1]
                if not self._authorised(endpoint):
                    return
                if endpoint == "xsd":  # the schema it validates with
                    self._answer(endpoint, 200, Path(fake.schema_file).read_bytes())
                    return
                if endpoint != "status":
                    self._answer(endpoint, 404, _response(4000, "invalid request"))
                    return
                with fake._lock:
                    fake.calls.append("status")
                said = f"Remote User : {fake.username}, Remote Ip : {self.client_address[0]}"
                self._answer(endpoint, 200, _response(0, said))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                endpoint = self.path.rsplit("/", 1)[-1]
                if not self._authorised(endpoint):
                    return
                status, answer = fake.handle(endpoint, body, self.headers.get("Content-Type", ""))
                self._answer(endpoint, status, answer)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def __exit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    def _invalid(self, document: bytes) -> str | None:
        """Why NCMEC would refuse ``document`` (None: valid)."""
        try:
            tree = etree.fromstring(document, parser=etree.XMLParser(resolve_entities=False, no_network=True))
        except etree.XMLSyntaxError as exc:
            return f"malformed XML: {exc}"
        schema = _schema(self.schema_file)
        if schema.validate(tree):
            return None
        return "; ".join(line.split(":", 1)[-1] for line in str(schema.error_log).splitlines()[:5])

    def _expire(self, now: dt.datetime) -> None:
        for report in list(self.reports.values()):
            if report.state == "open" and (
                now >= report.opened_at + OPEN_FOR or now >= report.changed_at + IDLE_FOR
            ):
                del self.reports[report.id]
                report.state = "expired"
                self.expired.append(report)

    def handle(self, endpoint: str, body: bytes, content_type: str) -> tuple[int, bytes]:
        with self._lock:
            now = self.clock()
            self._expire(now)
            self.calls.append(endpoint)
            queued = self.fail_next.get(endpoint)
            if queued:
                return 200, _response(queued.pop(0), "injected failure")
            form = _form(body, content_type)
            if endpoint == "submit":
                why = self._invalid(body)
                if why:
                    return 200, _response(4100, f"validation failed: {why}")
                if etree.fromstring(body).tag != "report":
                    return 200, _response(4000, "invalid request")
                self._next_id += 1
                self.reports[self._next_id] = FakeReport(self._next_id, body, now, now)
                return 200, _response(0, reportId=self._next_id)
            if endpoint in ("upload", "finish", "retract"):
                raw = form.get("id", b"")
                report = self.reports.get(int(raw)) if raw.isdigit() else None
                if report is None:
                    return 200, _response(5001, "report does not exist")
                if report.state == "finished":
                    return 200, _response(5102, "report already finished", reportId=report.id)
                if report.state == "retracted":
                    return 200, _response(5101, "report already retracted", reportId=report.id)
                report.changed_at = now
                if endpoint == "upload":
                    data = form.get("file", b"")
                    file_id = uuid.uuid4().hex
                    report.files[file_id] = data
                    report.names[file_id] = form.get("file.name", b"").decode()
                    return 200, _response(
                        0, reportId=report.id, fileId=file_id, hash=hashlib.md5(data).hexdigest()
                    )
                if endpoint == "retract":
                    report.state = "retracted"
                    return 200, _response(0, reportId=report.id)
                report.state = "finished"
                listed = list(report.files)
                if self.lose_files:
                    listed, self.lose_files = listed[self.lose_files :], 0
                self._finished.notify_all()
                return 200, _done(report.id, listed)
            if endpoint == "fileinfo":
                why = self._invalid(body)
                if why:
                    return 200, _response(4100, f"validation failed: {why}")
                tree = etree.fromstring(body)
                if tree.tag != "fileDetails":
                    return 200, _response(4000, "invalid request")
                report = self.reports.get(int(tree.findtext("reportId") or 0))
                if report is None or report.state != "open":
                    return 200, _response(5001, "report does not exist")
                file_id = tree.findtext("fileId") or ""
                if file_id not in report.files:
                    return 200, _response(5002, "file does not exist")
                report.details[file_id] = body
                report.changed_at = now
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
                filename = part.get_filename()
                if filename:
                    out[f"{name}.name"] = filename.encode()
        return out
    return {}
