"""What a query selected, so a page joins only the tables its fields read.

Each join a history page or chat list makes costs PostgreSQL planning time (a message with
its author, subject, attachment and quote is a six-table join, 1.8 ms to plan) and Django
the columns and rows it builds. Most clients ask a message for its text and author, so
the page asks for the joins its selection needs (issue 14).
"""

from collections.abc import Iterable
from typing import Any

from strawberry.types.nodes import FragmentSpread, InlineFragment, SelectedField

# What each `Message` field reads through a join. Every field of the type is listed, so a
# new one must say (tests/api/test_selection.py); the others read the row's own columns
# or a DataLoader.
MESSAGE_JOINS: dict[str, tuple[str, ...]] = {
    "attachment": ("attachment",),
    "author": ("author",),
    "subject": ("subject",),
    "replyTo": ("reply_to", "reply_to__author"),
    **dict.fromkeys(
        (
            "__typename",
            "id",
            "chatId",
            "seq",
            "kind",
            "body",
            "clientId",
            "createdAt",
            "editedAt",
            "deletedAt",
            "location",
            "readBy",
            "readCount",
            "reactions",
            "editHistory",
            "pinnedAt",
            "mentions",
            "isDeleted",
            "systemEvent",
        ),
        (),
    ),
}


def _fields(selections: Iterable[Any]) -> Iterable[SelectedField]:
    """The fields of a selection set, with fragments' fields in line."""
    for selection in selections:
        if isinstance(selection, SelectedField):
            yield selection
        elif isinstance(selection, FragmentSpread | InlineFragment):
            yield from _fields(selection.selections)


def selected_below(info: Any, *path: str) -> set[str]:
    """The names selected at `path` below the field being resolved: `("edges", "node")`
    of a connection gives its nodes' fields. Fragments count; aliases do not matter."""
    level = list(_fields(info.selected_fields))
    for name in path:
        level = [inner for inner in _children(level) if inner.name == name]
    return {inner.name for inner in _children(level)}


def _children(fields: list[SelectedField]) -> Iterable[SelectedField]:
    for field in fields:
        yield from _fields(field.selections)


def message_joins(fields: set[str]) -> tuple[str, ...] | None:
    """The joins (`select_related` paths) messages need for `fields`; None, meaning all of
    them, when a field is not known here."""
    if not fields <= MESSAGE_JOINS.keys():
        return None
    return tuple(join for name in sorted(fields) for join in MESSAGE_JOINS[name])
