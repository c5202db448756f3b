"""Request bodies refused over their limit before anything parses them.

FastAPI reads and parses a JSON body before a route's code (or its dependencies) runs, so a limit checked
there comes after the memory is spent: a 62 MB lookup became 870 MB of Python objects before its
10,000-signal check.  This middleware stands in front: a declared ``Content-Length`` over the limit is
refused without reading a byte, and a body sent without one (chunked) is read up to the limit and refused
as soon as it passes it.  The route then parses what was read, as before (its OpenAPI schema unchanged).
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimit:
    def __init__(self, app: ASGIApp, *, paths: dict[str, int], json_bytes: int) -> None:
        """``paths``: a limit per exact path; ``json_bytes``: for every other JSON body."""
        self.app = app
        self.paths = paths
        self.json_bytes = json_bytes

    def _limit(self, scope: Scope) -> int | None:
        limit = self.paths.get(scope["path"])
        if limit is not None:
            return limit
        for name, value in scope["headers"]:
            if name == b"content-type" and value.split(b";")[0].strip().lower() == b"application/json":
                return self.json_bytes
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope)
        if limit is None:
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await _refuse(send, limit)  # not one byte of the body read
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _refuse(send, limit)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body: list[Message] = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]
        del chunks

        async def replay() -> Message:
            return body.pop() if body else await receive()

        await self.app(scope, replay, send)


async def _refuse(send: Send, limit: int) -> None:
    payload = json.dumps({"detail": f"the request body is over the limit of {limit:,} bytes"}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"connection", b"close"),  # the rest of the body is not read
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
