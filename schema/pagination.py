"""Relay connections on keyset cursors: a page costs the same wherever it is in the list.

A cursor is an opaque base64 of the row's sort key, never an offset, so inserts between two
page loads neither skip nor repeat rows, and `WHERE key < cursor ORDER BY key LIMIT n`
reads n rows from an index however deep the page is.
"""

import base64
import binascii
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import strawberry
from django.conf import settings
from django.db.models import Model, Q, QuerySet
from django.utils.dateparse import parse_datetime

from chat.prepared import Shaped, prepared
from schema.errors import bad_user_input

T = TypeVar("T")


@strawberry.type(description="Where a page sits in the whole list (Relay).")
class PageInfo:
    has_next_page: bool = strawberry.field(description="More items follow the last edge.")
    has_previous_page: bool = strawberry.field(description="More items precede the first edge.")
    start_cursor: str | None = strawberry.field(description="The first edge's cursor.")
    end_cursor: str | None = strawberry.field(description="The last edge's cursor.")


@strawberry.type(description="An item and the cursor to page from it.")
class Edge(Generic[T]):
    node: T = strawberry.field(description="The item.")
    cursor: str = strawberry.field(description="Pass as `after` or `before` to page from here.")


@strawberry.type(description="A page of items (Relay connection with keyset cursors).")
class Connection(Generic[T]):
    edges: list[Edge[T]] = strawberry.field(description="The items of this page, in order.")
    page_info: PageInfo = strawberry.field(description="Where this page sits.")


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) > 2**63 - 1:
        raise ValueError(value)
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str) or "\x00" in value:
        raise ValueError(value)
    return value


def _float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(value)
    return float(value)


def _uuid(value: Any) -> str:
    return str(uuid.UUID(_text(value)))


def _datetime(value: Any) -> str:
    if parse_datetime(_text(value)) is None:
        raise ValueError(value)
    return value


# How each kind of sort key is read back from a cursor: a value of the wrong type is the
# client's mistake (BAD_USER_INPUT), never a database error.
INTEGER, TEXT, UUID, DATETIME, FLOAT = _integer, _text, _uuid, _datetime, _float


@dataclass(frozen=True)
class Keyset:
    """A total order over rows: `(field, descending, kind)` triples, the last one unique."""

    fields: tuple[tuple[str, bool, Callable[[Any], Any]], ...]

    def order_by(self, reverse: bool = False) -> list[str]:
        return [("-" if desc != reverse else "") + name for name, desc, _ in self.fields]

    def key(self, row: Model) -> list[Any]:
        return [_plain(getattr(row, name)) for name, _, _ in self.fields]

    def decode(self, cursor: str) -> list[Any]:
        """The sort key in `cursor`, each value checked against its field's kind."""
        try:
            values = json.loads(base64.urlsafe_b64decode(cursor.encode()))
            if not isinstance(values, list) or len(values) != len(self.fields):
                raise ValueError(values)
            return [kind(v) for v, (_, _, kind) in zip(values, self.fields, strict=True)]
        except (ValueError, TypeError, UnicodeError, binascii.Error, RecursionError):
            raise bad_user_input("Invalid cursor.") from None

    def beyond(self, values: Sequence[Any], reverse: bool = False) -> Q:
        """Rows strictly after `values` in this order (before them when `reverse`)."""
        condition = Q(pk__in=[])
        for i, (name, desc, _) in enumerate(self.fields):
            later = "lt" if desc != reverse else "gt"
            equal = {self.fields[j][0]: values[j] for j in range(i)}
            condition |= Q(**equal, **{f"{name}__{later}": values[i]})
        return condition


def _plain(value: Any) -> Any:
    """A JSON-safe form the ORM accepts back in a filter (datetimes as ISO, UUIDs as str)."""
    if isinstance(value, int | float | str):
        return value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def encode_cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode()


def _page_size(name: str, value: int | None) -> int | None:
    cap = settings.GRAPHQL_MAX_PAGE_SIZE
    if value is not None and not 0 <= value <= cap:
        raise bad_user_input(f"`{name}` must be between 0 and {cap}.", argument=name)
    return value


def _fetch(
    rows: QuerySet | Shaped,
    keyset: Keyset,
    after: list[Any] | None,
    before: list[Any] | None,
    limit: int,
    *,
    reverse: bool,
) -> list[Any]:
    """Up to `limit` rows past the cursors, in the keyset's order (or its reverse).

    A `Shaped` queryset keeps its SQL per shape (chat.prepared) for a first page, and for
    any page of a one-field keyset: its cursor adds one parameter, `field < %s` or
    `field > %s`, after the queryset's own."""

    def build(base: QuerySet) -> QuerySet:
        if after is not None:
            base = base.filter(keyset.beyond(after))
        if before is not None:
            base = base.filter(keyset.beyond(before, reverse=True))
        return base.order_by(*keyset.order_by(reverse=reverse))[:limit]

    if not isinstance(rows, Shaped):
        return list(build(rows))
    if len(keyset.fields) != 1 and (after is not None or before is not None):
        return list(build(rows.build()))  # a cursor over several fields: the ORM's way
    cursors = [values[0] for values in (after, before) if values is not None]
    shape = (rows.key, after is not None, before is not None, limit, reverse)
    return prepared.fetch(Shaped(shape, lambda: build(rows.build()), [*rows.params, *cursors]))


def paginate(
    queryset: QuerySet | Shaped,
    keyset: Keyset,
    *,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
    default_first: int | None = None,
    default_last: int | None = None,
    prepare: Callable[[list[Any]], None] | None = None,
) -> Connection:
    """One page of `queryset` as a connection, in one query.

    `first`/`after` page forward, `last`/`before` page backward ("load older messages");
    with neither, `default_first` or `default_last` applies. `prepare` may batch-load what
    the page's nodes need, so fields resolve without a query per node. A `Shaped`
    queryset is built and compiled only for a page shape not seen before.
    """
    first, last = _page_size("first", first), _page_size("last", last)
    if first is not None and last is not None:
        raise bad_user_input("Pass `first` or `last`, not both.")
    if first is None and last is None:
        first, last = default_first, default_last
    after_key = keyset.decode(after) if after is not None else None
    before_key = keyset.decode(before) if before is not None else None
    if last is not None:
        rows = _fetch(queryset, keyset, after_key, before_key, last + 1, reverse=True)
        more = len(rows) > last
        rows = rows[:last][::-1]
        has_previous, has_next = more, before is not None
    else:
        size = first if first is not None else settings.GRAPHQL_MAX_PAGE_SIZE
        rows = _fetch(queryset, keyset, after_key, before_key, size + 1, reverse=False)
        more = len(rows) > size
        rows = rows[:size]
        has_next, has_previous = more, after is not None
    if prepare is not None and rows:
        prepare(rows)
    edges = [Edge(node=row, cursor=encode_cursor(keyset.key(row))) for row in rows]
    return Connection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=has_next,
            has_previous_page=has_previous,
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
        ),
    )
