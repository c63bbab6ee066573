"""Room slugs: a room's name in URLs, unique across rooms."""

import re

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from chat.error_codes import ChatErrorCode
from chat.exceptions import field_error
from chat.models import Chat

SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
SLUG_MAX = 50


def clean_slug(slug: str) -> str | None:
    """The slug, lowercased; None for an empty one (no slug). Letters a-z, digits and
    single hyphens between them, at most 50 characters."""
    slug = slug.strip().lower()
    if not slug:
        return None
    if len(slug) > SLUG_MAX or not SLUG.match(slug):
        raise field_error(
            "slug",
            f"A slug is 1 to {SLUG_MAX} lowercase letters, digits and single hyphens "
            "between them.",
            ChatErrorCode.INVALID_SLUG,
        )
    return slug


def _taken() -> ValidationError:
    return field_error("slug", "Another room has this slug.", ChatErrorCode.SLUG_TAKEN)


def check_slug_free(slug: str | None, *, chat: Chat | None = None) -> None:
    if (
        slug is not None
        and Chat.objects.filter(slug=slug).exclude(pk=getattr(chat, "pk", None)).exists()
    ):
        raise _taken()


def save_claiming_slug(chat: Chat, **save: object) -> None:
    """Save the chat; `slug_taken` when another room took its slug meanwhile (the unique
    index decides a race the check before it cannot)."""
    try:
        with transaction.atomic():
            chat.save(**save)
    except IntegrityError:
        if chat.slug and Chat.objects.filter(slug=chat.slug).exclude(pk=chat.pk).exists():
            raise _taken() from None
        raise
