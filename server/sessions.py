"""The cookie session a WebSocket's handshake carried, in its scope.

Channels' `SessionMiddlewareStack` copies the scope twice and keeps a wrapper per socket
whose `send` checks whether the session changed on every message, to save it on an HTTP
response a WebSocket never sends; with its futures and lazy object it held about 3 KB of
every open socket (bench/socket_memory.py). Sockets only read the session, and most sign
in with a token and carry no session cookie at all: they get `None`.
"""

from collections.abc import Awaitable, Callable
from importlib import import_module
from typing import Any

from django.conf import settings
from django.http import parse_cookie

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def websocket_session(inner: App) -> App:
    """`inner` with `cookies` and `session` (a session store, or None without a session
    cookie) in its scope, as Channels' middleware puts them there."""
    store = import_module(settings.SESSION_ENGINE).SessionStore

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        cookies: dict[str, str] = {}
        for name, value in scope["headers"]:
            if name == b"cookie":
                cookies = parse_cookie(value.decode("latin1"))
                break
        key = cookies.get(settings.SESSION_COOKIE_NAME)
        session = store(key) if key else None
        await inner({**scope, "cookies": cookies, "session": session}, receive, send)

    return app
