"""Completing a plain object in one pass, without graphql-core's per-field machinery.

A history page is a connection of 50 edges, each an edge, a message and its author: about
150 objects and 500 fields. With each column read directly (schema/columns.py),
graphql-core still completed every one of them field by field: a `Path`, a field lookup,
a resolver call through the middleware, an awaitable check and a type dispatch per field,
and a type check and a field collection per object. Over HTTP that was about two fifths
of the server's CPU for the page (issue 14).

Most of a page needs none of it: every field reads what is already loaded. An object
*plan* says how to complete one selection of one object type when every selected field
is such a read:

- a column of the row, a joined row (`select_related`), a resolver marked
  `unless_loaded` (schema/hops.py) whose data is loaded (a chat list's unread counts,
  last messages and peers), or an attribute of a Strawberry object with no resolver (an
  edge's `node` and `cursor`, a page's `pageInfo`);
- completed as a scalar or enum, a list of them, or an object with a plan of its own;
- `__typename`.

A selection with anything else (arguments, a resolver, an abstract type, `@defer` or
`@stream`, a directive besides `@skip`/`@include`) has no plan and is completed by
graphql-core, whose completion of its fields may still find plans below it.

A plan never reports an error itself. Whatever graphql-core would treat other than by
returning the value (a column not loaded, a null where the schema forbids one, a value
the scalar refuses, a queryset for the optimizer, an awaitable, an iterable other than a
list) makes the whole object go graphql-core's way, which resolves, reports and locates
it exactly as before. Reading is free of side effects, so doing it twice loses nothing.
"""

import weakref
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from graphql import (
    BREAK,
    SKIP,
    DirectiveNode,
    FieldNode,
    GraphQLObjectType,
    GraphQLOutputType,
    OperationDefinitionNode,
    Undefined,
    VariableNode,
    Visitor,
    visit,
)
from graphql.execution.collect_fields import FieldDetailsList
from graphql.pyutils import Path
from graphql.type import GraphQLEnumType, GraphQLList, GraphQLNonNull, GraphQLScalarType
from strawberry import Info
from strawberry.execution.is_awaitable import optimized_is_awaitable
from strawberry.types.cast import TYPE_CAST_ATTRIBUTE
from strawberry.types.field import StrawberryField

from schema.columns import DEFINITION, QUERYSETS, ColumnExecutor, leaf_column

# The only directives a planned field may carry: both were applied when its selection was
# collected, so none is left to act.
COLLECTION_DIRECTIVES = frozenset({"skip", "include"})
# Values that are never awaitable, so need no check (the common attribute values).
PLAIN_VALUES = frozenset({str, int, float, bool, list, tuple, dict, type(None)})

# A planned reader or completer: `(value, path)`, the path of the field it reads or the
# value it completes, None where nothing below asks for it (only a resolver's `info` does).
Complete = Callable[[Any, Path | None], Any]


class Unplanned(Exception):
    """The value needs graphql-core's own completion."""


@dataclass(frozen=True)
class Planned:
    """A reader or a completer, and whether it needs its path."""

    run: Complete
    wants_path: bool = False


# The execution a plan runs in, for the `info` a resolver is given: plans outlive it.
EXECUTING: ContextVar[Any] = ContextVar("planned_execution")
# Plans kept across executions, by the field nodes of the cached documents they complete.
SHARED_PLANS = 1024
_shared: dict[tuple[int, ...], tuple[Any, tuple[FieldNode, ...], Planned | None]] = {}
_variable_directives: dict[int, tuple[Any, bool]] = {}


def collects_by_variables(operation: OperationDefinitionNode, fragments: Any) -> bool:
    """Whether a directive of the operation or its fragments takes a variable
    (`@include(if: $on)`): then which fields a selection holds depends on the request."""
    entry = _variable_directives.get(id(operation))
    if entry is not None and entry[0] is operation:
        return entry[1]
    found = _VariableDirectives()
    visit(operation, found)
    for fragment in fragments.values():
        visit(getattr(fragment, "definition", fragment), found)
    if len(_variable_directives) >= SHARED_PLANS:
        _variable_directives.clear()
    _variable_directives[id(operation)] = (operation, found.any)
    return found.any


class _VariableDirectives(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.any = False

    def enter_directive(self, node: DirectiveNode, *_: Any) -> Any:
        if any(_has_variable(argument.value) for argument in node.arguments or ()):
            self.any = True
            return BREAK
        return SKIP


def _has_variable(value: Any) -> bool:
    if isinstance(value, VariableNode):
        return True
    items = getattr(value, "values", None) or getattr(value, "fields", None) or ()
    return any(_has_variable(getattr(item, "value", item)) for item in items)


class Planner:
    """The plans of one execution, each worked out once on its first object.

    Keyed as graphql-core memoizes its field collection: by the object type and the
    identity of the field details list, which is kept alive beside its plan. Where the
    fields a selection holds cannot depend on the request (no directive takes a variable),
    a plan is also kept for later executions of the same cached document, by the identity
    of its field nodes, which are kept alive beside it: working plans out again was about
    a twentieth of a history page's CPU."""

    def __init__(self, executor: Any) -> None:
        # Weakly: the executor holds its planner, and a cycle would keep every request's
        # execution (its result and everything it read) for the garbage collector.
        self._executor = weakref.ref(executor)
        self.plans: dict[tuple[int, int], tuple[Any, Any, Planned | None]] = {}
        self.shared = not collects_by_variables(executor.operation, executor.fragments)

    def object_plan(
        self, object_type: GraphQLObjectType, field_details_list: FieldDetailsList
    ) -> Planned | None:
        key = (id(object_type), id(field_details_list))
        entry = self.plans.get(key)
        if entry is None or entry[0] is not field_details_list or entry[1] is not object_type:
            plan = self._shared_plan(object_type, field_details_list)
            entry = (field_details_list, object_type, plan)
            self.plans[key] = entry
        return entry[2]

    def _shared_plan(
        self, object_type: GraphQLObjectType, field_details_list: FieldDetailsList
    ) -> Planned | None:
        if not self.shared or any(
            detail.fragment_variable_values is not None for detail in field_details_list
        ):
            return self._object(object_type, field_details_list)
        nodes = tuple(detail.node for detail in field_details_list)
        key = (id(object_type), *map(id, nodes))
        entry = _shared.get(key)
        if (
            entry is not None
            and entry[0] is object_type
            and all(kept is node for kept, node in zip(entry[1], nodes, strict=True))
        ):
            return entry[2]
        plan = self._object(object_type, field_details_list)
        if len(_shared) >= SHARED_PLANS:
            _shared.clear()
        _shared[key] = (object_type, nodes, plan)
        return plan

    def _object(
        self, object_type: GraphQLObjectType, field_details_list: FieldDetailsList
    ) -> Planned | None:
        check = type_check(object_type)
        if check is False:
            return None
        grouped, new_defer_usages, _ = self._executor().collect_subfields(
            object_type, field_details_list
        )
        if new_defer_usages:
            return None
        fields = []
        for key, details in grouped.items():
            field = self._field(object_type, details)
            if field is None:
                return None
            fields.append((key, field))
        wants_path = any(field.wants_path for _, field in fields)
        return Planned(object_completer(check, object_type.name, tuple(fields)), wants_path)

    def _field(self, object_type: GraphQLObjectType, details: FieldDetailsList) -> Planned | None:
        """How to read and complete one selected field, from its object."""
        node = details[0].node
        name = node.name.value
        if any(
            detail.defer_usage is not None
            or any(d.name.value not in COLLECTION_DIRECTIVES for d in detail.node.directives or ())
            for detail in details
        ):
            return None
        if name == "__typename":
            type_name = object_type.name
            return Planned(lambda source, path: type_name)
        field = object_type.fields.get(name)
        if field is None or field.args or node.arguments:
            return None
        # The commonest field, a loaded scalar column, read and completed in one call.
        leaf = leaf_column(object_type, details)
        if leaf is not None:
            return Planned(column_leaf(*leaf))
        read = self._reader(object_type, field, details)
        if read is None:
            return None
        complete = self._value(field.type, details)
        if complete is None:
            return None
        return Planned(
            read_then_complete(read.run, complete.run), read.wants_path or complete.wants_path
        )

    def _reader(
        self, object_type: GraphQLObjectType, field: Any, details: FieldDetailsList
    ) -> Planned | None:
        """How a planned field reads its value, raising `Unplanned` where its resolver
        would do more than read."""
        resolve = field.resolve
        attname = getattr(resolve, "attname", None)  # `columns.column_reader`
        if attname is not None:
            return Planned(column_reader(attname))
        cache_name = getattr(resolve, "cache_name", None)  # `columns.related_reader`
        if cache_name is not None:
            return Planned(related_reader(cache_name))
        when_loaded = getattr(resolve, "when_loaded", None)  # `columns.loaded_reader`
        if when_loaded is not None:
            loaded, resolver, info_name, definition = when_loaded
            if info_name is None:
                return Planned(loaded_reader(loaded, resolver))
            nodes = [detail.node for detail in details]

            def info(path: Path) -> Info:
                raw = EXECUTING.get().build_resolve_info(field, nodes, object_type, path)
                return Info(_raw_info=raw, _field=definition)

            return Planned(loaded_reader(loaded, resolver, info_name, info), wants_path=True)
        definition = field.extensions.get(DEFINITION)
        if getattr(resolve, "_is_default", False) and type(definition) is StrawberryField:
            return Planned(attribute_reader(definition.default_resolver, definition.python_name))
        return None

    def _value(
        self, type_: GraphQLOutputType, details: FieldDetailsList, listed: bool = False
    ) -> Planned | None:
        nullable = not isinstance(type_, GraphQLNonNull)
        named = type_ if nullable else type_.of_type
        if isinstance(named, GraphQLScalarType | GraphQLEnumType):
            return Planned(leaf_completer(named.coerce_output_value, nullable, listed))
        if isinstance(named, GraphQLList):
            item = self._value(named.of_type, details, listed=True)
            if item is None:
                return None
            return Planned(list_completer(item, nullable), item.wants_path)
        if isinstance(named, GraphQLObjectType):
            plan = self.object_plan(named, details)
            if plan is None:
                return None
            return Planned(object_value_completer(plan.run, nullable), plan.wants_path)
        return None  # an interface or a union: graphql-core resolves the type


def type_check(object_type: GraphQLObjectType) -> Callable[[Any], bool] | bool | None:
    """How to tell that a value is of the type without `info`: None when graphql-core
    checks nothing, False when only the type's own check can tell."""
    is_type_of = object_type.is_type_of
    if is_type_of is None:
        return None
    model = getattr(is_type_of, "model", None)  # `columns.model_type_check`
    if model is None:
        return False

    def check(value: Any) -> bool:
        return value.__class__ is model and TYPE_CAST_ATTRIBUTE not in value.__dict__

    return check


def column_reader(attname: str) -> Complete:
    def column(source: Any, path: Path | None) -> Any:
        try:
            return source.__dict__[attname]
        except (KeyError, AttributeError):
            raise Unplanned from None

    return column


def related_reader(cache_name: str) -> Complete:
    def related(source: Any, path: Path | None) -> Any:
        try:
            return source._state.fields_cache[cache_name]
        except (KeyError, AttributeError):
            raise Unplanned from None

    return related


def loaded_reader(
    loaded: Callable[[Any], bool],
    resolver: Callable[..., Any],
    info_name: str | None = None,
    info: Callable[[Path], Info] | None = None,
) -> Complete:
    """A resolver marked `unless_loaded` (schema/hops.py), called when its data is loaded,
    as `columns.loaded_reader` calls it; not loaded, graphql-core hops to a thread for it."""

    def resolved(source: Any, path: Path | None) -> Any:
        if not loaded(source):
            raise Unplanned
        try:
            if info is None:
                result = resolver(source)
            else:
                result = resolver(source, **{info_name: info(path)})
        except Exception:
            raise Unplanned from None  # graphql-core calls it again, and reports it
        if result.__class__ not in PLAIN_VALUES and (
            isinstance(result, QUERYSETS) or optimized_is_awaitable(result)
        ):
            raise Unplanned
        return result

    return resolved


def attribute_reader(default_resolver: Callable[[Any, str], Any], name: str) -> Complete:
    """A Strawberry field with no resolver, as Strawberry reads it. The optimizer's
    middleware acts on what such a field holds only when it is a queryset."""

    def attribute(source: Any, path: Path | None) -> Any:
        try:
            value = default_resolver(source, name)
        except Exception:
            raise Unplanned from None
        if value.__class__ not in PLAIN_VALUES and (
            isinstance(value, QUERYSETS) or optimized_is_awaitable(value)
        ):
            raise Unplanned
        return value

    return attribute


def object_completer(
    check: Callable[[Any], bool] | None, type_name: str, fields: tuple[tuple[str, Planned], ...]
) -> Complete:
    plan = tuple((key, field.run) for key, field in fields)

    def checked(source: Any) -> None:
        if check is None:
            # graphql-core awaits an awaitable list item; a row of a model is none.
            if optimized_is_awaitable(source):
                raise Unplanned
        elif not check(source):
            raise Unplanned

    if not any(field.wants_path for _, field in fields):

        def complete(source: Any, path: Path | None) -> dict[str, Any]:
            checked(source)
            return {key: run(source, None) for key, run in plan}

        return complete

    wanting = tuple((key, field.run, field.wants_path) for key, field in fields)

    def complete_with_paths(source: Any, path: Path | None) -> dict[str, Any]:
        checked(source)
        return {
            key: run(source, Path(path, key, type_name) if wants_path else None)
            for key, run, wants_path in wanting
        }

    return complete_with_paths


def read_then_complete(read: Complete, complete: Complete) -> Complete:
    def field(source: Any, path: Path | None) -> Any:
        return complete(read(source, path), path)

    return field


def column_leaf(attname: str, serialize: Callable[[Any], Any], nullable: bool) -> Complete:
    """`column_reader` in line, then `leaf_completer`: one call fewer a field than
    `read_then_complete`."""
    complete = leaf_completer(serialize, nullable, listed=False)

    def field(source: Any, path: Path | None) -> Any:
        try:
            value = source.__dict__[attname]
        except (KeyError, AttributeError):
            raise Unplanned from None
        return complete(value, path)

    return field


def object_value_completer(plan: Complete, nullable: bool) -> Complete:
    def complete(value: Any, path: Path | None) -> Any:
        if value is None:
            if nullable:
                return None
            raise Unplanned
        return plan(value, path)

    return complete


def leaf_completer(serialize: Callable[[Any], Any], nullable: bool, listed: bool) -> Complete:
    """A scalar or enum. A list's item may be awaitable, which graphql-core awaits; a
    field's value was checked when it was read."""

    def complete(value: Any, path: Path | None) -> Any:
        if value is None:
            if nullable:
                return None
            raise Unplanned
        if listed and value.__class__ not in PLAIN_VALUES and optimized_is_awaitable(value):
            raise Unplanned
        try:
            serialized = serialize(value)
        except Exception:
            raise Unplanned from None
        if serialized is None or serialized is Undefined:
            raise Unplanned
        return serialized

    return complete


def list_completer(item: Planned, nullable: bool) -> Complete:
    run, wants_path = item.run, item.wants_path

    def complete(value: Any, path: Path | None) -> Any:
        if value is None:
            if nullable:
                return None
            raise Unplanned
        if value.__class__ is not list and value.__class__ is not tuple:
            raise Unplanned  # an iterator would be spent by a second completion
        if wants_path:
            return [run(entry, Path(path, index, None)) for index, entry in enumerate(value)]
        return [run(entry, None) for entry in value]

    return complete


class PlannedExecutor(ColumnExecutor):
    """Completes each object whose selection has a plan in one pass; see the module's
    docstring. Sub-executors (`@defer`, `@stream`) and per-event copies of a
    subscription's executor share the plans of the execution they were copied from."""

    _planner: Planner | None = None

    def complete_object_value(
        self,
        return_type: GraphQLObjectType,
        field_details_list: FieldDetailsList,
        info: Any,
        path: Any,
        result: Any,
        position_context: Any,
    ) -> Any:
        if position_context is None:  # not inside a deferred fragment's delivery
            planner = self._planner
            if planner is None:
                planner = self._planner = Planner(self)
            plan = planner.object_plan(return_type, field_details_list)
            if plan is not None:
                executing = EXECUTING.set(self)
                try:
                    return plan.run(result, path)
                except Unplanned:
                    pass
                finally:
                    EXECUTING.reset(executing)
        return super().complete_object_value(
            return_type, field_details_list, info, path, result, position_context
        )
