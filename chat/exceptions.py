"""Domain failures that are not a field's validation error.

Validation failures are Django `ValidationError`s with a code from `error_codes`; the
exceptions here are conditions the API layer reports with a GraphQL `extensions.code`.
"""

from django.core.exceptions import PermissionDenied, ValidationError


class DomainError(Exception):
    code = "DOMAIN_ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(DomainError):
    """The object does not exist, or the caller may not know that it does."""

    code = "NOT_FOUND"


class RateLimited(DomainError):
    code = "RATE_LIMITED"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Forbidden(PermissionDenied):
    """The caller may see the object but not do this to it (a mutation's PERMISSION error).

    `msg` and `code` are the attributes strawberry-django reads into `OperationMessage`.
    """

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.msg = message
        self.code = code


def field_error(field: str | None, message: str, code: str) -> ValidationError:
    """A validation failure of one input field (None: of the input as a whole), with a
    code from `chat.error_codes`: what mutations return as `OperationInfo`."""
    error = ValidationError(message, code=code)
    return ValidationError({field: error}) if field else error


def not_found(field: str = "chat_id", message: str = "Chat not found.") -> ValidationError:
    """The `not_found` field error: the same whether the object is missing or hidden."""
    return field_error(field, message, "not_found")
