"""The CyberTipline ESP reporting API over HTTP (Basic auth): status, submit, upload, fileinfo, finish,
retract.

Every call answers a :class:`Response` (NCMEC's ``responseCode`` 0 is success) with the ``Request-ID``
NCMEC's answer carried (their support desk finds a call by it); ``finish`` answers a
``reportDoneResponse`` listing the files NCMEC holds.  A 401 without a body, an answer that is not XML,
or a network failure raises :class:`ApiError`."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from lxml import etree

from childshield import __version__
from childshield.errors import Unavailable

PRODUCTION = "https://report.cybertip.org/ispws"
TEST = "https://exttest.cybertip.org/ispws"
RETRYABLE = frozenset({1000, 1100, 1110, 1111, 1300})
"""Server-side failures worth another try later."""
STOP = frozenset({2000, 3000, 3100, 3300})
"""Credentials or permissions: nothing will work until a person fixes them."""
ALREADY_FINISHED, ALREADY_RETRACTED, NO_SUCH_REPORT = 5102, 5101, 5001


class ApiError(Unavailable):
    """No usable answer (network, authentication, not XML): ``retry`` says whether later may do better."""

    def __init__(self, message: str, *, retry: bool, request_id: str | None = None) -> None:
        super().__init__(message + (f" (Request-ID {request_id})" if request_id else ""))
        self.retry = retry
        self.request_id = request_id


@dataclass(frozen=True)
class Response:
    code: int
    description: str = ""
    report_id: int | None = None
    file_id: str | None = None
    hash: str | None = None
    request_id: str | None = None
    """NCMEC's ``Request-ID`` header of the answer."""
    files: tuple[str, ...] | None = None
    """``finish``: the file ids NCMEC lists in its ``reportDoneResponse`` (None: no such list)."""

    @property
    def ok(self) -> bool:
        return self.code == 0

    def said(self) -> str:
        """The answer as an error message quotes it (code, description, Request-ID)."""
        text = f"{self.code} {self.description}".strip()
        return text + (f" (Request-ID {self.request_id})" if self.request_id else "")


class CyberTipClient:
    def __init__(self, base: str, username: str, password: str, *, timeout: float = 60.0) -> None:
        self.base = base.rstrip("/")
        self._http = httpx.Client(
            auth=(username, password),
            timeout=timeout,
            headers={"User-Agent": f"childshield/{__version__}"},
            trust_env=False,
        )

    def close(self) -> None:
        self._http.close()

    def _call(self, path: str, method: str = "POST", **kwargs: object) -> Response:
        try:
            answer = self._http.request(method, f"{self.base}{path}", **kwargs)  # type: ignore[arg-type]
        except httpx.HTTPError as exc:
            raise ApiError(f"{type(exc).__name__} calling {path}", retry=True) from None
        request_id = _request_id(answer)
        if answer.status_code == 401:
            raise ApiError(
                "authentication failed (HTTP 401): check the credentials", retry=False, request_id=request_id
            )
        try:
            root = etree.fromstring(
                answer.content, parser=etree.XMLParser(resolve_entities=False, no_network=True)
            )
        except etree.XMLSyntaxError:
            raise ApiError(
                f"HTTP {answer.status_code} from {path} without an XML answer",
                retry=True,
                request_id=request_id,
            ) from None
        code = root.findtext("responseCode")
        report = root.findtext("reportId")
        files = root.find("files") if root.tag == "reportDoneResponse" else None
        return Response(
            code=int(code) if code and code.strip().lstrip("-").isdigit() else -1,
            description=root.findtext("responseDescription") or "",
            report_id=int(report) if report and report.strip().isdigit() else None,
            file_id=root.findtext("fileId"),
            hash=root.findtext("hash"),
            request_id=request_id,
            files=tuple((f.text or "").strip() for f in files.findall("fileId"))
            if files is not None
            else None,
        )

    def schema(self) -> bytes:
        """``GET /xsd``: NCMEC's schema file of the documents (what ``CHILDSHIELD_CYBERTIP_XSD`` names)."""
        try:
            answer = self._http.get(f"{self.base}/xsd")
        except httpx.HTTPError as exc:
            raise ApiError(f"{type(exc).__name__} calling /xsd", retry=True) from None
        request_id = _request_id(answer)
        if answer.status_code != 200:
            raise ApiError(
                f"HTTP {answer.status_code} from /xsd", retry=answer.status_code >= 500, request_id=request_id
            )
        try:
            etree.XMLSchema(
                etree.fromstring(
                    answer.content, parser=etree.XMLParser(resolve_entities=False, no_network=True)
                )
            )
        except (etree.XMLSyntaxError, etree.XMLSchemaParseError) as exc:
            raise ApiError(
                f"/xsd did not answer an XML schema: {exc}", retry=False, request_id=request_id
            ) from None
        return answer.content

    def status(self) -> Response:
        """``GET /status``: whether the service answers and takes the credentials (the description
        names the account and the address NCMEC sees)."""
        return self._call("/status", "GET")

    def submit(self, document: bytes) -> Response:
        return self._call("/submit", content=document, headers={"Content-Type": "text/xml; charset=utf-8"})

    def upload(self, report_id: int, name: str, data: bytes) -> Response:
        return self._call("/upload", data={"id": str(report_id)}, files={"file": (name, data)})

    def file_info(self, document: bytes) -> Response:
        return self._call("/fileinfo", content=document, headers={"Content-Type": "text/xml; charset=utf-8"})

    def finish(self, report_id: int) -> Response:
        return self._call("/finish", data={"id": str(report_id)})

    def retract(self, report_id: int) -> Response:
        return self._call("/retract", data={"id": str(report_id)})


def _request_id(answer: httpx.Response) -> str | None:
    value = answer.headers.get("Request-ID", "").strip()
    return value[:100] if value and value.isprintable() else None
