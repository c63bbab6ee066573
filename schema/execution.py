"""Executing a subscription event once for all the subscribers who asked the same thing.

A message in a room of N subscribers is N executions of the same selection on the same
event, nearly all with the same query text. The executor below keys each event's
execution on what can change its result and hands every subscriber with that key the one
result: the first computes it, the others wait for it.

What can change the result of executing an event:
- the query text and operation;
- the variables used *below* the subscription's root field. Its own arguments
  (`chatId`, `after`) choose the events; they play no part in rendering one, so
  subscribers resuming from different `after`s still share;
- the viewer, but only where the selection reaches a viewer-dependent field: the only
  one reachable from shared events is `User.email` (null except for oneself);
- the host media URLs start with, and the window their signatures are stable in.

Only events that opt in (a `share_key` on the event object) are shared.
"""

import asyncio
import inspect
import json
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    OperationDefinitionNode,
    OperationType,
    VariableNode,
    parse,
    visit,
)
from graphql.language import Node, Visitor

from chat import storage
from schema.plans import PlannedExecutor

# Fields whose value depends on the viewer, by name, anywhere in a shared event.
VIEWER_DEPENDENT_FIELDS = frozenset({"email"})
RESULTS_KEPT = 1024


@dataclass(frozen=True)
class EventSelection:
    """What, besides the event, an operation's result for one event depends on."""

    variables: frozenset[str]
    viewer_dependent: bool

    def key(self, variables: dict[str, Any] | None, viewer: Any) -> tuple:
        values = variables or {}
        used = sorted((name, values.get(name)) for name in self.variables)
        return (
            json.dumps(used, default=str),
            viewer if self.viewer_dependent else None,
        )


class _Names(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.fields: set[str] = set()
        self.variables: set[str] = set()

    def enter_field(self, node: FieldNode, *_: Any) -> None:
        self.fields.add(node.name.value)

    def enter_variable(self, node: VariableNode, *_: Any) -> None:
        self.variables.add(node.name.value)


def _selected(document: DocumentNode, operation_name: str | None) -> list[Node]:
    """The nodes that render an event: below the root fields (not their arguments) and
    every fragment."""
    nodes: list[Node] = []
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    for definition in document.definitions:
        if isinstance(definition, FragmentDefinitionNode):
            nodes.append(definition)
        elif isinstance(definition, OperationDefinitionNode) and (
            len(operations) == 1
            or (definition.name is not None and definition.name.value == operation_name)
        ):
            for selection in definition.selection_set.selections:
                if isinstance(selection, FieldNode):
                    nodes.extend(selection.directives or ())
                    if selection.selection_set is not None:
                        nodes.append(selection.selection_set)
                else:
                    nodes.append(selection)
    return nodes


@lru_cache(maxsize=RESULTS_KEPT)
def event_selection(source: str, operation_name: str | None) -> EventSelection:
    """Parsed once per query text: call only with a document that passed validation."""
    names = _Names()
    for node in _selected(parse(source), operation_name):
        visit(node, names)
    return EventSelection(
        variables=frozenset(names.variables),
        viewer_dependent=bool(names.fields & VIEWER_DEPENDENT_FIELDS),
    )


def render_scope(context: Any) -> tuple:
    """What besides the selection and the viewer a rendering depends on: the host that
    media URLs start with, and the window in which a signed URL stays the same. A result
    kept from an earlier window is not handed out: its URLs may be near expiry."""
    return (getattr(context, "media_base", ""), storage.url_epoch())


_results: "OrderedDict[tuple, Any]" = OrderedDict()


def _remember(key: tuple, value: Any) -> None:
    _results[key] = value
    if len(_results) > RESULTS_KEPT:
        _results.popitem(last=False)


class SharedEventExecutor(PlannedExecutor):
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
        name = self.operation.name.value if self.operation.name else None
        viewer = getattr(getattr(self.context_value, "user", None), "pk", None)
        key = (
            source,
            name,
            *event_selection(source, name).key(self.variable_values, viewer),
            *render_scope(self.context_value),
            share_key,
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
