"""Sending one notification to a batch of devices, and what each answer means.

- 2xx: delivered; the device's failure count starts again.
- 404 or 410: the subscription or token is gone; the device is deactivated.
- 429, 5xx, a timeout or a refused connection: tried again later, after the push
  service's `Retry-After` when it gives one, else after `PUSH_RETRY_DELAY` doubled per
  attempt; given up after `PUSH_MAX_ATTEMPTS`.
- Anything else (400, 401, 403...): failed and not retried, since the same request would
  fail the same way.

Failures are logged and counted on the device (`failures`, `last_error`); nothing is ever
raised to the sender, whose message was committed long before.
"""

import json
import logging
import random
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any

import requests
from django.conf import settings
from django.db.models import F
from django.utils import timezone
from google.auth import exceptions as google_errors

from chat.models import Device
from chat.push import fcm, webpush
from chat.push.notify import recipients

logger = logging.getLogger(__name__)


class Result(StrEnum):
    SENT = "sent"
    GONE = "deactivated"
    RETRY = "retrying"
    FAILED = "failed"


@dataclass(frozen=True)
class Outcome:
    result: Result
    reason: str = ""
    retry_after: float | None = None


def retry_after(value: str | None) -> float | None:
    """Seconds from a `Retry-After` header (seconds or an HTTP date), or None."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - timezone.now()).total_seconds())


def classify(response: requests.Response) -> Outcome:
    status = response.status_code
    if 200 <= status < 300:
        return Outcome(Result.SENT)
    reason = f"HTTP {status} {response.text[:120]}".strip()
    if status in {404, 410}:
        return Outcome(Result.GONE, reason)
    if status == 429 or status >= 500:
        return Outcome(Result.RETRY, reason, retry_after(response.headers.get("Retry-After")))
    return Outcome(Result.FAILED, reason)


def retry_delay(attempt: int, after: float | None) -> float:
    """Seconds before attempt `attempt + 1`: the push service's wish when it stated one,
    else exponential with jitter (so a recovering service is not hit all at once)."""
    if after is None:
        after = settings.PUSH_RETRY_DELAY * 2 ** (attempt - 1) * random.uniform(1, 1.25)  # noqa: S311
    return min(after, settings.PUSH_RETRY_MAX_DELAY)


_local = threading.local()
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _session() -> requests.Session:
    """A session per sending thread: connections to each push service are kept alive
    between notifications."""
    if not hasattr(_local, "session"):
        _local.session = requests.Session()
    return _local.session


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(settings.PUSH_CONCURRENCY, thread_name_prefix="push")
        return _pool


def send_one(device: Device, notification: dict[str, Any], payload: bytes) -> Outcome:
    """Send to one device and say what happened; never raises."""
    try:
        if device.kind == Device.Kind.WEB_PUSH:
            subscription = webpush.Subscription(device.address, device.p256dh, device.auth)
            response = webpush.send(_session(), subscription, payload, topic=notification["tag"])
        else:
            client = fcm.client()
            if client is None:
                return Outcome(Result.FAILED, "FCM is not configured")
            message = fcm.message(device.address, notification, collapse_key=notification["tag"])
            response = client.send(_session(), message)
    except requests.Timeout:
        return Outcome(Result.RETRY, "timed out")
    except (requests.ConnectionError, google_errors.TransportError) as error:
        return Outcome(Result.RETRY, f"unreachable: {type(error).__name__}")
    except google_errors.RefreshError as error:
        return Outcome(Result.RETRY, f"no OAuth token: {str(error)[:120]}")
    except Exception as error:
        logger.exception("Push to device %s failed unexpectedly", device.pk)
        return Outcome(Result.FAILED, f"{type(error).__name__}: {str(error)[:120]}")
    return classify(response)


def deliver(notification: dict[str, Any], device_ids: list[str], attempt: int) -> dict[str, int]:
    """Send `notification` to those of `device_ids` that should still get it, record each
    outcome, and queue a later attempt for the ones that may succeed then. Returns the
    count per outcome (kept with the task's result)."""
    devices = list(
        recipients(
            chat_id=notification["chatId"],
            seq=notification["seq"],
            author_id=notification["senderId"],
            sent_at=datetime.fromisoformat(notification["sentAt"]),
            message_id=notification["messageId"],
        ).filter(pk__in=device_ids)
    )
    counts = dict.fromkeys(Result, 0) | {"skipped": len(device_ids) - len(devices)}
    if not devices:
        return {str(k): v for k, v in counts.items()}
    payload = json.dumps(notification, separators=(",", ":")).encode()
    outcomes = list(_executor().map(lambda d: send_one(d, notification, payload), devices))
    _record(devices, outcomes)
    retries: dict[int, list[str]] = defaultdict(list)
    for device, outcome in zip(devices, outcomes, strict=True):
        counts[outcome.result] += 1
        if outcome.result is Result.RETRY:
            if attempt < settings.PUSH_MAX_ATTEMPTS:
                delay = retry_delay(attempt, outcome.retry_after)
                retries[round(delay * 10)].append(str(device.pk))
            else:
                logger.warning(
                    "Push to device %s given up after %d attempts: %s",
                    device.pk,
                    attempt,
                    outcome.reason,
                )
        elif outcome.result in {Result.FAILED, Result.GONE}:
            logger.warning("Push to device %s %s: %s", device.pk, outcome.result, outcome.reason)
    _queue_retries(notification, retries, attempt)
    return {str(k): v for k, v in counts.items()}


def _queue_retries(
    notification: dict[str, Any], retries: dict[int, list[str]], attempt: int
) -> None:
    from chat.tasks import deliver as deliver_task

    now = timezone.now()
    for tenths, ids in retries.items():
        run_after = now + timedelta(seconds=tenths / 10)
        deliver_task.using(run_after=run_after).enqueue(notification, ids, attempt + 1)


def _record(devices: list[Device], outcomes: list[Outcome]) -> None:
    """One update per kind of outcome (and reason), not one per device."""
    now = timezone.now()
    by_outcome: dict[tuple[Result, str], list[object]] = defaultdict(list)
    for device, outcome in zip(devices, outcomes, strict=True):
        by_outcome[(outcome.result, outcome.reason)].append(device.pk)
    for (result, reason), pks in by_outcome.items():
        rows = Device.objects.filter(pk__in=pks)
        if result is Result.SENT:
            rows.update(last_success_at=now, failures=0)
            continue
        changes: dict[str, Any] = {
            "failures": F("failures") + 1,
            "last_error": reason[:200],
            "last_error_at": now,
        }
        if result is Result.GONE:
            changes["is_active"] = False
        rows.update(**changes)
