"""The one GraphQL schema."""

from functools import partial
from typing import Any

import strawberry
from django.conf import settings
from graphql import GraphQLError
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
)
from strawberry.types import ExecutionContext
from strawberry_django.optimizer import DjangoOptimizerExtension

from schema.errors import ErrorPolicy, is_expected
from schema.execution import SharedEventExecutor
from schema.mutations import Mutation
from schema.queries import Query
from schema.subscriptions import Subscription


class Schema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # Expected errors (bad input, not signed in, not found) are answers, not incidents.
        super().process_errors([e for e in errors if not is_expected(e)], execution_context)


def _extensions() -> list[Any]:
    extensions: list[Any] = [
        ErrorPolicy,
        partial(QueryDepthLimiter, max_depth=settings.GRAPHQL_MAX_DEPTH),
        partial(MaxAliasesLimiter, max_alias_count=settings.GRAPHQL_MAX_ALIASES),
        partial(MaxTokensLimiter, max_token_count=settings.GRAPHQL_MAX_TOKENS),
        DjangoOptimizerExtension,
    ]
    if not settings.GRAPHQL_INTROSPECTION:
        from graphql.validation import NoSchemaIntrospectionCustomRule

        extensions.append(partial(AddValidationRules, [NoSchemaIntrospectionCustomRule]))
    return extensions


schema = Schema(
    query=Query,
    mutation=Mutation,
    subscription=Subscription,
    extensions=_extensions(),
    execution_context_class=SharedEventExecutor,
)
