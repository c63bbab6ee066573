"""The one WebSocket endpoint: its path, the cookie session its handshake carried, and
its consumer, in one coroutine frame.

Channels' `SessionMiddlewareStack` copies the scope twice and keeps a wrapper per socket
whose `send` checks whether the session changed on every message, to save it on an HTTP
response a WebSocket never sends; with its futures and lazy object it held about 3 KB of
every open socket (bench/socket_memory.py). Sockets only read the session, and most sign
in with a token and carry no session cookie at all: they get `None`.

Channels' `URLRouter` and `as_asgi` then added a scope copy and two suspended coroutines
more to every socket, for its life, to route the one path there is (about 1 KB).
"""

import re
from collections.abc import Awaitable, Callable
from importlib import import_module
from typing import Any

from django.conf import settings
from django.http import parse_cookie

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def add_session(scope: dict[str, Any], store: type) -> dict[str, Any]:
    """`scope` with `cookies` and `session` (a session store, or None without a session
    cookie), as Channels' middleware puts them there.

    Set in place, where middleware would copy the scope: the server made this one for
    this socket alone, and a copy would be kept beside it for the socket's life."""
    cookies: dict[str, str] = {}
    for name, value in scope["headers"]:
        if name == b"cookie":
            cookies = parse_cookie(value.decode("latin1"))
            break
    key = cookies.get(settings.SESSION_COOKIE_NAME)
    scope["cookies"], scope["session"] = cookies, store(key) if key else None
    return scope


def websocket_endpoint(path: str, consumer: type, **initkwargs: Any) -> App:
    """An ASGI app serving WebSockets on `path` (a regular expression, matched without
    the leading slash, as Channels' `URLRouter` matches) with a new `consumer` each."""
    pattern = re.compile(path)
    store = import_module(settings.SESSION_ENGINE).SessionStore

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        root, where = scope.get("root_path", ""), scope["path"]
        if not where.startswith(root) or not pattern.match(where[len(root) :].lstrip("/")):
            # Refused at the handshake (HTTP 403), as Channels' consumers refuse one. An
            # exception, as URLRouter raises, was a 500 with a traceback logged for every
            # handshake a client sent to a wrong path.
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1000})
            return
        await consumer(**initkwargs)(add_session(scope, store), receive, send)

    # Read as Channels' `as_asgi` sets them (tests, the admin's figures).
    app.consumer_class, app.consumer_initkwargs = consumer, initkwargs  # type: ignore[attr-defined]
    return app
