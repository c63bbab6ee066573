"""Parsing each query text once.

Clients send the same few operations over and over; parsing and validating them costs
more than executing a small mutation, and a subscription event executed for the fan-out
(`schema.fanout`) would pay for it on every message. Strawberry's `ValidationCache`
covers validation; parsing is cached here rather than with its `ParserCache`, which
turns a syntax error into an error without a code.
"""

import contextlib
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from graphql import GraphQLError, parse
from strawberry.extensions import SchemaExtension

DOCUMENTS_CACHED = 1024

_parse = lru_cache(maxsize=DOCUMENTS_CACHED)(parse)


class Identity:
    """A document as a cache key by identity rather than by value. A parsed document is a
    frozen dataclass whose hash walks its whole tree, 8-10 µs for a history page's, and
    every request looked its document up in two caches (limits, validation). Documents
    come from `parse_cached`, one object per text; a document equal to another but not the
    same object only costs its own entry."""

    __slots__ = ("document",)

    def __init__(self, document: Any) -> None:
        self.document = document  # kept alive, so its id is not reused while cached

    def __hash__(self) -> int:
        return id(self.document)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Identity) and other.document is self.document


def parse_cached(source: str) -> Any:
    """The document for `source`, parsed once (raises `GraphQLError` when it does not
    parse). Shared with the execution's own parse."""
    return _parse(source)


class DocumentCache(SchemaExtension):
    """Parses through the cache, with at most `max_tokens` tokens (graphql-core's parser
    stops counting there: a huge document is refused before it is built)."""

    def __init__(self, max_tokens: int) -> None:
        super().__init__()
        self.max_tokens = max_tokens

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        context.parse_options["max_tokens"] = self.max_tokens
        if context.graphql_document is None and context.query:
            # A text that does not parse is left to Strawberry's own parse, which reports
            # the error the usual way.
            with contextlib.suppress(GraphQLError):
                context.graphql_document = _parse(context.query, **context.parse_options)
        yield
