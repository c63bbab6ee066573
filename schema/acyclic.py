"""An execution that its own helpers do not keep alive.

graphql-core gives every execution `async_helpers` (for resolvers that gather or track
asynchronous work), bound methods of the executor stored on the executor: a reference
cycle. So no execution was freed when it ended: it waited, with its result, its rows and
everything they reference (about 150 objects a history page), for a pass of the garbage
collector, which every HTTP request and every subscription event fed (issue 14: the
collector was about a ninth of a send's CPU). Here the helpers are made when a resolver's
info asks for them and are not stored on the executor, which is freed as soon as nothing
uses it.
"""

from collections.abc import Awaitable, Sequence
from typing import Any

from graphql.pyutils import gather_with_cancel
from graphql.type.definition import GraphQLResolveInfoHelpers
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext


def gather(values: Sequence[Awaitable[Any]]) -> Awaitable[list[Any]]:
    return gather_with_cancel(*values)


class AcyclicExecutor(StrawberryGraphQLCoreExecutionContext):
    @property
    def async_helpers(self) -> GraphQLResolveInfoHelpers:
        """Made for each resolver's info that asks, and kept by nothing of the executor's:
        an open subscription's executor holds no helpers either."""
        return GraphQLResolveInfoHelpers(gather=gather, track=self.track_async_work)

    @async_helpers.setter
    def async_helpers(self, helpers: GraphQLResolveInfoHelpers) -> None:
        """graphql-core's own, bound to the executor and stored on it: not kept."""
