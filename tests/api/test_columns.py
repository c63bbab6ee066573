"""Column fields read straight from the row (`schema/columns.py`), and fall back to the
field's own resolver when the column was not loaded."""

import pytest
from django.test import RequestFactory
from strawberry_django.optimizer import DjangoOptimizerExtension

from chat.models import User
from schema import schema
from schema.columns import ColumnAwareMiddleware, column_reader
from schema.context import Context

FIELDS = schema._schema.type_map


def reads_column(type_name: str, field: str) -> bool:
    return getattr(FIELDS[type_name].fields[field].resolve, "reads_column", False)


def test_plain_columns_are_read_directly_and_everything_else_keeps_its_resolver():
    assert reads_column("Message", "body")
    assert reads_column("Message", "seq")
    assert reads_column("User", "joinedAt")  # a column under another name (date_joined)
    assert not reads_column("Message", "author")  # a relation
    assert not reads_column("Message", "location")  # a resolver of its own
    assert not reads_column("Attachment", "url")  # a file, signed by a resolver
    assert not reads_column("User", "email")  # only for the user themself


def test_a_reader_returns_the_loaded_value_and_falls_back_for_a_deferred_one():
    calls = []

    def resolver(source, info, **kwargs):
        calls.append(source)
        return "from the resolver"

    read = column_reader("body", resolver)

    class Row:
        def __init__(self, **columns) -> None:
            self.__dict__.update(columns)

    loaded, deferred = Row(body="loaded"), Row()
    assert read(loaded, None) == "loaded"
    assert read(deferred, None) == "from the resolver"
    assert calls == [deferred]


@pytest.mark.django_db
def test_a_deferred_column_still_resolves_through_the_schema(make_user):
    make_user(display_name="Ada")
    viewer = User.objects.only("id").get()
    assert "display_name" not in viewer.__dict__

    result = schema.execute_sync(
        "{ me { displayName joinedAt } }",
        context_value=Context(request=RequestFactory().post("/graphql/"), user=viewer),
    )

    assert result.errors is None
    assert result.data["me"]["displayName"] == "Ada"


def test_only_column_readers_skip_the_optimizer_middleware():
    middleware = ColumnAwareMiddleware(DjangoOptimizerExtension())
    read = column_reader("body", lambda source, info: None)

    def resolver(source, info):
        return None

    assert middleware.get_field_resolver(read) is read
    assert middleware.get_field_resolver(resolver) is not resolver


def test_the_optimizer_is_the_only_middleware_a_reader_skips():
    """The readers skip the middleware chain because the optimizer, which acts only on
    querysets, is all it holds. A new extension with a `resolve` must revisit that."""
    resolving = [
        extension for extension in schema.get_extensions() if extension._implements_resolve()
    ]

    assert [type(extension) for extension in resolving] == [DjangoOptimizerExtension]
