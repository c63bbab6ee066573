"""How large a request body may be, and an ASGI guard that refuses a larger one unread.

A JSON request may carry `HTTP_MAX_BODY_SIZE`; a multipart one (an upload) one file of
`UPLOAD_MAX_BYTES` more. `server.serve` applies the same limit inside daphne, before
daphne holds the body; `BodyLimit` applies it in the ASGI app, for any server: a declared
`Content-Length` over it is answered 413 without reading a byte, and a streamed body
stops being read at the limit (Django reads a body completely before a view runs).
"""

import json
from typing import Any

from django.conf import settings

MULTIPART = "multipart/form-data"


def body_limit(content_type: str | bytes | None) -> int:
    if isinstance(content_type, bytes):
        content_type = content_type.decode("latin1")
    media_type = (content_type or "").split(";")[0].strip().lower()
    extra = settings.UPLOAD_MAX_BYTES if media_type == MULTIPART else 0
    return settings.HTTP_MAX_BODY_SIZE + extra


def too_large_body(limit: int) -> bytes:
    return json.dumps(
        {
            "errors": [
                {
                    "message": f"The request body is larger than {limit} bytes.",
                    "extensions": {"code": "PAYLOAD_TOO_LARGE"},
                }
            ]
        }
    ).encode()


class BodyLimit:
    """ASGI middleware for HTTP: 413 for a body over `body_limit`, read no further."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers", []))
        limit = body_limit(headers.get(b"content-type"))
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            return await _refuse(send, limit)
        received = 0
        exceeded = False
        started = False

        async def bounded_receive() -> dict[str, Any]:
            nonlocal received, exceeded
            if exceeded:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Django sees a client that went away and answers nothing; we do.
                    exceeded = True
                    return {"type": "http.disconnect"}
            return message

        async def tracked_send(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, bounded_receive, tracked_send)
        if exceeded and not started:
            await _refuse(send, limit)


async def _refuse(send: Any, limit: int) -> None:
    body = too_large_body(limit)
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
