import asyncio
import logging
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware, get_token
from strawberry.django.views import AsyncGraphQLView

from chat.auth import aauthenticate_token, parse_authorization
from schema.context import Context

logger = logging.getLogger(__name__)

INVALID_TOKEN = "The access token is invalid, expired or revoked. Sign in again."  # noqa: S105


class _CsrfCheck(CsrfViewMiddleware):
    def _reject(self, request: HttpRequest, reason: str) -> str:  # type: ignore[override]
        return reason


class GraphQLView(AsyncGraphQLView):
    """GraphQL over HTTP, authenticated by a bearer token or a cookie session.

    The view is CSRF-exempt because a bearer token is not ambient: a cross-site page
    cannot send it. A request authenticated by its session cookie is checked here,
    exactly as Django's middleware would check it.
    """

    async def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if "Authorization" not in request.headers and request.method not in {"GET", "HEAD"}:
            user = await request.auser()
            if user.is_authenticated:
                reason = _CsrfCheck(lambda r: HttpResponse()).process_view(request, None, (), {})
                if reason:
                    return JsonResponse(
                        {
                            "errors": [
                                {
                                    "message": f"CSRF check failed: {reason}",
                                    "extensions": {"code": "CSRF_FAILED"},
                                }
                            ]
                        },
                        status=403,
                    )
        return await super().dispatch(request, *args, **kwargs)

    async def render_graphql_ide(self, request: HttpRequest) -> HttpResponse:
        # GraphiQL reads the `csrftoken` cookie to send cookie-session requests.
        get_token(request)
        return await super().render_graphql_ide(request)

    async def get_context(self, request: HttpRequest, response: HttpResponse) -> Context:
        context = Context(request=request, response=response)
        header = request.headers.get("Authorization")
        if header is not None:
            raw = parse_authorization(header)
            token = await aauthenticate_token(raw) if raw else None
            if token is None:
                context.auth_error = INVALID_TOKEN
            else:
                context.user, context.token = token.user, token
        else:
            user = await request.auser()
            if user.is_authenticated:
                context.user = user
        return context


async def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness for load balancers: the database answers and the channel layer delivers."""
    checks = {
        "database": await _check(_database_ok),
        "channel_layer": await _check(_channel_layer_ok),
    }
    healthy = all(status == "ok" for status in checks.values())
    return JsonResponse(
        {"status": "ok" if healthy else "unavailable", **checks}, status=200 if healthy else 503
    )


async def _check(probe) -> str:
    try:
        await asyncio.wait_for(probe(), timeout=settings.HEALTHZ_TIMEOUT)
    except Exception:
        logger.exception("Health check %s failed", probe.__name__)
        return "error"
    return "ok"


@sync_to_async
def _database_ok() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


async def _channel_layer_ok() -> None:
    """A round trip through the layer. Listens first and sends until it hears itself: on
    Redis pub/sub a message sent before the subscription is in place is simply lost."""
    layer = get_channel_layer()
    channel = await layer.new_channel("healthz.")
    heard = asyncio.ensure_future(layer.receive(channel))
    try:
        while not heard.done():
            await layer.send(channel, {"type": "healthz.ping"})
            await asyncio.wait({heard}, timeout=0.2)
        heard.result()
    finally:
        heard.cancel()
