"""Serve the project with daphne, doing in-process what daphne leaves to a proxy.

    python -m server.serve [daphne's options] server.asgi:application

Daphne's command line, with seven differences:

- **Request bodies are bounded before they are held.** Daphne reads a whole body, then
  queues all of it for the application at once, in memory: a 1 GiB POST grew a process by
  800 MB before Django's own limit refused it. Here a body over `HTTP_MAX_BODY_SIZE` (one
  `UPLOAD_MAX_BYTES` more for a multipart upload: `server.bodylimit`) is answered 413
  from its `Content-Length`, or as soon as a chunked body passes the limit, and its bytes
  are dropped as they arrive.
- **Bodies are parsed once, by the application.** Twisted parses a POSTed form for its own
  `request.args`, which daphne never reads: uploads were decoded twice, and a malformed
  multipart body got Twisted's empty 400 instead of the application's JSON error.
- **Slow readers are bounded.** A WebSocket's frames go to the kernel through Twisted's
  write buffer, which grows without limit for a client that does not read. Past
  `WEBSOCKET_MAX_BUFFERED_BYTES` the socket is closed 1013 (try again later); the client
  resubscribes with `after` and loses nothing.
- **Handshakes wait longer.** Daphne drops a WebSocket handshake the application has not
  accepted within `--websocket_connect_timeout`; its default here is
  `WEBSOCKET_CONNECT_TIMEOUT` (30 s) instead of 5, so that a reconnect storm drains
  instead of feeding itself with retries.
- **The listen backlog fits a storm.** Twisted listens with room for 50 connections not
  yet accepted; here `LISTEN_BACKLOG` (4096), so that thousands of clients reconnecting
  at once are not dropped by the kernel and made to retry (`with_backlog`).
- **Socket reads and writes skip Twisted's legacy log context** (`server.reactor`): a
  seventh of an idle process's CPU.
- **SIGTERM drains.** The process stops accepting connections, closes every WebSocket
  with 1012 (service restart) so clients reconnect to another process and resume with
  `after`, lets requests in flight finish for up to `SHUTDOWN_TIMEOUT` seconds, and
  exits. A second SIGTERM or SIGINT exits at once.

Daphne builds its HTTP and WebSocket factories inside `Server.run` with no hook to
change their classes, so this module puts its own in daphne's server module before the
server starts; nothing else in the process is affected.
"""

import asyncio
import contextlib
import functools
import heapq
import itertools
import logging
import os
import signal
import struct
import sys
import time
from collections import deque
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

import daphne.server  # installs the asyncio reactor: import before anything Twisted
from daphne.cli import CommandLineInterface
from daphne.http_protocol import HTTPFactory, WebRequest
from daphne.ws_protocol import WebSocketFactory, WebSocketProtocol
from twisted.internet import defer, reactor

from server import masking
from server.bodylimit import body_limit, too_large_body
from server.reactor import call_io_directly

logger = logging.getLogger("server.serve")

# WebSocket close codes (README, "WebSocket close codes").
SERVICE_RESTART = 1012
TRY_AGAIN_LATER = 1013


def _settings() -> Any:
    from django.conf import settings

    return settings


class BoundedRequest(WebRequest):
    """An HTTP request whose body may not exceed `server.bodylimit.body_limit`:
    `HTTP_MAX_BODY_SIZE`, and one upload more for a multipart body."""

    _received = 0
    _refused = False
    _limit = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Twisted parses every POSTed form into `request.args`, which daphne never reads:
        # a multipart upload was decoded twice (on the event loop: 10 MB of tiny fields
        # stalled the process for seconds), and a body Twisted could not parse got an
        # empty 400 of its own instead of the application's JSON error.
        super().__init__(*args, parsePOSTFormSubmission=False, **kwargs)

    def gotLength(self, length: int | None) -> None:
        # The headers are in by now: the limit depends on the content type.
        content_type = (self.requestHeaders.getRawHeaders(b"content-type") or [b""])[0]
        self._limit = body_limit(content_type)
        if length is not None and length > self._limit:
            self.content = None
            self._refuse()
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self._refused:
            return
        self._received += len(data)
        if self._received > self._limit:
            self._refuse()
            return
        super().handleContentChunk(data)

    def _refuse(self) -> None:
        """Answer 413 now and close once it is written; later bytes are dropped."""
        self._refused = True
        # Twisted would otherwise invite the client to send the body after our answer.
        self.requestHeaders.removeHeader(b"Expect")
        body = too_large_body(self._limit)
        head = (
            "HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        transport = self.channel.transport
        transport.write(head + body)
        transport.loseConnection()

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if not self._refused:
            super().requestReceived(command, path, version)

    def process(self) -> None:
        super().process()
        if self.transport is None and self.channel is not None:
            # Upgraded to a WebSocket: daphne handed the connection on, but Twisted's HTTP
            # channel stays registered as the transport's producer and kept this request,
            # its headers and body buffer for as long as the socket was open (about 3 KB).
            with contextlib.suppress(ValueError):
                self.channel.requests.remove(self)


class BoundedHTTPFactory(HTTPFactory):
    def buildProtocol(self, addr: Any) -> Any:
        protocol = super().buildProtocol(addr)
        protocol.requestFactory = BoundedRequest
        return protocol


def buffered_bytes(transport: Any) -> int:
    """What Twisted holds for a TCP transport, not yet taken by the kernel."""
    pending = len(getattr(transport, "dataBuffer", b"")) - getattr(transport, "offset", 0)
    return pending + getattr(transport, "_tempDataLen", 0)


# Codes a server may send (RFC 6455, IANA) that autobahn's `sendClose` refuses: it allows
# only 1000 and 3000-4999.
SERVER_CLOSE_CODES = frozenset({1011, SERVICE_RESTART, TRY_AGAIN_LATER})


def write_eagerly(transport: Any, data: bytes) -> None:
    """`transport.write(data)`, handing the data to the kernel at once when nothing is
    queued.

    Twisted queues every write and registers the socket for writing, sends when the loop
    next polls, then unregisters it: two system calls and a loop turn per frame, for a
    socket that can almost always take the frame now. Per delivery that was the largest
    cost left (issue 14, bench/fanout.py). Anything the kernel does not take, or any
    error, goes the usual way, queued behind nothing, so frames keep their order and a
    broken connection is reported as before.

    A function the protocol calls, not a replacement for `transport.write` installed on
    each transport: that closure was kept by every open socket (bench/socket_memory.py).
    """
    sock = getattr(transport, "socket", None)
    if (
        sock is not None
        and not getattr(transport, "TLS", True)
        and transport.connected
        and not transport._writeDisconnected
        and not transport._tempDataBuffer
        and len(transport.dataBuffer) == transport.offset
    ):
        try:
            sent = sock.send(data)
        except OSError:  # would block, or broken: Twisted's own path deals with it
            sent = 0
        if sent == len(data):
            return
        data = data[sent:]
    transport.write(data)


class _NoSendQueue:
    """autobahn's send queue for a connection that has none: empty until something is
    appended, which gives the connection a real one."""

    __slots__ = ("protocol",)

    def __init__(self, protocol: "BoundedWebSocketProtocol") -> None:
        self.protocol = protocol

    def __len__(self) -> int:
        return 0

    def popleft(self) -> Any:
        raise IndexError("pop from an empty deque")

    def append(self, item: Any) -> None:
        self.protocol.send_queue = deque((item,))


class BoundedWebSocketProtocol(WebSocketProtocol):
    """A WebSocket that is closed, not buffered for, when its client stops reading, and
    that can close with the server codes 1011, 1012 and 1013. Its frames (text, pings,
    pongs) are written eagerly (`write_eagerly`)."""

    _overflowed = False
    _send_queue: deque | None = None

    @property
    def send_queue(self) -> "deque | _NoSendQueue":
        """autobahn queues frames here only when it chops or paces them, which this
        server never asks for; yet each connection held an empty deque (760 bytes) for
        its life. It has one only once something is queued."""
        queue = self._send_queue
        return _NoSendQueue(self) if queue is None else queue

    @send_queue.setter
    def send_queue(self, queue: deque) -> None:
        self._send_queue = queue or None

    # autobahn copies its ~30 options from the factory onto each connection, then formats
    # all of them with `pprint` for a debug line built whether or not it is logged: 0.3-0.4
    # ms of every WebSocket connect. Here the factory's protocol class carries them
    # (`BoundedWebSocketFactory.buildProtocol`), so a connection copies and formats none,
    # and its attribute dictionary stays small enough for a smaller table (bench/RESULTS.md).
    OPTIONS = WebSocketProtocol.CONFIG_ATTRS
    CONFIG_ATTRS = ()

    def succeedHandshake(self, res: Any) -> None:
        super().succeedHandshake(res)
        # The headers are in the ASGI scope (daphne's `clean_headers`). autobahn's parsed
        # copy and the raw handshake are not read after it: let them go (about 1.4 KB).
        self.http_headers, self.http_request_data = {}, b""
        request = getattr(self, "request", None)
        if request is not None:
            request.headers = {}

    def onOpen(self) -> None:
        super().onOpen()
        opened = getattr(self.server, "websocket_opened", None)
        if opened is not None:
            opened(self)

    def sendClose(self, code: int | None = None, reason: str | None = None) -> None:
        if code in SERVER_CLOSE_CODES:
            self.sendCloseFrame(code=code, reasonUtf8=(reason or "").encode()[:123] or None)
            return
        super().sendClose(code, reason)

    def serverSend(self, content: Any, binary: bool = False) -> None:
        if self._overflowed:
            return
        if binary or not self._plain_frames():
            super().serverSend(content, binary)
        else:
            self._send_text_frame(content.encode())
        if buffered_bytes(self.transport) > _settings().WEBSOCKET_MAX_BUFFERED_BYTES:
            self._overflowed = True
            logger.warning(
                "Closing a WebSocket of %s: its client is not reading", self.client_addr
            )
            # The close frame queues behind what is buffered; autobahn drops the
            # connection (freeing the buffer) when the closing handshake times out.
            self.sendClose(code=TRY_AGAIN_LATER, reason="Too slow: resubscribe with after")

    def _plain_frames(self) -> bool:
        """Whether a message goes out as autobahn's simplest frame: the socket open, no
        compression, fragmenting, masking, timing or frame logging, nothing queued."""
        return (
            self.state == self.STATE_OPEN
            and self._perMessageCompress is None
            and not self.autoFragmentSize
            and not self.maskServerFrames
            and not self.trackedTimings
            and not self.logFrames
            and not self.logOctets
            and not self._send_queue
        )

    def _send_text_frame(self, payload: bytes) -> None:
        """autobahn's sendMessage, sendFrame and sendData for one plain text frame, the
        same bytes and traffic figures, without their per-frame debug-log arguments:
        those are formatted (with click's terminal styling) whether or not debug logging
        is on, a tenth of a delivery's cost (bench/fanout.py, issue 14)."""
        size = len(payload)
        if 0 < self.maxMessagePayloadSize < size:
            self.sendMessage(payload)  # refuses it, as before
            return
        stats = self.trafficStats
        stats.outgoingWebSocketMessages += 1
        stats.outgoingWebSocketFrames += 1
        stats.outgoingOctetsAppLevel += size
        stats.outgoingOctetsWebSocketLevel += size
        self._write_frame(0x81, payload)

    def dataReceived(self, data: bytes) -> None:
        """autobahn's, without its debug line: its arguments (type names styled for a
        terminal by `click`) were built for every read, logged or not, about 6 µs each
        (bench/RESULTS.md)."""
        self._dataReceived(data)

    def onPing(self, payload: bytes) -> None:
        """A client's ping shows it is there, as daphne takes any message it sends: the
        keep-alive ping is next due an interval after it. A client that pings as often as
        the server would (the `websockets` library's default: 20 s) is then pinged
        rarely, instead of both ends pinging: half of an idle socket's frames."""
        self.last_ping = time.time()
        super().onPing(payload)

    def sendPing(self, payload: bytes | None = None) -> None:
        """A ping (daphne's keep-alive, every `--ping-interval` seconds per socket) written
        as `_send_text_frame` writes text: idle sockets cost mostly pings and pongs."""
        self._send_control(0x89, payload, super().sendPing)

    def sendPong(self, payload: bytes | None = None) -> None:
        """The answer to a client's ping, written as `sendPing` writes a ping."""
        self._send_control(0x8A, payload, super().sendPong)

    def _send_control(
        self, first_byte: int, payload: bytes | None, theirs: Callable[[bytes | None], None]
    ) -> None:
        if (payload is not None and len(payload) > 125) or not self._plain_frames():
            theirs(payload)  # refused (too long), or not plain: autobahn's way
            return
        self._write_frame(first_byte, payload or b"")

    def _write_frame(self, first_byte: int, payload: bytes) -> None:
        """One final, unmasked frame: `first_byte` is FIN and the opcode."""
        size = len(payload)
        if size <= 125:
            header = bytes((first_byte, size))
        elif size <= 0xFFFF:
            header = struct.pack("!BBH", first_byte, 126, size)
        else:
            header = struct.pack("!BBQ", first_byte, 127, size)
        self.trafficStats.outgoingOctetsWireLevel += len(header) + size
        write_eagerly(self.transport, header + payload)


class BoundedWebSocketFactory(WebSocketFactory):
    protocol = BoundedWebSocketProtocol
    _options: list[Any] | None = None

    def buildProtocol(self, addr: Any) -> Any:
        """A connection of a protocol class that holds this factory's options as class
        attributes; remade whenever an option changed (daphne sets them after building
        the factory)."""
        options = [getattr(self, name) for name in BoundedWebSocketProtocol.OPTIONS]
        if options != self._options:
            self._options = options
            # A function kept as a class attribute would be bound to the connection.
            attributes = {
                name: staticmethod(value) if callable(value) else value
                for name, value in zip(BoundedWebSocketProtocol.OPTIONS, options, strict=True)
            }
            self.protocol = type(
                "ConfiguredWebSocketProtocol", (BoundedWebSocketProtocol,), attributes
            )
        return super().buildProtocol(addr)


def with_backlog(endpoint: str, backlog: int) -> str:
    """A TCP or Unix listening endpoint with room for `backlog` connections not yet
    accepted, unless it names its own.

    Twisted's default is 50. In a reconnect storm thousands of clients connect at once:
    the kernel dropped the handshakes past the 50th (10,514 `TcpExtListenOverflows` in one
    5,000-socket storm, none with 4,096), the clients' TCP sent them again after 1, 2, 4,
    8 s, and some storms took 120 s instead of 40 (bench/reconnect.py, issue 14). The
    kernel caps it at `net.core.somaxconn`."""
    kind, _, options = endpoint.partition(":")
    if kind not in {"tcp", "unix"} or "backlog=" in options:
        return endpoint
    return f"{endpoint}:backlog={backlog}"


# daphne's `scope["asgi"]` for a WebSocket, shared (read-only) rather than one per socket.
ASGI_VERSION = MappingProxyType({"version": "3.0"})


class GracefulServer(daphne.server.Server):
    """Daphne's server, draining on SIGTERM instead of cancelling everything at once."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.endpoints = [with_backlog(e, _settings().LISTEN_BACKLOG) for e in self.endpoints]
        # Signals are ours (`_drain`); Twisted's would stop the reactor at once.
        self.signal_handlers = False
        self.ports: list[Any] = []
        self.draining = False
        # Connections whose application instance ended or whose client left since the
        # last `application_checker`: the only ones it has anything to do for.
        self._changed: set[Any] = set()
        # What `timeout_checker` walks every 2 s: every connection but open WebSockets,
        # which wait in `_pings`, by when their next check is due.
        self._watched: dict[Any, None] = {}
        self._pings: list[tuple[float, int, Any]] = []
        self._order = itertools.count()
        self._closed_since_pruned = 0

    def create_application(self, protocol: Any, scope: dict) -> Any:
        if scope.get("type") == "websocket":
            queue = self._create_websocket_application(protocol, scope)
        else:
            queue = super().create_application(protocol, scope)
        instance = self.connections.get(protocol, {}).get("application_instance")
        if instance is not None:
            instance.add_done_callback(functools.partial(self._instance_done, protocol))
        return queue

    def _instance_done(self, protocol: Any, instance: asyncio.Future) -> None:
        """An HTTP request whose response went out and whose application returned is
        dropped at once, where daphne's checker would hold it up to a second: its scope,
        request and application task then outlived two young collections into the oldest
        generation, whose growth set off a full collection every few hundred requests
        (bench/RESULTS.md, issue 14, session 24). Anything else waits for the checker,
        which logs a failed application's exception."""
        details = self.connections.get(protocol)
        if (
            details is not None
            and isinstance(protocol, WebRequest)
            and "disconnected" in details
            and not instance.cancelled()
            and instance.exception() is None
        ):
            del self.connections[protocol]
            self._watched.pop(protocol, None)
            return
        self._changed.add(protocol)

    def _create_websocket_application(self, protocol: Any, scope: dict) -> Any:
        """daphne's `create_application`, with a `Mailbox` for the socket's incoming
        messages: an `asyncio.Queue` allocates four deques (3 KB) up front, held for as
        long as the socket is open. A consumer reads them one at a time, as a Mailbox
        needs; an HTTP request may have two readers, so it keeps daphne's queue."""
        from schema.fanout import Mailbox

        mailbox = Mailbox()
        scope.setdefault("asgi", ASGI_VERSION)
        instance = self.application(
            scope=scope, receive=mailbox.get, send=functools.partial(self.handle_reply, protocol)
        )
        if protocol not in self.connections:
            return None
        self.connections[protocol]["application_instance"] = asyncio.ensure_future(
            instance, loop=asyncio.get_event_loop()
        )
        return mailbox

    def protocol_disconnected(self, protocol: Any) -> None:
        super().protocol_disconnected(protocol)
        self._changed.add(protocol)
        if isinstance(protocol, WebSocketProtocol):
            self._closed_since_pruned += 1
            if self._closed_since_pruned * 2 > len(self._pings):
                self._prune_pings()

    def _prune_pings(self) -> None:
        """Drop closed sockets from the ping schedule. Left until they came due, a storm's
        closed connections were held up to a ping interval after daphne let them go; pruned
        once half the schedule may be closed, the cost is linear in what is dropped."""
        self._closed_since_pruned = 0
        open_ = WebSocketProtocol.STATE_OPEN
        self._pings = [entry for entry in self._pings if entry[2].state == open_]
        heapq.heapify(self._pings)

    def application_checker(self) -> None:
        """daphne's once-a-second reaping (finished instances logged and dropped, those
        still running past `--application-close-timeout` after their client left
        cancelled), run over the connections that changed instead of all of them.

        daphne walks every connection every second; at 5,000 idle sockets that walk was a
        tenth of the process's idle CPU (bench/reconnect.py, issue 14). daphne's own code
        still does the work, over a narrowed `connections`: a connection it keeps is
        merged back, one it drops is dropped, and one whose client left but whose
        instance still runs is looked at again next second, as daphne would (it also
        schedules the next run).
        """
        changed, self._changed = self._changed, set()
        everyone = self.connections
        self.connections = {p: everyone[p] for p in changed if p in everyone}
        try:
            super().application_checker()
        finally:
            kept, self.connections = self.connections, everyone
            for protocol in changed:
                if protocol not in kept:
                    everyone.pop(protocol, None)
                elif "disconnected" in kept[protocol]:
                    self._changed.add(protocol)

    def protocol_connected(self, protocol: Any) -> None:
        super().protocol_connected(protocol)
        self._watched[protocol] = None

    def websocket_opened(self, protocol: Any) -> None:
        """An open WebSocket leaves the two-second walk (`timeout_checker`) for the ping
        schedule: it has nothing due before its next ping or the end of its lifetime."""
        self._watched.pop(protocol, None)
        self._schedule(protocol)

    def _schedule(self, protocol: Any) -> None:
        due = protocol.last_ping + self.ping_interval
        if self.websocket_timeout >= 0:
            due = min(due, protocol.socket_opened + self.websocket_timeout)
        heapq.heappush(self._pings, (due, next(self._order), protocol))

    def timeout_checker(self) -> None:
        """daphne's checks, every 2 s: HTTP requests and WebSockets not yet open (or never
        opened) are walked as daphne walks every connection; an open WebSocket is looked
        at only when its ping or the end of its lifetime is due.

        daphne walked all connections every 2 s to find the few with a ping due: at 5,000
        idle sockets that walk was an eighth of the process's idle CPU (py-spy,
        bench/RESULTS.md). Pings and lifetimes keep daphne's rules and its 2 s grain."""
        now = time.time()
        for protocol in list(self._watched):
            if protocol in self.connections:
                protocol.check_timeouts()
            else:
                del self._watched[protocol]  # gone (daphne reaped it)
        due = []
        while self._pings and self._pings[0][0] <= now:
            due.append(heapq.heappop(self._pings)[2])
        lifetime, interval = self.websocket_timeout, self.ping_interval
        for protocol in due:
            if protocol.state != WebSocketProtocol.STATE_OPEN:
                continue  # closing or closed: nothing more to check
            if 0 <= lifetime < now - protocol.socket_opened:
                protocol.serverClose()
                continue
            if now - protocol.last_ping > interval:
                protocol._sendAutoPing()
                protocol.last_ping = now
            self._schedule(protocol)
        reactor.callLater(2, self.timeout_checker)

    def listen_success(self, port: Any) -> None:
        self.ports.append(port)
        super().listen_success(port)

    def run(self) -> None:
        reactor.callWhenRunning(self._install_signal_handlers)
        super().run()

    def _install_signal_handlers(self) -> None:
        loop = reactor._asyncioEventloop
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._drain)

    def _drain(self) -> None:
        if self.draining:
            logger.info("Second signal: stopping now")
            reactor.stop()
            return
        self.draining = True
        timeout = _settings().SHUTDOWN_TIMEOUT
        logger.info("Draining: closing sockets with 1012, waiting up to %s s", timeout)
        # Sockets are closed once the ports are: a client told 1012 must not reconnect to
        # this process (Twisted closes a port on a later turn of the loop).
        stopped = defer.gatherResults([defer.maybeDeferred(p.stopListening) for p in self.ports])
        stopped.addBoth(lambda _: self._close_sockets(time.monotonic() + timeout))

    def _close_sockets(self, deadline: float) -> None:
        for protocol in list(self.connections):
            if isinstance(protocol, WebSocketProtocol):
                if protocol.state == protocol.STATE_OPEN:
                    protocol.sendClose(code=SERVICE_RESTART, reason="Server restarting")
                elif protocol.state == protocol.STATE_CONNECTING:
                    protocol.dropConnection(abort=True)
        self._stop_when_idle(deadline)

    def _stop_when_idle(self, deadline: float) -> None:
        busy = [
            details
            for details in self.connections.values()
            if "disconnected" not in details
            or not getattr(details.get("application_instance"), "done", lambda: True)()
        ]
        if not busy or time.monotonic() >= deadline:
            if busy:
                logger.warning("Stopping with %d connections still busy", len(busy))
            reactor.stop()
            return
        reactor.callLater(0.05, self._stop_when_idle, deadline)


class ServeCommand(CommandLineInterface):
    server_class = GracefulServer

    def __init__(self) -> None:
        super().__init__()
        # Daphne drops a handshake the application has not accepted within 5 s. In a
        # reconnect storm the queue is longer than that: every dropped handshake came
        # back as a retry, which kept the queue full (bench/reconnect.py). Wait longer.
        # The ping interval is the operator's: pings are most of an idle socket's cost.
        self.parser.set_defaults(
            websocket_connect_timeout=_settings().WEBSOCKET_CONNECT_TIMEOUT,
            ping_interval=_settings().WEBSOCKET_PING_INTERVAL,
        )


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "server.settings")
    daphne.server.HTTPFactory = BoundedHTTPFactory
    daphne.server.WebSocketFactory = BoundedWebSocketFactory
    masking.install()
    call_io_directly(reactor)
    try:
        ServeCommand().run(sys.argv[1:] if argv is None else argv)
    finally:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            # This process's open sockets and subscriptions leave the machine's totals.
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())


if __name__ == "__main__":
    main()
