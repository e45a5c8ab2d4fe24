"""uvicorn's httptools protocol with the limits it lacks: slow clients and too many connections.

uvicorn closes a connection idle after a response (`timeout_keep_alive`), but never one that has
not sent anything yet, nor one that sends its headers or body a byte at a time, and it has no bound
on header size: such connections stay open indefinitely. Per connection, this class
- closes it when it stays silent for NAMEGEN_KEEP_ALIVE seconds after connecting (as after a response);
- gives a request NAMEGEN_HEADER_TIMEOUT seconds from its first byte to the end of its headers, and
  NAMEGEN_BODY_TIMEOUT seconds from there to the end of its body, else answers 408 and closes;
- refuses a request whose headers pass MAX_HEADER_BYTES (431), or that arrives past
  NAMEGEN_MAX_CONNECTIONS open connections in this worker (503): the request goes to the app marked
  with the refusal (scope key REFUSAL), which answers it in the service's error shape and closes the
  connection, so it is logged and counted like any other; headers still arriving past the limit
  (sent slowly) get 431 from here at once;
- refuses a connection at once (503, closed) when its client address already holds
  NAMEGEN_MAX_CLIENT_CONNECTIONS in this worker, so slow connections from one source cannot fill the
  worker's cap for everyone else;
- answers the requests httptools cannot parse (Content-Length with Transfer-Encoding, a bad chunk size,
  an unknown method...) in the service's JSON error shape, where uvicorn writes plain text;
- writes a response's status line and headers together with its first body part (`OneWrite`): uvicorn
  writes each to the socket on its own, and for a small answer that second send is a large share of
  the worker's whole cost of the request.
uvicorn loads it by name (`http="service.api.protocol:GuardedProtocol"`), also in each worker process,
so the limits come from the environment's settings."""
from __future__ import annotations

import functools
from asyncio import TimerHandle
from collections import Counter

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from service.api import answers
from service.logs import get_logger
from service.settings import get_settings

log = get_logger("connections")

MAX_HEADER_BYTES = 32 * 1024  # request line and headers; nginx's default buffers allow 4 x 8 KB
REFUSAL = "namegen.refusal"  # scope key: (status, message) for the app to answer (service.api.edge.Edge)
TURN_AWAY_LINGER = 1.0  # seconds a turned-away connection stays half-closed (see GuardedProtocol._turn_away)
CLIENTS: Counter[str] = Counter()  # open connections per client address in this worker


def canned(status: int, message: str) -> bytes:
    """A complete HTTP/1.1 response in the service's error shape, closing the connection."""
    body = answers.error_bytes(message)
    retry = b"retry-after: 1\r\n" if status == 503 else b""
    return b"".join([STATUS_LINE[status], b"content-type: application/json\r\n",
                     b"x-content-type-options: nosniff\r\n", retry,
                     b"content-length: %d\r\n" % len(body), b"connection: close\r\n\r\n", body])


class OneWrite:
    """The transport as one response cycle sees it: the head (the first write once the response has
    started) waits for the first body part and goes out with it in one send. A HEAD answer has no body
    write, so its head goes out at once; a cycle that closes with its head held sends the head first."""

    __slots__ = ("transport", "cycle", "head", "state")

    def __init__(self, transport, cycle) -> None:
        self.transport = transport
        self.cycle = cycle
        self.head: bytes | None = None
        self.state = 0  # 0: head not written yet, 1: head held, 2: head written

    def write(self, data: bytes) -> None:
        if self.state == 1:
            self.state = 2
            data, self.head = self.head + data, None
        elif self.state == 0 and self.cycle.response_started:  # (a 100 Continue is written before it)
            self.state = 2
            if self.cycle.scope["method"] != "HEAD":
                self.state, self.head = 1, data
                return
        self.transport.write(data)

    def close(self) -> None:
        if self.head is not None:
            head, self.head, self.state = self.head, None, 2
            if not self.transport.is_closing():
                self.transport.write(head)
        self.transport.close()

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def __getattr__(self, name: str):
        return getattr(self.transport, name)


class GuardedProtocol(HttpToolsProtocol):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        settings = get_settings()
        self.header_timeout = settings.header_timeout
        self.body_timeout = settings.body_timeout
        self.max_connections = settings.max_connections
        self.max_client_connections = settings.max_client_connections
        self.address: str | None = None  # counted in CLIENTS while open
        self.turned_away = False
        self.serving_app = self.app
        self.read_timer: TimerHandle | None = None
        self.chunk = 0  # bytes of the chunk being parsed
        self.timer_phase: str | None = None  # what read_timer waits for: "headers" or "body"
        self.phase: str | None = None  # what the request being read still lacks: "headers", "body" or None
        self.header_bytes: int | None = None  # while a request's headers are being read

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        address = self.client[0] if self.client else None
        if address is not None:
            if CLIENTS[address] >= self.max_client_connections:
                self._turn_away(address)
                return
            CLIENTS[address] += 1
            self.address = address
        # uvicorn arms its keep-alive timer only after a response; a silent new connection gets it too
        # (data_received cancels it, exactly as for a kept-alive connection).
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive,
                                                            self.timeout_keep_alive_handler)

    def _turn_away(self, address: str) -> None:
        """Answer 503 before any request and end the connection. Closing at once would make the kernel
        reset it when the client's request arrives unread, and the client might never read the 503; so
        send it with a FIN, drop what comes in, and close a moment later. The connection no longer
        counts toward the worker's cap meanwhile."""
        self.connections.discard(self)
        self.turned_away = True
        self.transport.write(canned(503, f"busy: more than {self.max_client_connections} connections "
                                         "from this address"))
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.read_timer = self.loop.call_later(TURN_AWAY_LINGER, self.transport.close)
        log.info("closed a connection: too many from one address", extra={"fields": {"client": address,
                                                                                      "status": 503}})

    def connection_lost(self, exc) -> None:
        self._stop_timer()
        if self.address is not None:
            CLIENTS[self.address] -= 1
            if not CLIENTS[self.address]:
                del CLIENTS[self.address]
            self.address = None
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """httptools could not parse the request: the JSON error shape, not uvicorn's plain text."""
        self._stop_timer()
        self.transport.write(canned(400, f"malformed HTTP request: {msg.rstrip('.').lower()}"))
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        """The read timers are armed here, after the parser has taken the chunk, and only for a request
        it left incomplete: most requests arrive whole in one chunk and never need one."""
        if self.turned_away:
            return
        self.chunk = len(data)
        super().data_received(data)
        if self.transport.is_closing():
            return
        if self.header_bytes is not None:
            self.header_bytes += len(data)  # counted after parsing: a chunk may hold headers and body
            if self.header_bytes > MAX_HEADER_BYTES:
                self._refuse(431, f"request headers larger than {MAX_HEADER_BYTES} bytes", "headers too large")
                return
        if self.phase is not None and self.phase != self.timer_phase:
            self._start_timer(self.header_timeout if self.phase == "headers" else self.body_timeout, self.phase)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.header_bytes = 0
        self.phase = "headers"  # the header timeout runs from this chunk: see data_received

    def on_headers_complete(self) -> None:
        read = (self.header_bytes or 0) + self.chunk  # at most: the headers are within what has arrived
        self.header_bytes = None
        self.phase = "body"
        refusal = None
        if read > MAX_HEADER_BYTES and \
                len(self.url) + sum(len(k) + len(v) + 4 for k, v in self.headers) > MAX_HEADER_BYTES:
            refusal = (431, f"request headers larger than {MAX_HEADER_BYTES} bytes")
        elif len(self.connections) > self.max_connections:
            refusal = (503, f"busy: more than {self.max_connections} connections")
        self.app = functools.partial(self._refused, refusal) if refusal else self.serving_app
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle.transport is self.transport:  # a new cycle (not an upgrade)
            cycle.transport = OneWrite(self.transport, cycle)

    def on_message_complete(self) -> None:
        self.phase = None
        self._stop_timer()
        super().on_message_complete()

    async def _refused(self, refusal: tuple[int, str], scope, receive, send) -> None:
        await self.serving_app({**scope, REFUSAL: refusal}, receive, send)

    def _start_timer(self, seconds: float, phase: str) -> None:
        self._stop_timer()
        self.read_timer = self.loop.call_later(seconds, self._timed_out, phase)
        self.timer_phase = phase

    def _stop_timer(self) -> None:
        if self.read_timer is not None:
            self.read_timer.cancel()
            self.read_timer = None
        self.timer_phase = None

    def _timed_out(self, phase: str) -> None:
        self.read_timer = None
        self.timer_phase = None
        seconds = self.header_timeout if phase == "headers" else self.body_timeout
        self._refuse(408, f"request {phase} not received within {seconds:g} s", f"{phase} timeout")

    def _refuse(self, status: int, message: str, reason: str) -> None:
        """Answer with `status` unless a response is already under way or sent, and close."""
        reading_body = self.header_bytes is None  # else this request's headers were still arriving
        self._stop_timer()
        self.header_bytes = self.phase = None
        cycle = self.cycle  # while headers arrive: the previous request's, if any
        if reading_body and cycle is not None:
            if not cycle.response_started:  # the app waiting for this body hears a disconnect
                cycle.disconnected = True  # and whatever it answers goes nowhere
                cycle.message_event.set()
                self.transport.write(canned(status, message))
        elif cycle is None or cycle.response_complete:
            self.transport.write(canned(status, message))
        client = "%s:%d" % self.client if self.client else "-"
        log.info("closed a connection: %s", reason, extra={"fields": {"client": client, "status": status}})
        self.transport.close()
