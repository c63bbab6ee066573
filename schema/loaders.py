"""Batched reads for fields that lists repeat: one query for all the chats or users a
response shows, not one each. Made per context; nothing is cached between batches, so a
long-lived WebSocket context never answers from stale data."""

from collections.abc import Sequence
from typing import Any

from asgiref.sync import sync_to_async
from strawberry.dataloader import DataLoader

from chat import selectors
from chat.models import User


class Loaders:
    def __init__(self, viewer: User | None) -> None:
        self.viewer = viewer
        self.online_count = DataLoader(self._online_counts, cache=False)
        self.shares_chat = DataLoader(self._shares_chat, cache=False)
        self.blocked = DataLoader(self._blocked, cache=False)
        self.reactions = DataLoader(self._reactions, cache=False)
        self.edit_history = DataLoader(self._edit_history, cache=False)
        self.pinned = DataLoader(self._pinned, cache=False)
        self.mentions = DataLoader(self._mentions, cache=False)
        self.unread_mentions = DataLoader(self._unread_mentions, cache=False)
        # Keyed by (message id, how many readers are wanted; 0 for only the count).
        self.readers = DataLoader(self._readers, cache=False)

    async def _online_counts(self, chat_ids: Sequence[Any]) -> list[int]:
        counts = await sync_to_async(selectors.online_counts)(list(chat_ids))
        return [counts.get(chat_id, 0) for chat_id in chat_ids]

    async def _shares_chat(self, user_ids: Sequence[Any]) -> list[bool]:
        if self.viewer is None:
            return [False] * len(user_ids)
        shared = await sync_to_async(selectors.sharing_a_chat)(
            viewer=self.viewer, user_ids=list(user_ids)
        )
        return [user_id in shared for user_id in user_ids]

    async def _readers(self, keys: Sequence[tuple[Any, int]]) -> list[tuple[int, list[User]]]:
        # One query for the page: as many readers as the largest request wants.
        limit = max(first for _, first in keys)
        found = await sync_to_async(selectors.readers)([pk for pk, _ in keys], limit=limit)
        return [
            (found.get(pk, (0, []))[0], found.get(pk, (0, []))[1][:first]) for pk, first in keys
        ]

    async def _blocked(self, user_ids: Sequence[Any]) -> list[bool]:
        if self.viewer is None:
            return [False] * len(user_ids)
        blocked = await sync_to_async(selectors.blocked_by)(self.viewer, list(user_ids))
        return [user_id in blocked for user_id in user_ids]

    async def _reactions(self, message_ids: Sequence[Any]) -> list[list[dict]]:
        found = await sync_to_async(selectors.reactions_of)(list(message_ids), viewer=self.viewer)
        return [found.get(pk, []) for pk in message_ids]

    async def _edit_history(self, message_ids: Sequence[Any]) -> list[list[Any]]:
        found = await sync_to_async(selectors.edit_histories)(list(message_ids))
        return [found.get(pk, []) for pk in message_ids]

    async def _pinned(self, chat_ids: Sequence[Any]) -> list[list[Any]]:
        found = await sync_to_async(selectors.pinned_messages)(list(chat_ids))
        return [found.get(pk, []) for pk in chat_ids]

    async def _mentions(self, message_ids: Sequence[Any]) -> list[list[User]]:
        found = await sync_to_async(selectors.mentions_of)(list(message_ids))
        return [found.get(pk, []) for pk in message_ids]

    async def _unread_mentions(self, chat_ids: Sequence[Any]) -> list[int]:
        if self.viewer is None:
            return [0] * len(chat_ids)
        counts = await sync_to_async(selectors.unread_mention_counts)(self.viewer, list(chat_ids))
        return [counts.get(pk, 0) for pk in chat_ids]
