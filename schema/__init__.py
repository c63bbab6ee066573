"""The one GraphQL schema."""

import contextlib
from contextvars import ContextVar
from functools import partial
from typing import Any

import strawberry
from django.conf import settings
from graphql import GraphQLError
from strawberry.extensions import MaskErrors, SchemaExtension
from strawberry.extensions.context import OperationContextManager
from strawberry.extensions.runner import SchemaExtensionsRunner
from strawberry.types import ExecutionContext
from strawberry_django.optimizer import DjangoOptimizerExtension

from schema.columns import ColumnAwareMiddleware, read_columns_directly
from schema.documents import DOCUMENTS_CACHED, DocumentCache
from schema.errors import ErrorPolicy, is_expected
from schema.execution import SharedEventExecutor
from schema.limits import BlockingOperationLimits, OperationLimits
from schema.mutations import Mutation
from schema.queries import Query
from schema.subscriptions import Subscription
from schema.uploads import SCALAR_OVERRIDES

# Set while `Schema.stream` builds an operation's stream (the WebSocket protocols and
# multipart subscriptions run every operation that way).
_streaming: ContextVar[bool] = ContextVar("streaming", default=False)


class _StreamExtensionsRunner(SchemaExtensionsRunner):
    """A stream's extensions, without `ErrorPolicy`'s operation hook.

    A stream masks each result before it is sent (`MaskErrors.on_stream_result`), so the
    operation hook, which masks a single result at the end, has nothing to do. Yet a
    subscription holds its operation hooks open for as long as it lives: that one held a
    suspended generator, its context manager and an exit stack, about 1.4 KB of every open
    subscription (bench/socket_memory.py). With no hook left, nothing is held."""

    def operation(self) -> Any:
        hooked = [e for e in self.extensions if not isinstance(e, MaskErrors)]
        manager = OperationContextManager(hooked)
        return manager if manager.hooks else contextlib.nullcontext()


class Schema(strawberry.Schema):
    async def stream(self, *args: Any, **kwargs: Any) -> Any:
        token = _streaming.set(True)
        try:
            return await super().stream(*args, **kwargs)
        finally:
            _streaming.reset(token)

    def create_extensions_runner(
        self, execution_context: ExecutionContext, extensions: list[SchemaExtension]
    ) -> SchemaExtensionsRunner:
        runner = _StreamExtensionsRunner if _streaming.get() else SchemaExtensionsRunner
        return runner(execution_context=execution_context, extensions=extensions)

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # Expected errors (bad input, not signed in, not found) are answers, not incidents.
        super().process_errors([e for e in errors if not is_expected(e)], execution_context)

    def get_extensions(self, sync: bool = False) -> list[Any]:
        extensions = super().get_extensions(sync)
        if not sync:
            return extensions
        # `execute_sync` cannot await the query budget's charge: it may block instead.
        return [
            BlockingOperationLimits(maxsize=DOCUMENTS_CACHED, rules=e.rules)
            if type(e) is OperationLimits
            else e
            for e in extensions
        ]

    def _get_middleware_manager(self, extensions: list[Any]) -> ColumnAwareMiddleware:
        return ColumnAwareMiddleware(*(ext for ext in extensions if ext._implements_resolve()))


def _rules() -> tuple[Any, ...]:
    """Validation rules beyond graphql-core's own."""
    if settings.GRAPHQL_INTROSPECTION:
        return ()
    from graphql.validation import NoSchemaIntrospectionCustomRule

    return (NoSchemaIntrospectionCustomRule,)


def _extensions() -> list[Any]:
    # Depth, aliases and expansion are measured by `OperationLimits` in one linear pass
    # (Strawberry's own limiters walk fragments once per spread); it also adds the extra
    # validation rules, and `DocumentCache` applies the token limit: Strawberry's
    # `AddValidationRules` and `MaxTokensLimiter` would do it from an operation hook, which
    # a subscription holds open, with its extension, for as long as it lives.
    return [
        ErrorPolicy,
        partial(DocumentCache, max_tokens=settings.GRAPHQL_MAX_TOKENS),
        partial(OperationLimits, maxsize=DOCUMENTS_CACHED, rules=_rules()),
        DjangoOptimizerExtension,
    ]


schema = Schema(
    query=Query,
    mutation=Mutation,
    subscription=Subscription,
    extensions=_extensions(),
    execution_context_class=SharedEventExecutor,
    scalar_overrides=SCALAR_OVERRIDES,
)
read_columns_directly(schema._schema)
