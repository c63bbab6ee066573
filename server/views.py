import asyncio
import dataclasses
import json
import logging
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from cross_web import HTTPException
from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.middleware.csrf import CsrfViewMiddleware, get_token
from strawberry.django.views import AsyncGraphQLView
from strawberry.http.streaming import MultipartSubscriptionTransport, SSETransport
from strawberry.subscriptions import GRAPHQL_SSE_PROTOCOL, MULTIPART_SUBSCRIPTION_PROTOCOL
from strawberry.types.graphql import OperationType
from strawberry.utils.operation import get_operation_type

from chat import events
from chat.auth import parse_authorization
from schema.context import Context
from schema.documents import parse_cached
from schema.errors import OUTAGES, RETRY_AFTER_OUTAGE, UNAVAILABLE
from schema.persisted import DocumentError, resolve
from server import tokens

logger = logging.getLogger(__name__)

INVALID_TOKEN = "The access token is invalid, expired or revoked. Sign in again."  # noqa: S105


def error_response(status: int, message: str, code: str, **extensions: Any) -> JsonResponse:
    """A request refused before GraphQL ran, in the shape clients already parse."""
    body = {"errors": [{"message": message, "extensions": {"code": code, **extensions}}]}
    response = JsonResponse(body, status=status)
    if "retryAfter" in extensions:
        response["Retry-After"] = str(extensions["retryAfter"])
    return response


GRAPHQL_RESPONSE = "application/graphql-response+json"
# A request error's status for clients that accept application/graphql-response+json (the
# GraphQL-over-HTTP spec); clients that accept only application/json always get 200.
REQUEST_ERROR_STATUS = {"RATE_LIMITED": 429, "SERVICE_UNAVAILABLE": 503}


def accepts_graphql_response(request: HttpRequest) -> bool:
    """Whether the Accept header lists application/graphql-response+json (q above 0)."""
    for item in request.headers.get("Accept", "").split(","):
        media_type, *params = (part.strip() for part in item.split(";"))
        if media_type.lower() == GRAPHQL_RESPONSE:
            return not any(p.replace(" ", "") in {"q=0", "q=0.0", "q=0.00"} for p in params)
    return False


def decode_json(data: str | bytes) -> object:
    """`json.loads`, failing only with `JSONDecodeError`: invalid UTF-8 and nesting deeper
    than the parser's recursion limit are malformed input too, not server errors."""
    try:
        return json.loads(data)
    except json.JSONDecodeError:
        raise
    except (UnicodeDecodeError, RecursionError, ValueError) as error:
        raise json.JSONDecodeError(f"Malformed JSON: {type(error).__name__}", "", 0) from None


def _field(form: Any, name: str) -> str:
    if name not in form:
        raise HTTPException(400, f"The multipart body has no `{name}` field.")
    return form[name]


def place_files(operations: dict[str, Any], files_map: object, files: Any) -> dict[str, Any]:
    """Put each file part where `map` says (`{"0": ["variables.file"]}`), checking every
    step: a path may only lead into `variables`, to a value that is null (where the
    client's file was), and each mapped part must be a file of this request."""
    if not isinstance(files_map, dict):
        raise HTTPException(400, "`map` must be a JSON object of file part names to paths.")
    unused = set(files) - set(files_map)
    if unused:
        raise HTTPException(400, f"File parts missing from `map`: {', '.join(sorted(unused))}.")
    for part, paths in files_map.items():
        if part not in files:
            raise HTTPException(400, f"`map` names a file part the body lacks: {part!r}.")
        if not isinstance(paths, list) or not paths:
            raise HTTPException(400, f"`map[{part!r}]` must be a non-empty list of paths.")
        for path in paths:
            _place(operations, path, files[part])
    return operations


def _place(operations: dict[str, Any], path: object, file: Any) -> None:
    keys = path.split(".") if isinstance(path, str) else []
    if len(keys) < 2 or keys[0] != "variables":
        raise HTTPException(400, f"A `map` path must start with `variables.`: {path!r}.")
    target: Any = operations
    for key in keys[:-1]:
        target = _step(target, key, path)
    last = keys[-1]
    if isinstance(target, list) and last.isdigit() and int(last) < len(target):
        index: Any = int(last)
    elif isinstance(target, dict) and last in target:
        index = last
    else:
        raise HTTPException(400, f"A `map` path leads nowhere in `operations`: {path!r}.")
    if target[index] is not None:
        raise HTTPException(400, f"A `map` path must lead to a null: {path!r}.")
    target[index] = file


def _step(target: Any, key: str, path: str) -> Any:
    if isinstance(target, dict) and key in target:
        return target[key]
    if isinstance(target, list) and key.isdigit() and int(key) < len(target):
        return target[int(key)]
    raise HTTPException(400, f"A `map` path leads nowhere in `operations`: {path!r}.")


# Subscriptions over HTTP, in the order a request's Accept header is matched against them.
HTTP_SUBSCRIPTION_PROTOCOLS = (MULTIPART_SUBSCRIPTION_PROTOCOL, GRAPHQL_SSE_PROTOCOL)


class EventStreamTransport(SSETransport):
    """Server-sent events with LF line endings (as valid as CRLF): urql's event-stream
    parser splits events on a blank LF line only, and saw nothing in Strawberry's CRLF."""

    def encode_event(self, event: str, data: str | None = None) -> str:
        return super().encode_event(event, data).replace("\r\n", "\n")

    def encode_comment(self, comment: str) -> str:
        return f": {comment}\n\n"


def _subscribes(request_data: Any) -> bool:
    """Whether the request's operation is a subscription (False when it cannot be told:
    the error is then reported as JSON)."""
    try:
        document = parse_cached(request_data.query or "")
        return get_operation_type(document, request_data.operation_name) == (
            OperationType.SUBSCRIPTION
        )
    except Exception:
        return False


class _CsrfCheck(CsrfViewMiddleware):
    def _reject(self, request: HttpRequest, reason: str) -> str:  # type: ignore[override]
        return reason


MULTIPART_NEEDS_HEADER = (
    "A multipart request signed in by a session cookie must carry an X-CSRFToken or an "
    "Apollo-Require-Preflight header."
)


def csrf_refusal(request: HttpRequest) -> str | None:
    """Why a cookie-authenticated request is refused as a possible forgery, or None.

    Django's check (a CSRF token, and a trusted Origin) applies to every such request. A
    multipart body is what an HTML form can post across sites, so it must also carry a
    header no form can set: X-CSRFToken, or `Apollo-Require-Preflight`, which makes a
    browser ask first (CORS) and is then trusted in place of the token when the Origin is
    this site or one of ALLOWED_ORIGINS, as Apollo Server's CSRF prevention does."""
    multipart = request.content_type == "multipart/form-data"
    if multipart and "Apollo-Require-Preflight" in request.headers:
        origin = request.headers.get("Origin")
        if origin is None or origin == f"{request.scheme}://{request.get_host()}":
            return None
        return None if origin in settings.ALLOWED_ORIGINS else f"Origin {origin} is not allowed."
    if multipart and "X-CSRFToken" not in request.headers:
        return MULTIPART_NEEDS_HEADER
    check = _CsrfCheck(lambda r: HttpResponse())
    return check.process_view(request, None, (), {})


class GraphQLView(AsyncGraphQLView):
    """GraphQL over HTTP, authenticated by a bearer token or a cookie session.

    The view is CSRF-exempt because a bearer token is not ambient: a cross-site page
    cannot send it. A request authenticated by its session cookie is checked here,
    exactly as Django's middleware would check it.
    """

    async def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        """Every refusal is JSON with a code: a malformed body is 400, an oversized one
        413, a database or cache outage 503 with `Retry-After`."""
        try:
            if "Authorization" not in request.headers and request.method not in {"GET", "HEAD"}:
                user = await request.auser()
                if user.is_authenticated and (reason := csrf_refusal(request)):
                    return error_response(403, f"CSRF check failed: {reason}", "CSRF_FAILED")
            return await self.run(request=request)
        except HTTPException as error:
            code = "BAD_REQUEST" if error.status_code == 400 else f"HTTP_{error.status_code}"
            return error_response(error.status_code, error.reason, code)
        except DocumentError as error:
            # Apollo's persisted-query link retries with the text on this exact answer.
            status = 200 if error.code == "PERSISTED_QUERY_NOT_FOUND" else 400
            return error_response(status, error.message, error.code)
        except RequestDataTooBig:
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            return error_response(
                413, f"The request body is larger than {limit} bytes.", "PAYLOAD_TOO_LARGE"
            )
        except OUTAGES as error:
            logger.warning("Refused a request: a backing service is unavailable: %s", error)
            return error_response(
                503, UNAVAILABLE, "SERVICE_UNAVAILABLE", retryAfter=RETRY_AFTER_OUTAGE
            )

    def decode_json(self, data: str | bytes) -> object:
        return decode_json(data)

    async def parse_multipart(self, request: Any) -> dict[str, Any]:
        """The operations of a multipart request with its files in place (the GraphQL
        multipart request spec). The body is parsed in a thread (it is file I/O); every
        malformed part is a 400, never a server error."""
        django_request: HttpRequest = request.request
        try:
            form, files = await asyncio.to_thread(
                lambda: (django_request.POST, django_request.FILES)
            )
        except (MultiPartParserError, TooManyFieldsSent, TooManyFilesSent) as error:
            raise HTTPException(400, f"Malformed multipart body: {error}") from None
        operations = self.parse_json(_field(form, "operations"))
        files_map = decode_json(_field(form, "map"))
        return place_files(operations, files_map, files)

    stream_transport_classes_by_protocol = {
        MULTIPART_SUBSCRIPTION_PROTOCOL: MultipartSubscriptionTransport,
        GRAPHQL_SSE_PROTOCOL: EventStreamTransport,
    }

    async def execute_operation(  # type: ignore[override]
        self,
        request: HttpRequest,
        request_adapter: Any,
        request_data: Any,
        context: Context,
        root_value: Any,
        sub_response: Any,
    ) -> Any:
        """Subscriptions stream (multipart/mixed for Apollo, text/event-stream for urql);
        queries and mutations are answered as JSON even when the client also accepts a
        stream, as urql's Accept header always does."""
        if not isinstance(request_data, list) and request_data.protocol != "http":
            if _subscribes(request_data):
                context.streaming = True
            else:
                request_data = dataclasses.replace(request_data, protocol="http")
        return await super().execute_operation(
            request=request,
            request_adapter=request_adapter,
            request_data=request_data,
            context=context,
            root_value=root_value,
            sub_response=sub_response,
        )

    async def get_sub_response(self, request: HttpRequest) -> Any:
        sub_response = await super().get_sub_response(request)
        if accepts_graphql_response(request):
            sub_response["Content-Type"] = f"{GRAPHQL_RESPONSE}; charset=utf-8"
        # `process_result` sees the request, not the response it will be sent with.
        request.graphql_sub_response = sub_response
        return sub_response

    async def process_result(self, request: HttpRequest, result: Any) -> Any:
        """For application/graphql-response+json, a request error (nothing executed: a
        parse, validation or variable error, or a refusal before execution; none has a
        path) is a 4xx or 5xx without a `data` entry, as the GraphQL-over-HTTP spec asks."""
        data = await super().process_result(request, result)
        errors = result.errors or []
        if (
            accepts_graphql_response(request)
            and result.data is None
            and errors
            and not any(error.path for error in errors)
        ):
            data.pop("data", None)
            extensions = errors[0].extensions or {}
            status = REQUEST_ERROR_STATUS.get(extensions.get("code"), 400)
            sub_response = request.graphql_sub_response
            sub_response.status_code = status
            if "retryAfter" in extensions:
                sub_response["Retry-After"] = str(extensions["retryAfter"])
        return data

    def should_render_graphql_ide(self, request: Any) -> bool:
        # A GET carrying only a persisted query's hash is an operation, not a visit.
        return super().should_render_graphql_ide(request) and (
            "extensions" not in request.query_params
        )

    async def parse_http_body(self, request: Any) -> Any:
        """The request, with a persisted document's text in place of its hash."""
        data = await super().parse_http_body(request)
        if isinstance(data, list):
            return data
        return dataclasses.replace(data, query=await resolve(data.query, data.extensions))

    def parse_json(self, data: str | bytes) -> Any:
        parsed = super().parse_json(data)
        if not isinstance(parsed, dict):
            raise HTTPException(400, "The request body must be a JSON object.")
        return parsed

    async def render_graphql_ide(self, request: HttpRequest) -> HttpResponse:
        # GraphiQL reads the `csrftoken` cookie to send cookie-session requests.
        get_token(request)
        return await super().render_graphql_ide(request)

    async def get_context(self, request: HttpRequest, response: HttpResponse) -> Context:
        context = Context(request=request, response=response)
        header = request.headers.get("Authorization")
        if header is not None:
            raw = parse_authorization(header)
            token = await tokens.authenticate(raw) if raw else None
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
    await events.round_trip(get_channel_layer())
