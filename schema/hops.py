"""Resolvers that answer from memory without a thread hop when their data is loaded.

strawberry-django runs every synchronous resolver through `sync_to_async` under the async
view, in case it queries: a thread switch and two event-loop wake-ups per field per row.
A chat list of 50 reads its unread counts, last messages and peers from data the page
loaded in one query, so 150 of those hops did nothing but cost (issue 14). `unless_loaded`
calls the resolver directly when `loaded` says its data is there, and through the hop
only when it is not, so a resolver may still fall back to a query.

Such a resolver must not return a queryset or a manager when its data is loaded: the
optimizer would not see it (`schema.columns` checks, and goes the long way if it does).
"""

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from strawberry_django.resolvers import django_resolver

F = TypeVar("F", bound=Callable[..., Any])


def fields_loaded(*names: str) -> Callable[[Any], bool]:
    """The model instance holds these columns (the optimizer's `only` loaded them), so
    reading them runs no query."""
    return lambda row: all(name in row.__dict__ for name in names)


def unless_loaded(loaded: Callable[[Any], bool]) -> Callable[[F], F]:
    """Hop to a thread for this resolver only when `loaded(source)` is false."""

    def decorate(resolver: F) -> F:
        hopping = django_resolver(resolver, qs_hook=None)

        @functools.wraps(resolver)
        def resolve(source: Any, *args: Any, **kwargs: Any) -> Any:
            if loaded(source):
                return resolver(source, *args, **kwargs)
            return hopping(source, *args, **kwargs)

        # strawberry-django calls a resolver marked so directly, without its own hop.
        resolve.is_async_safe = True  # type: ignore[attr-defined]
        # `schema.columns` calls the resolver itself, without Strawberry's layers, when
        # its data is loaded.
        resolve.when_loaded = (loaded, resolver)  # type: ignore[attr-defined]
        return resolve  # type: ignore[return-value]

    return decorate
