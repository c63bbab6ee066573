"""How errors reach clients: every error carries `extensions.code`.

Deliberate errors are raised as `GraphQLError` with a code here, or as `chat.exceptions`
domain errors, which `ErrorPolicy` translates. Anything else is a bug: it is logged and,
outside DEBUG, masked as `INTERNAL_SERVER_ERROR`.
"""

import logging
from typing import Any

from django.conf import settings
from graphql import GraphQLError, GraphQLSyntaxError
from strawberry.extensions import MaskErrors
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError

from chat.exceptions import DomainError, RateLimited

logger = logging.getLogger("schema.errors")


def graphql_error(message: str, code: str, **extensions: Any) -> GraphQLError:
    return GraphQLError(message, extensions={"code": code, **extensions})


def unauthenticated(reason: str | None = None) -> GraphQLError:
    return graphql_error(reason or "You must be signed in.", "UNAUTHENTICATED")


def bad_user_input(message: str, **extensions: Any) -> GraphQLError:
    return graphql_error(message, "BAD_USER_INPUT", **extensions)


# Raised by Strawberry for an operation the transport does not carry (a query sent over
# the legacy `graphql-ws` protocol, a mutation over GET): the client's mistake.
_BAD_REQUESTS = (CannotGetOperationTypeError, InvalidOperationTypeError)


def is_expected(error: GraphQLError) -> bool:
    """True for errors the API raises on purpose or the client caused."""
    original = error.original_error
    return original is None or isinstance(original, (GraphQLError, DomainError, *_BAD_REQUESTS))


def _code_for_graphql_error(error: GraphQLError) -> str:
    if isinstance(error, GraphQLSyntaxError):
        return "GRAPHQL_PARSE_FAILED"
    if error.message.startswith("Variable '$"):
        return "BAD_USER_INPUT"
    return "GRAPHQL_VALIDATION_FAILED"


class ErrorPolicy(MaskErrors):
    """Add `extensions.code` to every error; mask unexpected ones outside DEBUG."""

    def __init__(self) -> None:
        super().__init__(error_message="Unexpected error.")

    def _process_errors(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        return [self._process(error) for error in errors]

    def _process(self, error: GraphQLError) -> GraphQLError:
        extensions = dict(error.extensions or {})
        if "code" in extensions:
            return error
        original = error.original_error
        if isinstance(original, DomainError):
            extensions["code"] = original.code
            if isinstance(original, RateLimited):
                extensions["retryAfter"] = original.retry_after
            error.message = original.message
        elif isinstance(original, _BAD_REQUESTS):
            extensions["code"] = "BAD_REQUEST"
        elif original is None or isinstance(original, GraphQLError):
            extensions["code"] = _code_for_graphql_error(error)
        elif settings.DEBUG:
            extensions["code"] = "INTERNAL_SERVER_ERROR"
        else:
            error = self.anonymise_error(error)
            extensions = {"code": "INTERNAL_SERVER_ERROR"}
        error.extensions = extensions
        return error
