"""Calls to Redis made on one event loop while an earlier batch is on its way go out
together in the next one, as one script call.

A round trip through redis-py's asyncio client costs about 0.2 ms of CPU, more than a
blocking one. In a reconnect storm thousands of sockets each charge the query budget and
take a presence lease at once; batched, they share a few round trips. A lone call still
goes out at once, alone.
"""

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class Coalescer(Generic[Item, Result]):
    """`send` takes a batch of items and returns one result per item, in order. It runs
    in a task of its own, so a caller cancelled (a client gone) stops no one else's."""

    def __init__(
        self,
        send: Callable[[list[Item]], Awaitable[Sequence[Result]]],
        *,
        largest: int = 1000,
    ) -> None:
        self.send = send
        self.largest = largest
        self.waiting: list[tuple[Item, asyncio.Future[Result]]] = []
        self.sender: asyncio.Task[None] | None = None

    async def call(self, item: Item) -> Result:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self.waiting.append((item, future))
        if self.sender is None:
            self.sender = loop.create_task(self._send())
        return await future

    async def _send(self) -> None:
        try:
            while self.waiting:
                batch = self.waiting[: self.largest]
                del self.waiting[: self.largest]
                try:
                    results = await self.send([item for item, _ in batch])
                except BaseException as error:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(error)
                    if not isinstance(error, Exception):
                        raise
                else:
                    for (_, future), result in zip(batch, results, strict=True):
                        if not future.done():
                            future.set_result(result)
        finally:
            self.sender = None
