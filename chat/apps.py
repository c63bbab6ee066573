from typing import Any

from django.apps import AppConfig
from django.core import checks


class ChatConfig(AppConfig):
    name = "chat"
    verbose_name = "Chat"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        checks.register(check_push_settings)


def check_push_settings(**kwargs: Any) -> list[checks.CheckMessage]:
    """A VAPID key that does not work would fail only later, in the worker, per message."""
    from chat.push import webpush

    return [checks.Error(problem, id="chat.E001") for problem in webpush.check_settings()]
