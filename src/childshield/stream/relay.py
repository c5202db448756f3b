"""A relay on 127.0.0.1 between FFmpeg and the one address the guard checked, for sources whose protocol
FFmpeg would otherwise take elsewhere on its own.

RTSP: FFmpeg's client follows a ``3xx`` reply's ``Location`` to any host, with no option to stop it, and
again on every reconnect.  The relay reads the server's bytes as FFmpeg's reader does (lines ended by
``\\n``, ``\\r`` dropped, a line read up to a NUL, ``$`` at a line's start an interleaved packet,
``Content-Length`` bodies) and cuts the connection before a redirect (or a reply it cannot read the way
FFmpeg would) reaches FFmpeg.  The watch asks for interleaved TCP transport, so the control connection
is the only one.

TLS (rtsps, rtmps): the relay makes the TLS connection itself, verified against the source's host name,
so FFmpeg talks plain RTSP/RTMP to the relay and the server still sees its own name (SNI)."""

from __future__ import annotations

import contextlib
import re
import select
import socket
import ssl
import threading
from collections.abc import Callable
from typing import Protocol

from childshield.errors import Refused

MAX_LINE = 4000
"""Longer header lines are refused: FFmpeg keeps only 4095 characters of a line, and a relay that read
more of it than FFmpeg does could be shown a different reply than FFmpeg sees."""
MAX_HEADER = 64 << 10
MAX_BODY = 1 << 20


class Cut(Refused):
    """Bytes from the server that must not reach FFmpeg: the message says why."""


class Filter(Protocol):
    refused: str
    """Why the filter stopped passing bytes on (the connection is then cut); empty while it passes."""

    def feed(self, data: bytes) -> bytes: ...


class RtspReplies:
    """The server-to-client half of an RTSP connection, framed as FFmpeg frames it; ``feed`` returns the
    bytes that may go on, and raises ``Cut`` at a redirect.  A reply's header is held until it is
    complete, so not even its status line reaches FFmpeg when it is refused."""

    def __init__(self) -> None:
        self.refused = ""
        self.buf = bytearray()
        self.raw = bytearray()  # the header being read, as received
        self.line = bytearray()  # the line being read, without its \r
        self.lines: list[bytes] = []
        self.passing = 0  # bytes of a body or an interleaved packet to pass on as they are
        self.packet_header = False  # after "$": its channel and length (3 bytes) are next

    def feed(self, data: bytes) -> bytes:
        """What of ``data`` may go on now; after a refusal (``refused``), nothing more."""
        out = bytearray()
        if self.refused:
            return b""
        self.buf += data
        try:
            self._read(out)
        except Cut as exc:
            self.refused = str(exc)
            self.buf.clear()
        return bytes(out)

    def _read(self, out: bytearray) -> None:
        buf = self.buf
        while buf:
            if self.passing:
                n = min(self.passing, len(buf))
                out += buf[:n]
                del buf[:n]
                self.passing -= n
                continue
            if self.packet_header:
                if len(buf) < 3:
                    break
                self.passing = int.from_bytes(buf[1:3], "big")
                out += buf[:3]
                del buf[:3]
                self.packet_header = False
                continue
            nl = buf.find(b"\n")
            chunk = bytes(buf if nl < 0 else buf[:nl])
            if not self.line:  # FFmpeg: "$" before any other character of a line but "\r"
                start = len(chunk) - len(chunk.lstrip(b"\r"))
                if start < len(chunk) and chunk[start] == 0x24:
                    if self.lines:
                        raise Cut("the server sent an interleaved packet inside a reply")
                    out += self.raw + buf[: start + 1]
                    del buf[: start + 1]
                    self.raw.clear()
                    self.packet_header = True
                    continue
            self.line += chunk.replace(b"\r", b"")
            if len(self.line) > MAX_LINE:
                raise Cut("the server sent a reply line longer than 4000 characters")
            if nl < 0:
                self.raw += buf
                buf.clear()
                break
            self.raw += buf[: nl + 1]
            del buf[: nl + 1]
            if len(self.raw) > MAX_HEADER:
                raise Cut("the server sent a reply header over 64 KiB")
            line = bytes(self.line).partition(b"\x00")[0]  # FFmpeg reads a line as a C string
            self.line.clear()
            if line:
                self.lines.append(line)
                continue
            self.passing = self._check(self.lines)  # an empty line: the header is complete
            out += self.raw
            self.raw.clear()
            self.lines = []

    @staticmethod
    def _check(lines: list[bytes]) -> int:
        """The body's length after a complete header; raises ``Cut`` for a redirect, or a status FFmpeg
        might read as one (it takes the code with ``atoi``)."""
        if not lines:
            return 0
        words = lines[0].strip(b" \t").split()
        if words and words[0].startswith(b"RTSP/"):
            code = words[1] if len(words) > 1 else b""
            if not re.fullmatch(rb"[1-9][0-9][0-9]", code) or code.startswith(b"3"):
                where = next((ln[9:].strip() for ln in lines if ln[:9].lower() == b"location:"), b"")
                shown = where.decode("ascii", "replace")[:200] or "nowhere"
                reply = lines[0].decode("ascii", "replace")[:100]
                raise Cut(f"the RTSP server answered {reply!r} (to {shown}): redirects are not followed")
        length = 0
        for line in lines[1:]:  # as FFmpeg: a case-insensitive prefix, strtol, the last one wins
            if line[:15].lower() == b"content-length:":
                found = re.match(rb"[ \t\v\f]*([+-]?)([0-9]*)", line[15:])
                digits = found.group(2) if found else b""
                if len(digits) > 7 or (digits and int(digits) > MAX_BODY):
                    raise Cut("the server sent a reply body over 1 MiB")
                length = 0 if not digits or found is None or found.group(1) == b"-" else int(digits)
        return length


class Relay:
    """Listens on 127.0.0.1 (``port``); each connection FFmpeg makes to it is carried to ``address``
    (over TLS verified for ``tls_host`` when given), the server's bytes through a ``Filter`` when one is
    made by ``replies``.  ``cut`` says why a connection was cut, if one was."""

    def __init__(
        self,
        address: tuple[str, int],
        *,
        replies: Callable[[], Filter] | None = None,
        tls_host: str | None = None,
        tls_context: ssl.SSLContext | None = None,
        timeout: float = 15.0,
    ) -> None:
        self.address, self.replies, self.tls_host, self.timeout = address, replies, tls_host, timeout
        self.tls_context = tls_context
        self.cut = ""
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._accept, name="stream-relay", daemon=True)

    def start(self) -> Relay:
        self._thread.start()
        return self

    def __enter__(self) -> Relay:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.close()

    def _keep(self, sock: socket.socket) -> bool:
        with self._lock:
            if self._closed:
                sock.close()
                return False
            self._sockets.append(sock)
            return True

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            if not self._keep(client):
                return
            threading.Thread(
                target=self._carry, args=(client,), name="stream-relay-conn", daemon=True
            ).start()

    def _connect(self) -> socket.socket:
        upstream = socket.create_connection(self.address, timeout=self.timeout)
        if self.tls_host is not None:
            context = self.tls_context or ssl.create_default_context()
            upstream = context.wrap_socket(upstream, server_hostname=self.tls_host)
        upstream.settimeout(None)
        return upstream

    def _carry(self, client: socket.socket) -> None:
        """Both directions in one thread: a TLS connection must not be read and written at once from
        two threads."""
        try:
            upstream = self._connect()
        except (OSError, ssl.SSLError) as exc:
            self.cut = f"cannot connect to {self.address[0]} port {self.address[1]}: {exc}"
            client.close()
            return
        self.connections += 1
        if not self._keep(upstream):
            client.close()
            return
        check = self.replies() if self.replies else None
        try:
            while True:
                ready: list[socket.socket]
                if isinstance(upstream, ssl.SSLSocket) and upstream.pending():
                    ready = [upstream]
                else:
                    ready = select.select([client, upstream], [], [])[0]
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is client:
                        upstream.sendall(data)
                        continue
                    if check is not None:
                        data = check.feed(data)
                    if data:
                        client.sendall(data)
                    if check is not None and check.refused:
                        self.cut = check.refused
                        return
        except (OSError, ValueError):  # either side gone, or the relay closed
            pass
        finally:
            for end in (client, upstream):  # one side gone or cut: both ends close
                _close(end)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            sockets, self._sockets = self._sockets, []
        _close(self._listener)  # shut down first: that wakes the thread waiting in accept()
        for sock in sockets:
            _close(sock)
        if self._thread.is_alive():
            self._thread.join(1)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
