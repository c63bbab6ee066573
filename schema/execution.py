"""Executing a subscription event once for all the subscribers who asked the same thing.

A message in a room of N subscribers is N executions of the same selection on the same
event, nearly all with the same query text. The executor below keys each event's
execution on (query text, operation, variables, event) and hands every subscriber with
that key the one result: the first computes it, the others wait for it.

Only events that opt in (a `share_key` on the event object) are shared, and only while
the result cannot depend on who asks: the one viewer-dependent field reachable from them
is `User.email` (null except for oneself), so a query that selects `email` adds the
viewer to the key.
"""

import asyncio
import inspect
import json
from collections import OrderedDict
from typing import Any

from graphql import FieldNode, OperationType, visit
from graphql.language import Visitor
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

# Fields whose value depends on the viewer, by name, anywhere in a shared event.
VIEWER_DEPENDENT_FIELDS = frozenset({"email"})
RESULTS_KEPT = 1024


class _FieldNames(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def enter_field(self, node: FieldNode, *_: Any) -> None:
        self.names.add(node.name.value)


_viewer_dependent: dict[str, bool] = {}
_results: "OrderedDict[tuple, Any]" = OrderedDict()


def _depends_on_viewer(source: str, definitions: list[Any]) -> bool:
    """Whether the operation (with its fragments) selects a viewer-dependent field."""
    if source not in _viewer_dependent:
        names = _FieldNames()
        for definition in definitions:
            visit(definition, names)
        _viewer_dependent[source] = bool(names.names & VIEWER_DEPENDENT_FIELDS)
        if len(_viewer_dependent) > RESULTS_KEPT:
            _viewer_dependent.pop(next(iter(_viewer_dependent)))
    return _viewer_dependent[source]


def _remember(key: tuple, value: Any) -> None:
    _results[key] = value
    if len(_results) > RESULTS_KEPT:
        _results.popitem(last=False)


class SharedEventExecutor(StrawberryGraphQLCoreExecutionContext):
    def execute_operation(self, serially: bool | None = None) -> Any:
        share_key = getattr(self.root_value, "share_key", None)
        location = self.operation.loc
        if (
            share_key is None
            or self.operation.operation is not OperationType.SUBSCRIPTION
            or location is None
        ):
            return super().execute_operation(serially)
        source = location.source.body
        viewer = None
        if _depends_on_viewer(source, [self.operation, *self.fragments.values()]):
            user = getattr(self.context_value, "user", None)
            viewer = getattr(user, "pk", None)
        key = (
            source,
            self.operation.name.value if self.operation.name else None,
            json.dumps(self.variable_values, sort_keys=True, default=str),
            share_key,
            viewer,
        )
        if key in _results:
            _results.move_to_end(key)
            return _shared(_results[key])
        result = super().execute_operation(serially)
        if inspect.isawaitable(result):
            result = asyncio.ensure_future(result)
        _remember(key, result)
        return _shared(result)


def _shared(result: Any) -> Any:
    """Each subscriber awaits the one computation; errors are per-result objects, so a
    failed execution is reported to each alike."""
    if isinstance(result, asyncio.Future):

        async def wait() -> Any:
            return await asyncio.shield(result)

        return wait()
    return result
