"""Column fields read straight from the row, as Strawberry reads its own basic fields.

strawberry-django gives every field of a Django type a resolver, so that a deferred column
can still be loaded. A column the page's query already loaded goes through five layers to
come out of `row.__dict__`: graphql-core's middleware chain (the optimizer, which acts only
on querysets), Strawberry's `Info` and argument parsing, its extension chain, and
strawberry-django's descriptor checks. A history page of 50 messages reads about 400 such
columns; those layers were about a third of its time (issue 14).

`read_columns_directly` gives each plain column field of the built schema a resolver that
returns the loaded value itself and calls the field's own resolver only when the column is
not loaded, so deferred columns, permissions and custom resolvers behave as before.
`ColumnAwareMiddleware` lets those resolvers skip the middleware chain.
"""

from collections.abc import Callable
from typing import Any

from django.db.models.fields.related_descriptors import ForeignKeyDeferredAttribute
from django.db.models.query_utils import DeferredAttribute
from graphql import GraphQLObjectType, GraphQLSchema
from graphql.execution.middleware import MiddlewareManager
from strawberry.types.base import StrawberryObjectDefinition
from strawberry_django.fields.field import StrawberryDjangoField

# Descriptors whose `__get__` returns `row.__dict__[attname]` once it is loaded. Subclasses
# such as `FileDescriptor` wrap the value, so only these exact types qualify.
PLAIN_DESCRIPTORS = (DeferredAttribute, ForeignKeyDeferredAttribute)
DEFINITION = "strawberry-definition"


def column_reader(attname: str, resolve: Callable[..., Any]) -> Callable[..., Any]:
    """The loaded column's value, or the field's own resolver when it was not loaded."""

    def read(source: Any, info: Any, **kwargs: Any) -> Any:
        try:
            return source.__dict__[attname]
        except (KeyError, AttributeError):
            return resolve(source, info, **kwargs)

    read.reads_column = True  # type: ignore[attr-defined]
    return read


def plain_column(field: Any, model: Any) -> str | None:
    """The attname a field reads unchanged from its row, if that is all it does."""
    if type(field) is not StrawberryDjangoField or model is None:
        return None
    if field.base_resolver is not None or field.extensions or field.permission_classes:
        return None
    if field.is_relation or field.arguments or field.directives:
        return None
    descriptor = getattr(model, field.django_name or field.python_name, None)
    if type(descriptor) not in PLAIN_DESCRIPTORS:
        return None
    return descriptor.field.attname


def read_columns_directly(schema: GraphQLSchema) -> int:
    """Give every plain column field of the schema's Django types a direct reader."""
    replaced = 0
    for graphql_type in schema.type_map.values():
        if not isinstance(graphql_type, GraphQLObjectType):
            continue
        definition = graphql_type.extensions.get(DEFINITION)
        if not isinstance(definition, StrawberryObjectDefinition):
            continue
        django = getattr(definition.origin, "__strawberry_django_definition__", None)
        model = getattr(django, "model", None)
        for graphql_field in graphql_type.fields.values():
            field = graphql_field.extensions.get(DEFINITION)
            attname = plain_column(field, model)
            if attname is not None and graphql_field.resolve is not None:
                graphql_field.resolve = column_reader(attname, graphql_field.resolve)
                replaced += 1
    return replaced


class ColumnAwareMiddleware(MiddlewareManager):
    """graphql-core's middleware, except around column readers: the only middleware, the
    optimizer's, acts on querysets, and a column is never one."""

    def get_field_resolver(self, field_resolver: Callable[..., Any]) -> Callable[..., Any]:
        if getattr(field_resolver, "reads_column", False):
            return field_resolver
        return super().get_field_resolver(field_resolver)
