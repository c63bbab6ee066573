"""Database connections on the long-lived thread WebSocket work runs on."""

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from django.db import connections


def drop_broken() -> None:
    """Close this thread's database connections that broke (the database restarted), so
    the next query opens a fresh one.

    Django closes connections at the end of each HTTP request. WebSocket work has no
    requests: it runs on one long-lived thread, which keeps its connection from socket to
    socket (opening one per socket was a tenth of a connect's CPU) and checks it here.
    """
    for connection in connections.all(initialized_only=True):
        if connection.connection is None:
            continue
        if connection.get_autocommit() != connection.settings_dict["AUTOCOMMIT"]:
            connection.close()
        elif connection.errors_occurred:
            if connection.is_usable():
                connection.errors_occurred = False
            else:
                connection.close()


R = TypeVar("R")


def checked(function: Callable[..., R]) -> Callable[..., R]:
    """`function`, run after `drop_broken` in the same thread hop: for the first database
    work a socket does (a token check from the cache left the connection unchecked)."""

    @functools.wraps(function)
    def run(*args: Any, **kwargs: Any) -> R:
        drop_broken()
        return function(*args, **kwargs)

    return run
