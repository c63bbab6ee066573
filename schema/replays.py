"""Catch-up reads shared by the subscriptions that ask for the same thing at once.

After a reconnect storm thousands of sockets resubscribe to the same chat with the same
`after` (the revision they had all seen when they were dropped), and each one read the
same changes from the database: the largest part of a storm's CPU (bench/reconnect.py).
Here the subscriptions waiting for the same read share one query.

Sharing must not lose an event. A subscription joins the chat's group before it asks for a
catch-up, and joins a read only while that read's query has not started: everything the
query's snapshot misses was committed after it started, so published after the
subscription was listening, which delivers it live. A read that has started serves only
those already waiting; a later one waits for the next.
"""

import asyncio
from collections.abc import Callable, Hashable
from typing import Any

from asgiref.sync import sync_to_async


class _Read:
    __slots__ = ("result", "started")

    def __init__(self) -> None:
        self.started = False
        self.result: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()


class SharedReads:
    """Runs `query(*key)` in Django's sync thread once for all callers waiting on `key`."""

    def __init__(self, query: Callable[..., Any]) -> None:
        self._query = query
        self._waiting: dict[Hashable, _Read] = {}
        self.queries = 0  # for tests and benches

    async def read(self, *key: Hashable) -> list[Any]:
        pending = self._waiting.get(key)
        if pending is None or pending.started:
            pending = self._waiting[key] = _Read()
            asyncio.get_running_loop().create_task(self._run(key, pending))
        # Shielded: one caller going away must not cancel the read the others wait for.
        return await asyncio.shield(pending.result)

    async def _run(self, key: tuple, pending: _Read) -> None:
        try:
            rows = await sync_to_async(self._fetch)(key, pending)
        except asyncio.CancelledError:
            pending.result.cancel()
            raise
        except Exception as error:
            pending.result.set_exception(error)
            # Retrieved here too, or the loop logs it when every caller has gone.
            pending.result.exception()
        else:
            pending.result.set_result(rows)
        finally:
            if self._waiting.get(key) is pending:
                del self._waiting[key]

    def _fetch(self, key: tuple, pending: _Read) -> list[Any]:
        # Set on the thread, just before the query: a caller that saw it unset joined
        # earlier, so was listening before the query's snapshot was taken.
        pending.started = True
        self.queries += 1
        return list(self._query(*key))


_reads: dict[tuple[asyncio.AbstractEventLoop, Callable[..., Any]], SharedReads] = {}


def shared(query: Callable[..., Any]) -> SharedReads:
    """This event loop's shared reads of `query` (tests run one loop per test)."""
    loop = asyncio.get_running_loop()
    found = _reads.get((loop, query))
    if found is None:
        for gone in [k for k in _reads if k[0] is not loop]:
            del _reads[gone]
        found = _reads[(loop, query)] = SharedReads(query)
    return found
