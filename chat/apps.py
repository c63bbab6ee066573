from typing import Any

from django.apps import AppConfig
from django.core import checks
from django.db.models.signals import post_save


class ChatConfig(AppConfig):
    name = "chat"
    verbose_name = "Chat"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from chat import auth
        from chat.models import User

        checks.register(check_push_settings)
        # Cached token checks (chat.tokencache) hold the user as it was.
        post_save.connect(auth.user_saved, sender=User, dispatch_uid="chat.auth.user_saved")


def check_push_settings(**kwargs: Any) -> list[checks.CheckMessage]:
    """A VAPID key that does not work would fail only later, in the worker, per message."""
    from chat.push import webpush

    return [checks.Error(problem, id="chat.E001") for problem in webpush.check_settings()]
