"""Django's ASGI handler, with requests' sync work on a fixed set of threads.

Django gives every request a thread of its own (a new single-thread executor per request),
and a database connection belongs to its thread: with persistent connections
(`DATABASE_CONN_MAX_AGE` above 0) each request's thread left its connection open behind it,
until PostgreSQL refused more ("too many clients", bench/sends.py). Here each request runs
its sync work (ORM, resolvers, middleware that must block) on the least busy of
`HTTP_SYNC_THREADS` threads, so a process holds at most that many connections, and with a
max age they are reused from request to request instead of opened for each.

Django also hops to that thread twice per request, whatever the request does: once for
`request_started` (its receivers reset the query log and close an obsolete connection) and
once to close the response (`request_finished`: the same upkeep). Those two hops were a
quarter of a signed-in `{ __typename }`'s CPU (issue 14). Both are about the thread's
connection, so here `request_started`'s receivers run in the request's first job on its
thread, before the job. `request_finished`'s go to the thread only if the request left its
connection needing them at once (no max age, an error, an unfinished transaction); a
connection merely past its max age is closed by the next request's start, as Django
leaves an idle thread's connection open until then anyway. Otherwise the response is
closed where it is. That holds while the two signals have only Django's own receivers;
with any other, a request takes Django's way.

A request is freed as soon as it is answered, not by the garbage collector: Django's
handler re-raised daphne's `http.disconnect` (queued after every response) in a frame that
held the request, and the middleware's `user`, `auser` and message storage refer back to
it. Each request left about a hundred objects in cycles; what outlived two young
collections set off a full one every few hundred requests (bench/RESULTS.md, session 24).
"""

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from functools import partial
from typing import Any

from asgiref.sync import AsyncToSync, ThreadSensitiveContext, sync_to_async
from django.conf import settings
from django.core import signals
from django.core.cache import close_caches
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.base import reset_urlconf
from django.db import close_old_connections, connections, reset_queries
from django.http import HttpResponseBase
from django.urls import set_script_prefix

# Django's receivers of the request signals: upkeep of the thread's connection, query log,
# caches and URLconf, none of which a request that ran nothing on the thread has touched.
STARTED_UPKEEP = frozenset({reset_queries, close_old_connections})
FINISHED_UPKEEP = frozenset({close_old_connections, close_caches, reset_urlconf})

# What Django's middleware hangs on a request that refers back to it: `user`'s closure,
# `auser`'s partial, the message storage. Cycles, so every request (scope, body, response)
# waited for the garbage collector; dropped once the response is closed and sent, when
# nothing may use the request any more.
BACK_REFERENCES = ("user", "auser", "_messages")


def _only(signal: signals.Signal, sender: type, receivers: frozenset[Callable]) -> bool:
    # `_live_receivers` is how `Signal.send` itself lists them: (sync, async).
    sync, asynchronous = signal._live_receivers(sender)
    return not asynchronous and all(receiver in receivers for receiver in sync)


class RequestWork(Executor):
    """One request's jobs on its thread; the first carries `request_started`'s upkeep.

    After each job it notes whether the thread's connections were left needing
    `request_finished`'s upkeep at once (`left_clean`)."""

    def __init__(self, thread: ThreadPoolExecutor) -> None:
        self._thread = thread
        self.upkeep: Callable[[], Any] | None = None
        self.left_clean = True  # so far: a request that ran no job left nothing to see to

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        upkeep, self.upkeep = self.upkeep, None
        return self._thread.submit(self._run, upkeep, fn, args, kwargs)

    def _run(
        self, upkeep: Callable[[], Any] | None, fn: Callable[..., Any], args: Any, kwargs: Any
    ) -> Any:
        if upkeep is not None:
            upkeep()
        try:
            return fn(*args, **kwargs)
        finally:
            self.left_clean = _left_clean()


def _left_clean() -> bool:
    """Whether the thread's connections can wait for the next request's start to be looked
    after: that is so for one merely past its max age, as Django leaves an idle thread's
    connection open anyway. Not for one that must close after every request (no max age,
    or Django's pool), nor one an error or an unfinished transaction may have broken,
    which another request's job on this thread would otherwise meet."""
    for connection in connections.all(initialized_only=True):
        if connection.connection is None:
            continue
        settings_dict = connection.settings_dict
        if (
            settings_dict["CONN_MAX_AGE"] == 0
            or connection.errors_occurred
            or connection.in_atomic_block
            or connection.autocommit != settings_dict["AUTOCOMMIT"]
        ):
            return False
    return True


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
            work = RequestWork(thread)
            async with ThreadSensitiveContext(executor=work):
                if _only(signals.request_started, type(self), STARTED_UPKEEP) and _only(
                    signals.request_finished, type(self), FINISHED_UPKEEP
                ):
                    await self._handle(scope, receive, send, work)
                else:
                    await self.handle(scope, receive, send)
        finally:
            self._busy[thread] -= 1

    async def _handle(self, scope: dict[str, Any], receive: Any, send: Any, work: RequestWork):
        """Django's `ASGIHandler.handle` (5.2), with the request signals' upkeep moved as
        the module's docstring says."""
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        work.upkeep = partial(signals.request_started.send, sender=type(self), scope=scope)
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            body_file.close()
            await self.send_response(error_response, send)
            await self._close(error_response, work)
            return

        async def process_request(request: Any, send: Any) -> HttpResponseBase:
            response = await self.run_get_response(request)
            # The client may disconnect while the response is sent.
            with contextlib.suppress(asyncio.CancelledError):
                await self.send_response(response, send)
            return response

        # The client's disconnect cancels the view, as in Django: first the listener,
        # which raises nothing unexpected, then the request.
        tasks = [
            asyncio.create_task(self.listen_for_disconnect(receive)),
            asyncio.create_task(process_request(request, send)),
        ]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                continue
            # `exception()`, where Django calls `result()`: re-raising the listener's
            # RequestAborted (daphne sends `http.disconnect` after every response) put this
            # frame in its traceback, a cycle (frame, `tasks`, task, exception) that kept
            # the whole request for the collector.
            error = task.exception()
            if error is not None and not isinstance(error, RequestAborted):
                if isinstance(error, AssertionError):
                    body_file.close()
                raise error
        try:
            response = tasks[1].result()
        except asyncio.CancelledError:
            await signals.request_finished.asend(sender=type(self))
        else:
            await self._close(response, work)
        body_file.close()
        for name in BACK_REFERENCES:
            request.__dict__.pop(name, None)

    @staticmethod
    async def _close(response: HttpResponseBase, work: RequestWork) -> None:
        """Close the response (and so send `request_finished`) on the request's thread if
        the request left its connection needing that; otherwise here: the upkeep has
        nothing of this request's to see to at once, and the event loop's thread holds no
        database connection."""
        if not work.left_clean:
            await sync_to_async(response.close)()
        else:
            response.close()

    def close_connections(self) -> None:
        """Close the database connections the threads hold (tests, shutdown)."""
        for thread in self._threads:
            thread.submit(connections.close_all).result()
