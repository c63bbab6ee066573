"""Django's middleware, run on the event loop instead of one thread hop per method.

Under ASGI, Django runs each method of a sync middleware in a worker thread
(`MiddlewareMixin.__acall__`): the seven below cost twelve hops per request, each a thread
switch and two event-loop wake-ups (about a sixth of `sendMessage`'s CPU). None of these
methods blocks, except where a session or a message store must be written, which still
goes to a thread.
"""

from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import middleware as auth
from django.contrib.messages import middleware as messages
from django.contrib.sessions import middleware as sessions
from django.http import HttpRequest, HttpResponseBase
from django.middleware import clickjacking, common, csrf, security

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


class Inline:
    """For a `MiddlewareMixin` whose `process_request` and `process_response` do no I/O."""

    get_response: Any

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        response = None
        if hasattr(self, "process_request"):
            response = self.process_request(request)
        response = response or await self.get_response(request)
        if hasattr(self, "process_response"):
            response = self._respond(request, response)
            if not isinstance(response, HttpResponseBase):
                response = await response
        return response

    def _respond(self, request: HttpRequest, response: HttpResponseBase) -> Any:
        return self.process_response(request, response)


class SecurityMiddleware(Inline, security.SecurityMiddleware):
    pass


class CommonMiddleware(Inline, common.CommonMiddleware):
    pass


class CsrfViewMiddleware(Inline, csrf.CsrfViewMiddleware):
    """The CSRF secret is in a cookie (`CSRF_USE_SESSIONS` is off): no I/O."""

    async def process_view(
        self, request: HttpRequest, callback: Any, callback_args: Any, callback_kwargs: Any
    ) -> HttpResponseBase | None:
        """Inline for an exempt view (the GraphQL endpoint, which checks for itself) or a
        safe method: neither reads the body. A form POSTed to any other view is parsed
        here, so it goes to a thread as Django would send it."""
        args = (request, callback, callback_args, callback_kwargs)
        if getattr(callback, "csrf_exempt", False) or request.method in SAFE_METHODS:
            return super().process_view(*args)
        return await sync_to_async(super().process_view)(*args)


class AuthenticationMiddleware(Inline, auth.AuthenticationMiddleware):
    """`request.user` is lazy: the database is read only when something asks."""


class XFrameOptionsMiddleware(Inline, clickjacking.XFrameOptionsMiddleware):
    pass


class SessionMiddleware(Inline, sessions.SessionMiddleware):
    """The session is loaded lazily; saving one (a sign-in, a change) goes to a thread."""

    def _respond(self, request: HttpRequest, response: HttpResponseBase) -> Any:
        session = getattr(request, "session", None)
        if session is not None and (session.modified or settings.SESSION_SAVE_EVERY_REQUEST):
            return sync_to_async(self.process_response)(request, response)
        return self.process_response(request, response)


class MessageMiddleware(Inline, messages.MessageMiddleware):
    """Messages are stored (in a cookie, or the session) only once used or added: then in
    a thread."""

    def _respond(self, request: HttpRequest, response: HttpResponseBase) -> Any:
        storage = getattr(request, "_messages", None)
        if storage is not None and (storage.used or storage.added_new):
            return sync_to_async(self.process_response)(request, response)
        return self.process_response(request, response)
