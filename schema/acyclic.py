"""An execution that its own helpers do not keep alive.

graphql-core gives every execution `async_helpers` (for resolvers that gather or track
asynchronous work), bound methods of the executor stored on the executor: a reference
cycle. So no execution was freed when it ended: it waited, with its result, its rows and
everything they reference (about 150 objects a history page), for a pass of the garbage
collector, which every HTTP request and every subscription event fed (issue 14: the
collector was about a ninth of a send's CPU). Here the helpers reach the executor through
a weak reference, and an execution is freed as soon as nothing uses it.
"""

import asyncio
import inspect
import weakref
from collections.abc import Awaitable, Sequence
from typing import Any

from graphql.pyutils import gather_with_cancel
from graphql.type.definition import GraphQLResolveInfoHelpers
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

# Work tracked for an execution that has already been freed, settled as it would have.
_orphaned: set[asyncio.Future] = set()


def gather(values: Sequence[Awaitable[Any]]) -> Awaitable[list[Any]]:
    return gather_with_cancel(*values)


def weak_helpers(executor: Any) -> GraphQLResolveInfoHelpers:
    ref = weakref.ref(executor)

    def track(values: Sequence[Any]) -> None:
        alive = ref()
        if alive is not None:
            alive.track_async_work(values)
            return
        awaitables = [value for value in values if inspect.isawaitable(value)]
        if awaitables:
            future = asyncio.gather(*awaitables, return_exceptions=True)
            _orphaned.add(future)
            future.add_done_callback(_orphaned.discard)

    return GraphQLResolveInfoHelpers(gather=gather, track=track)


class AcyclicExecutor(StrawberryGraphQLCoreExecutionContext):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.async_helpers = weak_helpers(self)
