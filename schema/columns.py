"""Column fields read straight from the row, as Strawberry reads its own basic fields.

strawberry-django gives every field of a Django type a resolver, so that a deferred column
can still be loaded. A column the page's query already loaded goes through five layers to
come out of `row.__dict__`: graphql-core's middleware chain (the optimizer, which acts only
on querysets), Strawberry's `Info` and argument parsing, its extension chain, and
strawberry-django's descriptor checks. A history page of 50 messages reads about 400 such
columns; those layers were about a third of its time (issue 14).

`read_columns_directly` gives each plain column field of the built schema a resolver that
returns the loaded value itself and calls the field's own resolver only when the column is
not loaded, so deferred columns, permissions and custom resolvers behave as before. The
same goes for the row a foreign key points to once it is joined, and for resolvers marked
`unless_loaded` (schema/hops.py) once their data is loaded: a chat list's unread counts,
last messages and peers went through the same layers, 150 times per page.
`ColumnAwareMiddleware` lets those resolvers skip the middleware chain.

`ColumnExecutor` goes one step further for the commonest case, a column of a scalar or
enum type: graphql-core still built a resolve info, looked the field up and completed the
value through four type checks for each of them, about as much again as the five layers
were. It reads and serializes such a column itself, and hands graphql-core anything else,
and anything unusual (a column not loaded, a null where the schema forbids one, a value
the scalar refuses), so errors are raised and located exactly as before.
"""

from collections.abc import Callable
from typing import Any

from django.db.models import QuerySet
from django.db.models.fields.related_descriptors import (
    ForeignKeyDeferredAttribute,
    ForwardManyToOneDescriptor,
    ForwardOneToOneDescriptor,
)
from django.db.models.manager import BaseManager
from django.db.models.query_utils import DeferredAttribute
from graphql import GraphQLObjectType, GraphQLSchema, Undefined
from graphql.execution.collect_fields import FieldDetailsList
from graphql.execution.middleware import MiddlewareManager
from graphql.pyutils import Path
from graphql.type import GraphQLEnumType, GraphQLNonNull, GraphQLScalarType
from strawberry import Info
from strawberry.types.base import StrawberryObjectDefinition
from strawberry.types.cast import TYPE_CAST_ATTRIBUTE
from strawberry_django.fields.field import StrawberryDjangoField

from schema.acyclic import AcyclicExecutor

# Descriptors whose `__get__` returns `row.__dict__[attname]` once it is loaded. Subclasses
# such as `FileDescriptor` wrap the value, so only these exact types qualify.
PLAIN_DESCRIPTORS = (DeferredAttribute, ForeignKeyDeferredAttribute)
# A foreign key's row, cached on the instance once joined (`select_related`).
RELATED_DESCRIPTORS = (ForwardManyToOneDescriptor, ForwardOneToOneDescriptor)
# What the optimizer middleware acts on, so what a direct reader must not hand out itself.
QUERYSETS = (QuerySet, BaseManager)
DEFINITION = "strawberry-definition"


def column_reader(attname: str, resolve: Callable[..., Any]) -> Callable[..., Any]:
    """The loaded column's value, or the field's own resolver when it was not loaded."""

    def read(source: Any, info: Any, **kwargs: Any) -> Any:
        try:
            return source.__dict__[attname]
        except (KeyError, AttributeError):
            return resolve(source, info, **kwargs)

    read.reads_directly = True  # type: ignore[attr-defined]
    read.__wrapped__ = resolve  # type: ignore[attr-defined]  # the long way
    read.attname = attname  # type: ignore[attr-defined]
    return read


def related_reader(cache_name: str, resolve: Callable[..., Any]) -> Callable[..., Any]:
    """The related row the page's query joined, or the field's own resolver when it was
    not joined. As strawberry-django does, a cached `None` (no related row) is returned."""

    def read(source: Any, info: Any, **kwargs: Any) -> Any:
        try:
            return source._state.fields_cache[cache_name]
        except (KeyError, AttributeError):
            return resolve(source, info, **kwargs)

    read.reads_directly = True  # type: ignore[attr-defined]
    read.__wrapped__ = resolve  # type: ignore[attr-defined]  # the long way
    read.cache_name = cache_name  # type: ignore[attr-defined]
    return read


def loaded_reader(field: Any, resolve: Callable[..., Any]) -> Callable[..., Any] | None:
    """For a resolver marked `unless_loaded` (schema/hops.py): call it straight away when
    its data is loaded, as a column is read, and the long way otherwise."""
    base = field.base_resolver
    marked = getattr(base.wrapped_func, "when_loaded", None)
    if marked is None or base.is_async or not base.self_parameter:
        return None
    if base.root_parameter or base.parent_parameter:
        return None
    loaded, resolver = marked
    info_name = base.info_parameter.name if base.info_parameter else None

    def read(source: Any, info: Any, **kwargs: Any) -> Any:
        if loaded(source):
            if info_name is None:
                result = resolver(source)
            else:
                result = resolver(source, **{info_name: Info(_raw_info=info, _field=field)})
            if not isinstance(result, QUERYSETS):
                return result
        return resolve(source, info, **kwargs)

    read.reads_directly = True  # type: ignore[attr-defined]
    read.__wrapped__ = resolve  # type: ignore[attr-defined]  # the long way
    read.when_loaded = (loaded, resolver, info_name, field)  # type: ignore[attr-defined]
    return read


def plain_reader(field: Any, model: Any, resolve: Callable[..., Any]) -> Callable[..., Any] | None:
    """A direct reader for a field that reads its row, if that is all it does: a column,
    the row a foreign key points to, or a resolver that says when its data is loaded."""
    if type(field) is not StrawberryDjangoField or model is None:
        return None
    if field.extensions or field.permission_classes or field.arguments or field.directives:
        return None
    if field.base_resolver is not None:
        return loaded_reader(field, resolve)
    descriptor = getattr(model, field.django_name or field.python_name, None)
    if type(descriptor) in PLAIN_DESCRIPTORS and not field.is_relation:
        return column_reader(descriptor.field.attname, resolve)
    if type(descriptor) in RELATED_DESCRIPTORS:
        return related_reader(descriptor.field.cache_name, resolve)
    return None


def model_type_check(model: type, check: Callable[..., bool]) -> Callable[..., bool]:
    """strawberry-django's `is_type_of`, answered at once for a row of the type's own model.

    graphql-core asks it of every object it completes. strawberry-django's looks for a
    `strawberry.cast` with `getattr`, which raises and catches an `AttributeError` on a
    model instance, then walks `super()`: about a tenth of completing a chat list. A row
    of exactly the model, not cast, is the type's; anything else is asked the long way."""

    def is_type_of(obj: Any, info: Any) -> bool:
        if obj.__class__ is model and TYPE_CAST_ATTRIBUTE not in obj.__dict__:
            return True
        return check(obj, info)

    is_type_of.__wrapped__ = check  # type: ignore[attr-defined]
    is_type_of.model = model  # type: ignore[attr-defined]
    return is_type_of


def _inherits_type_check(origin: type) -> bool:
    """Whether a base class has an `is_type_of` of its own, which strawberry-django's also
    asks: then every answer goes the long way."""
    return any("is_type_of" in vars(base) for base in origin.__mro__[1:])


def read_columns_directly(schema: GraphQLSchema) -> int:
    """Give every plain column field of the schema's Django types a direct reader, and
    each such type a direct type check for its own model's rows."""
    replaced = 0
    for graphql_type in schema.type_map.values():
        if not isinstance(graphql_type, GraphQLObjectType):
            continue
        definition = graphql_type.extensions.get(DEFINITION)
        if not isinstance(definition, StrawberryObjectDefinition):
            continue
        django = getattr(definition.origin, "__strawberry_django_definition__", None)
        model = getattr(django, "model", None)
        check = graphql_type.is_type_of
        if model is not None and check is not None and not _inherits_type_check(definition.origin):
            graphql_type.is_type_of = model_type_check(model, check)
        for graphql_field in graphql_type.fields.values():
            field = graphql_field.extensions.get(DEFINITION)
            if graphql_field.resolve is None:
                continue
            reader = plain_reader(field, model, graphql_field.resolve)
            if reader is not None:
                graphql_field.resolve = reader
                replaced += 1
    return replaced


class ColumnAwareMiddleware(MiddlewareManager):
    """graphql-core's middleware, except around direct readers: the only middleware, the
    optimizer's, acts on querysets, and a direct reader never returns one."""

    def get_field_resolver(self, field_resolver: Callable[..., Any]) -> Callable[..., Any]:
        if getattr(field_resolver, "reads_directly", False):
            return field_resolver
        return super().get_field_resolver(field_resolver)


# How `ColumnExecutor` completes one selected field: the column's attname, the scalar's
# serializer, and whether the schema lets the field be null.
Leaf = tuple[str, Callable[[Any], Any], bool]


def leaf_column(
    parent_type: GraphQLObjectType, field_details_list: FieldDetailsList
) -> Leaf | None:
    """How to complete a selected field without graphql-core, if it is a plain column of a
    scalar or enum type, selected without arguments."""
    node = field_details_list[0].node
    field = parent_type.fields.get(node.name.value)
    if field is None or field.args or node.arguments:
        return None
    attname = getattr(field.resolve, "attname", None)  # only `column_reader` sets it
    if attname is None:
        return None
    nullable = not isinstance(field.type, GraphQLNonNull)
    named = field.type if nullable else field.type.of_type
    if not isinstance(named, GraphQLScalarType | GraphQLEnumType):
        return None  # a list of scalars, an object: graphql-core's own completion
    return attname, named.coerce_output_value, nullable


class ColumnExecutor(AcyclicExecutor):
    """Completes loaded scalar columns directly; see the module's docstring.

    How each selected field is completed is worked out once per execution, on its first
    row, and kept by the field's selection (graphql-core reuses the same selection object
    for every item of a list). Per-event copies of a subscription's executor start with
    none, so an idle subscription holds nothing for it."""

    _leaves: dict[int, tuple[FieldDetailsList, GraphQLObjectType, Leaf | None]] | None = None

    def execute_field(
        self,
        parent_type: GraphQLObjectType,
        source: Any,
        field_details_list: FieldDetailsList,
        path: Path,
        position_context: Any,
    ) -> Any:
        leaves = self._leaves
        if leaves is None:
            leaves = self._leaves = {}
        entry = leaves.get(id(field_details_list))
        if entry is None or entry[0] is not field_details_list or entry[1] is not parent_type:
            entry = (field_details_list, parent_type, leaf_column(parent_type, field_details_list))
            leaves[id(field_details_list)] = entry
        leaf = entry[2]
        if leaf is not None:
            attname, serialize, nullable = leaf
            try:
                value = source.__dict__[attname]
            except (KeyError, AttributeError):
                pass  # not loaded: the field's resolver loads it
            else:
                if value is None:
                    if nullable:
                        return None
                else:
                    try:
                        serialized = serialize(value)
                    except Exception:  # graphql-core raises it again, located
                        serialized = None
                    if serialized is not None and serialized is not Undefined:
                        return serialized
        return super().execute_field(
            parent_type, source, field_details_list, path, position_context
        )
