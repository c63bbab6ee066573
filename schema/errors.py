"""How errors reach clients: every error carries `extensions.code`.

Deliberate errors are raised as `GraphQLError` with a code here, or as `chat.exceptions`
domain errors, which `ErrorPolicy` translates. Anything else is a bug: it is logged and,
outside DEBUG, masked as `INTERNAL_SERVER_ERROR`.
"""

import logging
import re
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError
from graphql import GraphQLError, GraphQLSyntaxError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
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


# A backing service is down or unreachable: the client should retry, not report a bug.
OUTAGES = (OperationalError, InterfaceError, RedisConnectionError, RedisTimeoutError)
RETRY_AFTER_OUTAGE = 5
UNAVAILABLE = "The service is temporarily unavailable. Try again shortly."


def service_unavailable() -> GraphQLError:
    return graphql_error(UNAVAILABLE, "SERVICE_UNAVAILABLE", retryAfter=RETRY_AFTER_OUTAGE)


# graphql-core's "Did you mean 'me'?" hints name the schema's types and fields.
_SUGGESTION = re.compile(r" Did you mean .*\?$", re.DOTALL)

# Raised by Strawberry for an operation the transport does not carry (a query sent over
# the legacy `graphql-ws` protocol, a mutation over GET): the client's mistake.
_BAD_REQUESTS = (CannotGetOperationTypeError, InvalidOperationTypeError)


def is_expected(error: GraphQLError) -> bool:
    """True for errors the API raises on purpose or the client caused."""
    original = error.original_error
    return original is None or isinstance(
        original, (GraphQLError, DomainError, *_BAD_REQUESTS, *OUTAGES)
    )


# graphql-core's wording for a variable's value that cannot be coerced (as opposed to a
# variable the document itself misuses, which is a validation error).
_BAD_VARIABLE_VALUE = re.compile(r"^Variable '\$\w+' (has|got) invalid value")


def _code_for_graphql_error(error: GraphQLError) -> str:
    if isinstance(error, GraphQLSyntaxError):
        return "GRAPHQL_PARSE_FAILED"
    if _BAD_VARIABLE_VALUE.match(error.message):
        return "BAD_USER_INPUT"
    return "GRAPHQL_VALIDATION_FAILED"


class ErrorPolicy(MaskErrors):
    """Add `extensions.code` to every error; mask unexpected ones outside DEBUG."""

    def __init__(self) -> None:
        super().__init__(error_message="Unexpected error.")

    def _process_result(self, result: object) -> None:
        # MaskErrors asks `isinstance(result, _ResultWithErrors)`, a runtime protocol check
        # that walks the protocol's members on every call: 3 % of a reconnect storm's CPU,
        # where every subscription's results pass here. It only asks for `errors`.
        if errors := getattr(result, "errors", None):
            result.errors = self._process_errors(errors)  # type: ignore[attr-defined]

    def _process_errors(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        return [self._process(error) for error in errors]

    def _process(self, error: GraphQLError) -> GraphQLError:
        # A new error every time: validation errors are cached and shared between requests
        # (and between settings, in tests), so the original is never changed.
        message, extensions = error.message, dict(error.extensions or {})
        if not settings.GRAPHQL_INTROSPECTION:
            message = _SUGGESTION.sub("", message)
        original = error.original_error
        if "code" in extensions:
            pass
        elif isinstance(original, DomainError):
            extensions["code"] = original.code
            if isinstance(original, RateLimited):
                extensions["retryAfter"] = original.retry_after
            message = original.message
        elif isinstance(original, _BAD_REQUESTS):
            extensions["code"] = "BAD_REQUEST"
        elif isinstance(original, OUTAGES):
            logger.warning("A backing service is unavailable: %s", original)
            message = UNAVAILABLE
            extensions.update(code="SERVICE_UNAVAILABLE", retryAfter=RETRY_AFTER_OUTAGE)
        elif original is None or isinstance(original, GraphQLError):
            extensions["code"] = _code_for_graphql_error(error)
        elif settings.DEBUG:
            extensions["code"] = "INTERNAL_SERVER_ERROR"
        else:
            error = self.anonymise_error(error)
            message, extensions = error.message, {"code": "INTERNAL_SERVER_ERROR"}
        return GraphQLError(
            message,
            nodes=error.nodes,
            source=error.source,
            positions=error.positions,
            path=error.path,
            original_error=error.original_error,
            extensions=extensions,
        )
