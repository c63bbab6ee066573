"""Django's ASGI handler, with requests' sync work on a fixed set of threads.

Django gives every request a thread of its own (a new single-thread executor per request),
and a database connection belongs to its thread: with persistent connections
(`DATABASE_CONN_MAX_AGE` above 0) each request's thread left its connection open behind it,
until PostgreSQL refused more ("too many clients", bench/sends.py). Here each request runs
its sync work (ORM, resolvers, middleware that must block) on the least busy of
`HTTP_SYNC_THREADS` threads, so a process holds at most that many connections, and with a
max age they are reused from request to request instead of opened for each.
"""

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import AsyncToSync, ThreadSensitiveContext
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.db import connections


class PooledASGIHandler(ASGIHandler):
    def __init__(self) -> None:
        super().__init__()
        self._threads = [
            ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"django-sync-{n}")
            for n in range(max(1, settings.HTTP_SYNC_THREADS))
        ]
        self._busy = dict.fromkeys(self._threads, 0)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        if getattr(AsyncToSync.executors, "current", None) is not None:
            # Called from sync code through async_to_sync (Django's test client, a sync
            # test): that thread runs the sync work, as Django has it, so the request sees
            # the caller's connection and transaction.
            async with ThreadSensitiveContext():
                await self.handle(scope, receive, send)
            return
        thread = min(self._threads, key=self._busy.__getitem__)
        self._busy[thread] += 1
        try:
            # One call at a time on one thread: what a request's sync work needs (Django
            # would otherwise give it a new thread), shared with the requests before it.
            async with ThreadSensitiveContext(executor=thread):
                await self.handle(scope, receive, send)
        finally:
            self._busy[thread] -= 1

    def close_connections(self) -> None:
        """Close the database connections the threads hold (tests, shutdown)."""
        for thread in self._threads:
            thread.submit(connections.close_all).result()
