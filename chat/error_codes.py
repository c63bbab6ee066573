"""Stable error codes returned to clients in `OperationMessage.code`.

Clients branch on these, never on message text: a code, once shipped, keeps its name.
Django's own validation codes (`password_too_short`, `password_too_common`, ...) pass
through unchanged beside them.
"""

from enum import StrEnum


class AccountErrorCode(StrEnum):
    INVALID_EMAIL = "invalid_email"
    EMAIL_TAKEN = "email_taken"
    INVALID_DISPLAY_NAME = "invalid_display_name"
    INVALID_CREDENTIALS = "invalid_credentials"
    WRONG_PASSWORD = "wrong_password"  # noqa: S105
    INVALID_RESET_LINK = "invalid_reset_link"
    NOTHING_TO_UPDATE = "nothing_to_update"
