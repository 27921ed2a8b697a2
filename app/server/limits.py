"""A bound on request bodies, counted as they arrive (a missing or false Content-Length too)."""

from __future__ import annotations

import json

from app.server.errors import error_body


class BodyLimit:
    """Pure ASGI middleware: the body is read (up to `max_bytes`) before the endpoint runs;
    a larger one gets 413 without being read further."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(send)
        parts, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left
                return None
            parts.append(message.get("body", b""))
            size += len(parts[-1])
            if size > self.max_bytes:
                return await self._refuse(send)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(parts), "more_body": False}
            return await receive()  # from here on: the disconnect, when it comes

        return await self.app(scope, replay, send)

    async def _refuse(self, send) -> None:
        mib = self.max_bytes / 2**20
        body = json.dumps(error_body(413, f"The request is larger than this server accepts ({mib:g} MiB).")).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
