"""Who is asking: one context type for HTTP requests and WebSocket connections."""

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import strawberry
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.http.request import split_domain_port, validate_host

from chat.models import AuthToken, User
from schema.errors import unauthenticated

if TYPE_CHECKING:
    from schema.loaders import Loaders


@dataclass
class Context:
    # The Django request, or the Channels consumer on a WebSocket (strawberry-django's
    # helpers and Strawberry's protocol handlers look for `request`).
    request: Any
    response: HttpResponse | None = None
    user: User | None = None
    # The bearer token in use, when the caller authenticated with one (logout revokes it).
    token: AuthToken | None = None
    # Why the credentials sent were refused: reported by `require_viewer`, not before,
    # so that `login` still works for a client holding a stale token.
    auth_error: str | None = None
    # The `connection_init` payload on a WebSocket; Strawberry sets it.
    connection_params: dict[str, Any] | None = None
    # An HTTP request answered as a stream (multipart subscriptions): it may subscribe.
    streaming: bool = False

    @property
    def is_websocket(self) -> bool:
        return not isinstance(self.request, HttpRequest)

    @property
    def can_subscribe(self) -> bool:
        """A WebSocket, or HTTP that accepted a multipart response."""
        return self.is_websocket or self.streaming

    @property
    def client_address(self) -> str:
        if isinstance(self.request, HttpRequest):
            return self.request.META.get("REMOTE_ADDR") or "unknown"
        client = self.request.scope.get("client")
        return client[0] if client else "unknown"

    @cached_property
    def loaders(self) -> "Loaders":
        from schema.loaders import Loaders

        return Loaders(self.user)

    @cached_property
    def media_base(self) -> str:
        """Where media URLs point: MEDIA_BASE_URL, else the scheme and host this request
        or socket came in on (when it is an allowed host), so an `<img src>` on another
        origin still reaches the API."""
        if settings.MEDIA_BASE_URL:
            return settings.MEDIA_BASE_URL.rstrip("/")
        if isinstance(self.request, HttpRequest):
            scheme, host = self.request.scheme, self.request.headers.get("Host", "")
        else:
            scope = self.request.scope
            scheme = "https" if scope.get("scheme") in {"wss", "https"} else "http"
            headers = dict(scope.get("headers", []))
            host = headers.get(b"host", b"").decode("latin1")
        domain, _ = split_domain_port(host)
        if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
            return ""
        return f"{scheme}://{host}"

    @property
    def user_agent(self) -> str:
        if isinstance(self.request, HttpRequest):
            return self.request.headers.get("User-Agent", "")
        for name, value in self.request.scope.get("headers", []):
            if name == b"user-agent":
                return value.decode("latin1")
        return ""


def viewer(info: strawberry.Info) -> User | None:
    return info.context.user


def require_viewer(info: strawberry.Info) -> User:
    """The signed-in user, or an `UNAUTHENTICATED` error."""
    context: Context = info.context
    if context.user is None:
        raise unauthenticated(context.auth_error)
    return context.user
