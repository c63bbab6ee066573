"""The one GraphQL schema."""

from functools import partial
from typing import Any

import strawberry
from django.conf import settings
from graphql import GraphQLError
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


class Schema(strawberry.Schema):
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
