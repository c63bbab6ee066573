import asyncio
import contextlib
import itertools
import json
import logging
import sys
import time
import uuid
import weakref
from collections import Counter
from collections.abc import Callable
from typing import Any, Literal, NoReturn

from asgiref.sync import sync_to_async
from channels.auth import get_user
from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY
from django.utils import timezone
from strawberry.channels import GraphQLWSConsumer
from strawberry.channels.handlers.ws_handler import ChannelsWebSocketAdapter
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http.exceptions import (
    NonJsonMessageReceived,
    NonTextMessageReceived,
    WebSocketDisconnected,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.types.unset import UNSET, UnsetType

from chat import cancellation, events, metrics, presence
from chat.auth import parse_authorization
from chat.connections import drop_broken
from chat.models import AuthToken, User
from schema import fanout
from schema.context import Context
from schema.errors import OUTAGES
from schema.fanout import Sink, current_sink
from schema.persisted import DocumentError, error_payload, resolve
from server import tokens
from server.collector import process_collector
from server.direct import text_writer
from server.views import decode_json

logger = logging.getLogger(__name__)

# Keys a client may put its token under in the `connection_init` payload: ours, what
# GraphiQL sends from its headers editor, and what several client libraries use.
TOKEN_KEYS = ("authorization", "Authorization", "authToken")


def token_from_params(params: dict[str, Any]) -> tuple[bool, str | None]:
    """(whether credentials were sent, the raw token or None when malformed)."""
    for key in TOKEN_KEYS:
        value = params.get(key)
        if value in (None, ""):
            continue
        if not isinstance(value, str):
            return True, None
        if key == "authToken" and " " not in value.strip():
            return True, value.strip()
        return True, parse_authorization(value)
    return False, None


# Close codes beyond the protocols' own (README, "WebSocket close codes").
TRY_AGAIN_LATER = 1013  # a backing service is down, or the client reads too slowly
TOO_MANY_SOCKETS = 4429


class CloseSocket(Exception):
    """Raised during `connection_init` to close the socket with a code of our own."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


def _is_object(value: object) -> bool:
    return value is None or isinstance(value, dict)


def _is_id(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 128


def _is_operation(payload: object) -> bool:
    # The query may be left out for a persisted document (its hash in `extensions`).
    return (
        isinstance(payload, dict)
        and (
            isinstance(payload.get("query"), str)
            or (payload.get("query") is None and isinstance(payload.get("extensions"), dict))
        )
        and _is_object(payload.get("variables"))
        and isinstance(payload.get("operationName"), str | None)
        and _is_object(payload.get("extensions"))
    )


# What each frame type must carry, per subprotocol. A frame that fails its check (or is
# not an object with a string `type`) closes the socket 4400, on both subprotocols.
TRANSPORT_FRAMES = {
    "connection_init": lambda m: _is_object(m.get("payload")),
    "ping": lambda m: _is_object(m.get("payload")),
    "pong": lambda m: _is_object(m.get("payload")),
    "subscribe": lambda m: _is_id(m.get("id")) and _is_operation(m.get("payload")),
    "complete": lambda m: _is_id(m.get("id")),
}
LEGACY_FRAMES = {
    "connection_init": lambda m: _is_object(m.get("payload")),
    "connection_terminate": lambda m: True,
    "start": lambda m: _is_id(m.get("id")) and _is_operation(m.get("payload")),
    "stop": lambda m: _is_id(m.get("id")),
}


def frame_problem(message: object, frames: dict) -> str | None:
    """Why `message` is not a well-formed frame of the protocol, or None."""
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        return "Every message must be a JSON object with a string `type`."
    check = frames.get(message["type"])
    if check is None:
        return f"Unknown message type: {message['type'][:64]}"
    if not check(message):
        return f"Malformed {message['type']} message."
    return None


async def _with_document(message: dict[str, Any]) -> tuple[dict[str, Any], dict | None]:
    """The subscribe/start message with its persisted document's text filled in, or the
    error to answer its id with."""
    payload = message["payload"]
    try:
        query = await resolve(payload.get("query"), payload.get("extensions"))
    except DocumentError as error:
        return message, error_payload(error)
    # A subscription keeps its document's text for its life, and thousands of sockets
    # send the same one: interned, they share one copy, dropped once none uses it.
    return {**message, "payload": {**payload, "query": sys.intern(query or "")}}, None


async def _connection_init(handler: Any, message: Any, handle: Any) -> None:
    """Run the handler's `connection_init`; a `CloseSocket` from `on_ws_connect` closes."""
    if message.get("payload", ...) is None:
        message = {**message, "payload": {}}
    try:
        await handle(message)
    except CloseSocket as close:
        await handler.websocket.close(code=close.code, reason=close.reason)
    finally:
        # Strawberry cancels its wait for `connection_init` here but kept the task for the
        # socket's life; the loop holds it until its cancellation has run.
        if getattr(handler, "connection_init_timeout_task", None) is not None:
            handler.connection_init_timeout_task = None


class _Adapter(ChannelsWebSocketAdapter):
    async def close(self, code: int, reason: str) -> None:
        # The legacy `graphql-ws` handler closes a refused connection_init with 1011 (an
        # internal error, which clients retry). A refusal is final: close 4403, as
        # `graphql-transport-ws` does, so both protocols tell clients the same thing.
        if code == 1011 and self.ws_consumer.refused:
            code, reason = 4403, "Forbidden"
        await super().close(code, reason)

    async def send_text(self, text: str) -> None:
        """Write an already encoded frame."""
        await self.ws_consumer.send(text)


class _TransportWSHandler(BaseGraphQLTransportWSHandler):
    async def handle_message(self, message: Any) -> None:
        if problem := frame_problem(message, TRANSPORT_FRAMES):
            await self.handle_invalid_message(problem)
            return
        await super().handle_message(message)

    async def handle_connection_init(self, message: Any) -> None:
        await _connection_init(self, message, super().handle_connection_init)

    async def handle_subscribe(self, message: Any) -> None:
        message, error = await _with_document(message)
        if error is not None and self.connection_acknowledged:
            await self.send_message({"id": message["id"], "type": "error", "payload": [error]})
            return
        await super().handle_subscribe(message)

    async def run_operation(self, operation: Operation) -> None:
        # The operation's task carries its sink, so the subscription can hand it to the
        # fan-out hub (schema.fanout) for frames written without the generator.
        current_sink.set(
            Sink(
                operation_id=operation.id,
                query=operation.query,
                operation_name=operation.operation_name,
                variables=operation.variables,
                context=self.context,
                schema=self.schema,
                prefix=f'{{"id":{json.dumps(operation.id)},"type":"next","payload":',
                send_text=self.websocket.send_text,
                is_open=lambda: (
                    self.operations.get(operation.id) is operation and not operation.completed
                ),
                encode_json=self.view.encode_json,
            )
        )
        await super().run_operation(operation)


class _LegacyWSHandler(BaseGraphQLWSHandler):
    """The legacy protocol, held to the same rules as `graphql-transport-ws`: malformed
    JSON or frames close 4400, and a socket silent past the init timeout closes 4408."""

    _initialised = False

    async def handle(self) -> None:
        timeout = asyncio.create_task(self._init_timeout())
        try:
            try:
                async for message in self.websocket.iter_json():
                    await self.handle_message(message)
            except (NonJsonMessageReceived, NonTextMessageReceived):
                await self.websocket.close(code=4400, reason="Messages must be JSON text.")
        except WebSocketDisconnected:
            pass
        finally:
            timeout.cancel()
            if self.keep_alive_task:
                self.keep_alive_task.cancel()
                with contextlib.suppress(BaseException):
                    await self.keep_alive_task
            await self.cleanup()

    async def _init_timeout(self) -> None:
        await asyncio.sleep(self.view.connection_init_wait_timeout.total_seconds())
        if not self._initialised:
            await self.websocket.close(code=4408, reason="Connection initialisation timeout")

    async def handle_message(self, message: Any) -> None:
        if problem := frame_problem(message, LEGACY_FRAMES):
            await self.websocket.close(code=4400, reason=problem)
            return
        await super().handle_message(message)

    async def handle_connection_init(self, message: Any) -> None:
        if self._initialised:
            await self.websocket.close(code=4429, reason="Too many initialisation requests")
            return
        self._initialised = True
        await _connection_init(self, message, super().handle_connection_init)

    async def handle_start(self, message: Any) -> None:
        message, error = await _with_document(message)
        if error is not None and self.connection_acknowledged:
            await self.send_message({"type": "error", "id": message["id"], "payload": error})
            return
        await super().handle_start(message)

    async def handle_async_results(
        self,
        operation_id: str,
        query: str,
        operation_name: str | None,
        variables: dict[str, object] | None,
    ) -> None:
        task = asyncio.current_task()
        current_sink.set(
            Sink(
                operation_id=operation_id,
                query=query,
                operation_name=operation_name,
                variables=variables,
                context=self.context,
                schema=self.schema,
                prefix=f'{{"type":"data","id":{json.dumps(operation_id)},"payload":',
                send_text=self.websocket.send_text,
                is_open=lambda: self.tasks.get(operation_id) is task,
                encode_json=self.view.encode_json,
            )
        )
        await super().handle_async_results(operation_id, query, operation_name, variables)


class GraphQLConsumer(GraphQLWSConsumer):
    """GraphQL over WebSocket (`graphql-transport-ws` and legacy `graphql-ws`).

    Authenticates once, at `connection_init`, from the token in its payload; without one
    it falls back to the cookie session the handshake carried (GraphiQL). An authenticated
    socket then holds a presence lease, and is closed (4403) when its token is revoked.
    """

    websocket_adapter_class = _Adapter  # type: ignore[assignment]
    graphql_transport_ws_handler_class = _TransportWSHandler
    graphql_ws_handler_class = _LegacyWSHandler
    refused = False
    _disconnecting = False
    # `server.direct.text_writer` for this socket, once known (False: none).
    _write_text: Callable[[str], None] | Literal[False] | None = None
    viewer: User | None = None
    token: AuthToken | None = None
    _expiry: asyncio.TimerHandle | None = None
    _expiring: asyncio.Task | None = None

    _address: str | None = None
    _session: "_SessionListener | None" = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Strawberry's queue of incoming frames, without the four deques (3 KB) an
        # asyncio.Queue allocates up front for every socket (bench/socket_memory.py).
        self.message_queue = fanout.Mailbox()  # type: ignore[assignment]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Channels' `AsyncConsumer.__call__`, without a channel of the layer per socket.

        Channels subscribes every socket to a channel of its own (on Redis pub/sub, a
        SUBSCRIBE when it opens and an UNSUBSCRIBE when it closes, and a task waiting on
        it all its life), only for the socket to join its user's session group. Here the
        socket hears that group through the fan-out hub (`_SessionListener`): one feed
        per group per process, as subscriptions hear their chats. The name stays, as the
        key of the socket's presence lease.

        With one source of messages left, they are awaited in turn: Channels'
        `await_many_dispatch` ran each `receive` as a task of its own and waited on it with
        `asyncio.wait`, about 2 KB held by every idle socket and a task per message."""
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.channel_name = f"ws.{uuid.uuid4().hex}"
        self.base_send = send
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass
        finally:
            self._finish_handler()

    def _finish_handler(self) -> None:
        """See the GraphQL handler through to its end when this instance ends without
        having run `disconnect` to its end: daphne cancels an instance still running 10 s
        after its socket closed. The loop holds tasks weakly, and left pending the handler
        was garbage-collected ("Task was destroyed but it is pending!") with its
        subscriptions, presence lease and socket count never released."""
        handler = self.run_task
        if handler is None:
            return
        if not self._disconnecting:
            _hold(asyncio.ensure_future(self._disconnect_quietly()))
        elif not handler.done():
            _hold(handler)

    async def _disconnect_quietly(self) -> None:
        try:
            await self.disconnect(1006)
        except Exception:
            logger.exception("Could not clean up after a killed socket")

    async def connect(self) -> None:
        """Count the socket against its client address; past the cap, close it 4429
        before anything else runs."""
        address = _client_address(self.scope)
        if _sockets_by_address[address] >= settings.GRAPHQL_WS_MAX_SOCKETS_PER_ADDRESS:
            await self.accept(subprotocol=await self.pick_websocket_subprotocol(self))
            await self.close(code=TOO_MANY_SOCKETS, reason="Too many connections")
            self.run_task = asyncio.create_task(asyncio.sleep(0))
            return
        _sockets_by_address[address] += 1
        self._address = address
        if (collector := process_collector()) is not None:
            collector.socket_opened()
        # From the first socket, signed in or not: what any socket holds is frozen while
        # it is open, and only the collector's walks reclaim it.
        _ensure_background_tasks()
        await super().connect()

    async def send(
        self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False
    ) -> None:
        """Channels' own, with text frames written straight to daphne (`server.direct`)."""
        if text_data is not None and not close:
            if self._write_text is None:
                self._write_text = text_writer(self.base_send) or False
            if self._write_text:
                self._write_text(text_data)
                return
        await super().send(text_data, bytes_data, close)

    def decode_json(self, data: str | bytes) -> object:
        return decode_json(data)

    async def get_context(self, request: Any, response: Any) -> Context:  # type: ignore[override]
        return Context(request=self, user=None)  # signed in at connection_init

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        """Every socket must be signed in: by a token in the payload, or by the cookie
        session its handshake carried. Refusals close 4403; a database outage 1013."""
        sent, raw = token_from_params(context.connection_params or {})
        started = time.perf_counter()
        if not fanout.hub().layer_ok:
            # This process's probe finds the layer down: the socket would not hear its
            # session's revocation (it may join a session feed this process already has,
            # without asking Redis), so it is refused before any work, as in an outage.
            _unavailable("the channel layer is down")
        try:
            if sent:
                token = await tokens.authenticate(raw, before=drop_broken) if raw else None
                if token is None:
                    self._refuse("Invalid or expired token.")
                context.user, context.token = token.user, token
            else:
                context.user = await _session_user(self.scope)
            if context.user is None:
                self._refuse("Sign in first: send your token in the connection_init payload.")
            await self._signed_in(context.user, context.token)
        except OUTAGES as error:
            _unavailable(error)
        # The raw token is not needed again (nor kept in memory for the socket's life).
        context.connection_params = None
        _forget_handshake(self.scope)
        metrics.CONNECT_SECONDS.observe(time.perf_counter() - started)
        return UNSET

    def _refuse(self, message: str) -> None:
        metrics.REFUSED_SOCKETS.labels("unauthenticated").inc()
        self.refused = True
        raise ConnectionRejectionError({"message": message, "code": "UNAUTHENTICATED"})

    async def _signed_in(self, user: User, token: AuthToken | None) -> None:
        try:
            admitted = await presence.socket_opened(
                user, self.channel_name, cap=settings.GRAPHQL_WS_MAX_SOCKETS_PER_USER
            )
        except Exception:
            # Presence is best effort: the process's heartbeat takes the lease later; the
            # socket works regardless.
            logger.exception("Could not take a presence lease")
            admitted = True
        if not admitted:
            metrics.REFUSED_SOCKETS.labels("too_many_sockets").inc()
            raise CloseSocket(TOO_MANY_SOCKETS, "Too many connections")
        self.viewer, self.token = user, token
        _live_sockets.add(self)
        metrics.OPEN_SOCKETS.inc()
        if token is not None:
            # A token is checked once, at connection_init: close the socket when it expires,
            # as a request with it would be refused from then on.
            left = (token.expires_at - timezone.now()).total_seconds()
            self._expiry = asyncio.get_running_loop().call_later(max(0.0, left), self._expired)
        self._session = _SessionListener(self)
        await fanout.hub().add(self._session, events.session_group(user.id))

    async def _session_still_valid(self) -> bool:
        if self.token is not None:
            return await AuthToken.objects.filter(
                pk=self.token.pk,
                revoked_at__isnull=True,
                expires_at__gt=timezone.now(),
                user__is_active=True,
            ).aexists()
        # A cookie session: ended by a password change (Django's session hash) or by
        # deactivation.
        user = await User.objects.filter(pk=self.viewer.pk, is_active=True).afirst()
        session = self.scope.get("session")
        stored = await sync_to_async(session.get)(HASH_SESSION_KEY) if session else None
        return user is not None and stored == user.get_session_auth_hash()

    def _expired(self) -> None:
        self._expiring = asyncio.create_task(self.close(code=4403, reason="Session expired"))

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Strawberry's and Channels' dispatch, without the `close_old_connections` hop
        Channels makes before every frame: with `CONN_MAX_AGE=0` that closed the database
        connection each time, so the next query opened a new one (`chat.connections`
        keeps it healthy instead)."""
        if (handler := getattr(self, get_handler_name(message), None)) is not None:
            await handler(message)
        else:
            raise ValueError(f"No handler for message type {message.get('type')}")

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        """Channels' own, without its `close_old_connections` (see `dispatch`)."""
        await self.disconnect(message["code"])
        raise StopConsumer

    def _revoked_by(self, message: dict[str, Any]) -> bool:
        """Whether a session event ends this socket's sign-in."""
        if message.get("type") != events.SESSION_MESSAGE_TYPE:
            return False
        mine = str(self.token.pk) if self.token else None
        revoked = message["token_ids"]
        if revoked is None:
            return mine is None or mine != message["keep"]
        return mine is not None and mine in revoked

    async def disconnect(self, code: int) -> None:
        self._disconnecting = True
        if self._address is not None:
            _sockets_by_address[self._address] -= 1
            if not _sockets_by_address[self._address]:
                del _sockets_by_address[self._address]
            self._address = None
            if (collector := process_collector()) is not None:
                collector.socket_closed()
        try:
            await super().disconnect(code)
        finally:
            if self._expiry is not None:
                self._expiry.cancel()
            if self.viewer is not None:
                _live_sockets.discard(self)
                metrics.OPEN_SOCKETS.dec()
                if self._session is not None:
                    fanout.hub().remove(self._session, events.session_group(self.viewer.id))
                try:
                    await presence.socket_closed(self.viewer, self.channel_name)
                except Exception:
                    logger.exception("Could not release the presence lease")


class _SessionListener:
    """A socket's ear on its user's session group, through the fan-out hub: a revocation
    closes the socket 4403. After a layer outage the heartbeat asks the database instead
    (`_beat_forever`), so a resync asks nothing of it."""

    wants = None
    sink = None

    def __init__(self, consumer: GraphQLConsumer) -> None:
        self.consumer = weakref.ref(consumer)
        self.groups: set[str] = set()

    def put(self, message: dict[str, Any]) -> None:
        consumer = self.consumer()
        if consumer is not None and consumer._revoked_by(message):
            _hold(asyncio.ensure_future(consumer.close(code=4403, reason="Session revoked")))

    def resync(self) -> None:
        pass


# Request headers a socket reads once signed in: the host its media URLs start with
# (`Context.media_base`) and the user agent a device registers with.
KEPT_HEADERS = frozenset({b"host", b"user-agent"})


def _forget_handshake(scope: dict[str, Any]) -> None:
    """Let go of the handshake's headers and cookies a signed-in socket never reads
    again: a browser's are often 1-3 KB, held for as long as the socket is open. The
    list is trimmed in place, as daphne's protocol and every copy of the scope share it;
    the session, already taken from the cookies, stays."""
    headers = scope.get("headers")
    if isinstance(headers, list):
        headers[:] = [header for header in headers if header[0] in KEPT_HEADERS]
    if scope.get("cookies"):
        scope["cookies"] = {}


def _unavailable(reason: object) -> NoReturn:
    """Refuse a signing-in socket 1013 (try again later): a backing service is down."""
    logger.warning("Refused a socket: a backing service is unavailable: %s", reason)
    metrics.REFUSED_SOCKETS.labels("unavailable").inc()
    raise CloseSocket(TRY_AGAIN_LATER, "Service unavailable") from None


async def _session_user(scope: dict[str, Any]) -> User | None:
    """The user of the cookie session the handshake carried (GraphiQL), looked up only
    for sockets that send no token."""
    if scope.get("session") is None:
        return None
    user = await get_user(scope)
    return user if user.is_authenticated else None


# Open sockets of this process by client address.
_sockets_by_address: Counter[str] = Counter()


def _client_address(scope: dict[str, Any]) -> str:
    client = scope.get("client")
    return client[0] if client else "unknown"


# This process's signed-in sockets, which its heartbeat looks after.
_live_sockets: "weakref.WeakSet[GraphQLConsumer]" = weakref.WeakSet()
# Tasks that outlive their consumer (`_finish_handler`), held until they end.
_finishing: set[asyncio.Future] = set()


def _hold(task: asyncio.Future) -> None:
    _finishing.add(task)
    task.add_done_callback(_finishing.discard)


_background: dict[asyncio.AbstractEventLoop, list[asyncio.Task]] = {}
# Seconds between the garbage-collection policy's checks.
GC_TICK = 1


def _ensure_background_tasks() -> None:
    """One heartbeat, one sweeper and the collector's policy per process (per event loop:
    tests run one per test), started by the first socket."""
    loop = asyncio.get_running_loop()
    tasks = _background.get(loop)
    if tasks is None or any(task.done() for task in tasks):
        for task in tasks or ():
            task.cancel()
        _background.clear()  # a loop that is gone keeps no tasks
        _background[loop] = [
            loop.create_task(_beat_forever()),
            loop.create_task(_sweep_forever()),
            loop.create_task(_collect_forever()),
        ]


async def _beat_forever() -> None:
    """The heartbeat: renew every lease this process holds at once, rather than one task
    and one Redis call per socket (at 5,000 idle sockets that was a fifth of a core)."""
    outages_seen, missed = fanout.hub().outages, False
    while True:
        cancellation.check()
        await asyncio.sleep(settings.PRESENCE_HEARTBEAT)
        sockets = list(_live_sockets)
        try:
            await presence.renew()
        except Exception as error:
            missed = True
            logger.warning("Presence heartbeat failed: %s", error)
            continue
        # A revocation published while Redis was down never arrived: once it is back,
        # ask the database instead (one query per socket per outage).
        if missed or fanout.hub().outages != outages_seen:
            outages_seen, missed = fanout.hub().outages, False
            for socket in sockets:
                try:
                    if not await socket._session_still_valid():
                        await socket.close(code=4403, reason="Session revoked")
                except Exception as error:
                    missed = True
                    logger.warning("Could not re-check a session: %s", error)


async def _collect_forever() -> None:
    """The garbage collector's policy for open sockets (`server.collector`)."""
    collector = process_collector()
    while collector is not None:
        await asyncio.sleep(GC_TICK)
        started = time.perf_counter()
        if collector.tick():
            logger.info("Collected garbage in %.0f ms", (time.perf_counter() - started) * 1000)


async def _sweep_forever() -> None:
    # Every sweep reports the users of dead processes offline; the first one after start,
    # and one every PRESENCE_RECONCILE_INTERVAL, also repairs the database's record of
    # who is online (users a crashed process left online).
    interval = max(1, settings.PRESENCE_SWEEP_INTERVAL)
    every = max(1, settings.PRESENCE_RECONCILE_INTERVAL // interval)
    for sweeps in itertools.count():
        cancellation.check()
        await asyncio.sleep(interval)
        try:
            await sync_to_async(drop_broken)()
            if sweeps % every == 0:
                await presence.reconcile()
            await presence.sweep()
        except Exception:
            logger.exception("Presence sweep failed")
