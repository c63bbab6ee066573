"""Firebase Cloud Messaging through its HTTP v1 API, for the mobile apps.

google-auth signs the service account's JWT and exchanges it at the account's `token_uri`
for an OAuth token, refreshed before it expires; `FCM_BASE_URL` and `token_uri` are used
as configured, so a test (or a proxy) can stand in for Google.
"""

import json
import re
import threading
from functools import cache
from pathlib import Path
from typing import Any

import requests
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from google.auth.transport.requests import Request
from google.oauth2 import service_account

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
# Registration tokens are opaque; real ones are about 160 of these characters.
TOKEN = re.compile(r"^[A-Za-z0-9_:.\-]{20,4096}$")


class InvalidToken(ValueError):
    pass


def check_token(token: str) -> str:
    if not TOKEN.match(token):
        raise InvalidToken("Not an FCM registration token.")
    return token


class Client:
    """One service account's credentials, shared by the worker's threads."""

    def __init__(self, info: dict[str, Any]) -> None:
        self.credentials = service_account.Credentials.from_service_account_info(
            info, scopes=[SCOPE]
        )
        self.project_id = settings.FCM_PROJECT_ID or info.get("project_id", "")
        if not self.project_id:
            raise ImproperlyConfigured("Set FCM_PROJECT_ID or use a key with a project_id.")
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"{settings.FCM_BASE_URL}/v1/projects/{self.project_id}/messages:send"

    def _token(self, session: requests.Session, *, renew: bool = False) -> str:
        with self._lock:  # one refresh at a time, not one per thread
            if renew or not self.credentials.valid:
                self.credentials.refresh(Request(session))
            return self.credentials.token

    def send(self, session: requests.Session, message: dict[str, Any]) -> requests.Response:
        """POST one message. A 401 (the OAuth token was revoked early) renews the token
        and tries once more. Raises google-auth's errors when no token can be had."""
        response = self._post(session, message, self._token(session))
        if response.status_code == 401:
            response = self._post(session, message, self._token(session, renew=True))
        return response

    def _post(
        self, session: requests.Session, message: dict[str, Any], token: str
    ) -> requests.Response:
        return session.post(
            self.url,
            json={"message": message},
            headers={"Authorization": f"Bearer {token}"},
            timeout=settings.PUSH_TIMEOUT,
        )


def _service_account(value: str) -> dict[str, Any]:
    text = value if value.lstrip().startswith("{") else Path(value).read_text()
    try:
        return json.loads(text)
    except ValueError as error:
        raise ImproperlyConfigured("FCM_CREDENTIALS is not a service-account key.") from error


@cache
def _client(credentials: str, project_id: str, base_url: str) -> Client:
    return Client(_service_account(credentials))


def client() -> Client | None:
    """The configured client (made once per configuration), or None without FCM."""
    if not settings.FCM_CREDENTIALS:
        return None
    return _client(settings.FCM_CREDENTIALS, settings.FCM_PROJECT_ID, settings.FCM_BASE_URL)


def message(token: str, notification: dict[str, Any], *, collapse_key: str) -> dict[str, Any]:
    """The v1 message for one device. `data` repeats every field as a string (FCM's rule)
    for the app to open the right chat; the collapse key (the chat) makes a burst to an
    offline phone arrive as one notification on Android and iOS alike."""
    ttl = settings.PUSH_TTL
    return {
        "token": token,
        "notification": {"title": notification["title"], "body": notification["body"]},
        "data": {key: str(value) for key, value in notification.items()},
        "android": {
            "collapse_key": collapse_key,
            "priority": "HIGH",
            "ttl": f"{ttl}s",
            "notification": {"tag": collapse_key},
        },
        "apns": {
            "headers": {"apns-collapse-id": collapse_key, "apns-priority": "10"},
            "payload": {"aps": {"thread-id": collapse_key}},
        },
    }
