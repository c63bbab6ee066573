"""Background tasks (Django's Tasks framework, stored in the database by django-tasks-db
and run by `python manage.py db_worker`). Arguments are JSON; each task is a thin entry
point into `chat.push`."""

from typing import Any

from django_tasks import task

from chat.push import delivery, notify


@task()
def notify_message(message_id: str) -> dict[str, int]:
    """Find who a new message notifies and queue the deliveries."""
    return notify.fan_out(message_id)


@task()
def deliver(notification: dict[str, Any], device_ids: list[str], attempt: int) -> dict[str, int]:
    """Send one notification to a batch of devices (attempt 1, 2 ...)."""
    return delivery.deliver(notification, device_ids, attempt)
