"""Serving stored media from the filesystem storage to whoever holds a signed URL.

The API gives a URL only to those who may see the file (members of the chat, for an
attachment), and it expires (`chat.storage`). Here nothing but the URL is checked, so an
`<img src>` works without credentials, and nothing but the names `chat.storage` makes can
be asked for. On S3 the bucket serves presigned URLs itself and this view is not used.
"""

import asyncio
import time
from collections.abc import AsyncIterator
from typing import IO

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.views.decorators.http import require_safe

from chat import storage
from server.views import error_response

CHUNK = 64 * 1024
REFUSALS = {
    "not_found": (404, "No such file.", "NOT_FOUND"),
    "bad_signature": (403, "This link is not valid.", "FORBIDDEN"),
    "expired": (403, "This link has expired: ask the API for a new one.", "LINK_EXPIRED"),
}


@require_safe
async def serve(request: HttpRequest, name: str) -> HttpResponse:
    query = request.GET
    refused = storage.verify(
        name,
        expires=query.get("e", ""),
        label=query.get("n", ""),
        signature=query.get("s", ""),
    )
    if refused is None:
        try:
            file = await asyncio.to_thread(storage.storage().open, name, "rb")
        except FileNotFoundError:  # deleted with its message
            refused = "not_found"
    if refused is not None:
        status, message, code = REFUSALS[refused]
        return _hardened(error_response(status, message, code))
    size = await asyncio.to_thread(lambda: file.size)
    if request.method == "HEAD":
        await asyncio.to_thread(file.close)
        response = HttpResponse(content_type=storage.content_type(name))
    else:
        response = StreamingHttpResponse(_chunks(file), content_type=storage.content_type(name))
    response["Content-Length"] = str(size)
    response["Content-Disposition"] = storage.disposition(name, query.get("n") or None)
    # Browsers may keep it for as long as the URL is valid; shared caches may not.
    max_age = max(0, int(query["e"]) - int(time.time()))
    response["Cache-Control"] = f"private, max-age={max_age}, immutable"
    return _hardened(response)


def _hardened(response: HttpResponse) -> HttpResponse:
    """Never sniffed into something else, never a document that runs scripts."""
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cross-Origin-Resource-Policy"] = "cross-origin"
    return response


async def _chunks(file: IO[bytes]) -> AsyncIterator[bytes]:
    try:
        while chunk := await asyncio.to_thread(file.read, CHUNK):
            yield chunk
    finally:
        await asyncio.to_thread(file.close)
