"""One HTTP/1.1 connection on plain asyncio, and what all connections share.

Why not uvicorn: this server's one hard requirement is exact control of the
socket lifecycle during a drain (keep listening, answer every request with
``Connection: close``, finish in-flight requests, then close idle
connections and exit 0), which in uvicorn means overriding its signal
handling and shutdown internals. And without httptools/uvloop, uvicorn
parses with h11, which on this project's 2-core machines costs more per
request than the model does (``bench/bench_server.py`` measures both).
The HTTP subset needed here is small: origin-form targets,
``Content-Length`` bodies (chunked requests get 411), keep-alive,
pipelining, ``Expect: 100-continue``, HTTP/1.0 clients.

Requests are answered synchronously inside ``data_received``: prediction is
tens of microseconds of numpy, far less than a thread hand-off would cost.
A response with a ``delay`` (the ``-stall`` build's) is written by a
``loop.call_later`` timer instead; its connection reads no further requests
until then (answers stay in order), and every other connection is served
meanwhile.

Every response carries ``X-Model-Version`` and ``X-Pod-Name``, so each
answer, errors included, can be attributed to the version and pod that sent it.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from email.utils import formatdate
from http import HTTPStatus

from model_server import app as app_module
from model_server.settings import Settings

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 16 * 1024
"""Request line plus headers; more gets 431."""

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_STATUS = {s.value: b"%d %s" % (s.value, s.phrase.encode()) for s in HTTPStatus}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class _Head:
    """A parsed request head waiting for (or with) its body."""

    __slots__ = (
        "content_type", "expect_continue", "http10", "keep_alive", "length", "method", "started",
        "target",
    )  # fmt: skip

    def __init__(self, method: bytes, target: bytes) -> None:
        self.method = method
        self.target = target
        self.content_type: bytes | None = None
        self.length = 0
        self.keep_alive = True
        self.http10 = False
        self.expect_continue = False
        self.started = 0.0


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _parse_head(raw: bytes) -> _Head:
    """Parse request line and headers (CRLF-separated, no final blank line)."""
    request_line, *lines = raw.split(b"\r\n")
    parts = request_line.split(b" ")
    if len(parts) != 3:
        raise _BadRequest(400, "malformed request line")
    method, target, version = parts
    if not _TOKEN.match(method):
        raise _BadRequest(400, "malformed method")
    if not target.startswith(b"/") or any(c < 0x21 or c == 0x7F for c in target):
        raise _BadRequest(400, "request target must be an absolute path")
    head = _Head(method, target)
    if version == b"HTTP/1.0":
        head.keep_alive = False
        head.http10 = True
        host_required = False
    elif version == b"HTTP/1.1":
        host_required = True
    elif version.startswith(b"HTTP/") and len(version) == 8 and version[5:6].isdigit():
        raise _BadRequest(505, "only HTTP/1.0 and HTTP/1.1 are supported")
    else:
        raise _BadRequest(400, "malformed HTTP version")
    length: int | None = None
    has_host = False
    for line in lines:
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.match(name):
            raise _BadRequest(400, "malformed header line")
        name = name.lower()
        value = value.strip(b" \t")
        if name == b"content-length":
            if (
                not value.isdigit()
                or len(value) > 18
                or (length is not None and int(value) != length)
            ):
                raise _BadRequest(400, "bad Content-Length")
            length = int(value)
        elif name == b"content-type":
            head.content_type = value
        elif name == b"host":
            has_host = True
        elif name == b"connection":
            tokens = value.lower()
            if b"close" in tokens:
                head.keep_alive = False
            elif b"keep-alive" in tokens:
                head.keep_alive = True
        elif name == b"transfer-encoding":
            raise _BadRequest(411, "chunked request bodies are not supported; send Content-Length")
        elif name == b"expect":
            if value.lower() != b"100-continue":
                raise _BadRequest(417, "only Expect: 100-continue is supported")
            head.expect_continue = True
    if host_required and not has_host:
        raise _BadRequest(400, "HTTP/1.1 requests need a Host header")
    head.length = length or 0
    return head


class Hub:
    """What all connections share: the app, the live connections, the Date header.

    ``closing`` is set at shutdown: every response from then on carries
    ``Connection: close`` and idle connections are closed.
    """

    def __init__(self, app: app_module.App, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.connections: set[HttpConnection] = set()
        self.closing = False
        self.date = b""
        self.tick()

    def tick(self) -> None:
        """Once a second: refresh the Date header, enforce idle and request timeouts."""
        self.date = formatdate(usegmt=True).encode()
        now = time.monotonic()
        for conn in list(self.connections):
            conn.check_timeouts(now)

    def close_idle(self) -> None:
        """Close connections with no request under way (the others close after it)."""
        self.closing = True
        for conn in list(self.connections):
            if conn.idle:
                conn.close()

    def abort_all(self) -> None:
        """Drop every connection at once (no drain; also the end of a timed-out drain)."""
        self.closing = True
        for conn in list(self.connections):
            conn.abort()


class HttpConnection(asyncio.Protocol):
    """One client connection: parse requests, answer them in order."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.app = hub.app
        self.metrics = hub.app.metrics
        self.max_body = hub.settings.max_body_bytes
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.head: _Head | None = None
        self.loopback = False
        self.paused = False
        self.closed = False
        self.last_active = time.monotonic()
        self.busy_since: float | None = None
        """When the unfinished request in ``buffer`` started arriving."""
        self.delayed: asyncio.TimerHandle | None = None
        """The timer that sends a delayed response; no other request is processed meanwhile."""
        self.eof = False
        """The client half-closed while a delayed response was pending: close after it."""

    @property
    def idle(self) -> bool:
        """No request, not even part of one, is under way on this connection."""
        return self.head is None and not self.buffer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        host = peer[0] if isinstance(peer, tuple) and peer else ""
        self.loopback = host.startswith(("127.", "::ffff:127.")) or host == "::1"
        self.hub.connections.add(self)
        if self.hub.closing:
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.hub.connections.discard(self)
        if self.delayed is not None:
            self.delayed.cancel()
            self.delayed = None
        if self.head is not None:
            self.metrics.in_flight -= 1
            self.head = None

    def data_received(self, data: bytes) -> None:
        self.last_active = time.monotonic()
        if self.busy_since is None:
            self.busy_since = self.last_active
        self.buffer += data
        if not self.paused:
            self._process()

    def eof_received(self) -> bool:
        if self.delayed is not None:
            self.eof = True  # keep the socket open for the late answer
            return True
        return False

    def pause_writing(self) -> None:
        """The client does not read: stop reading and answering until it does."""
        self.paused = True
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.paused = False
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()
            self._process()

    def check_timeouts(self, now: float) -> None:
        """Close idle keep-alive connections and requests that arrive too slowly."""
        settings = self.hub.settings
        if self.delayed is not None:
            return  # the request arrived whole; its answer is due, not the client's fault
        if self.idle:
            if now - self.last_active > settings.keepalive_seconds:
                self.close()
        elif (
            self.busy_since is not None and now - self.busy_since > settings.header_timeout_seconds
        ):
            self._reject(408, "request not received in time")

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.closed = True
            self.transport.abort()

    def _process(self) -> None:
        """Answer every complete request in the buffer, in order."""
        buffer = self.buffer
        while not self.paused and not self.closed and self.delayed is None:
            head = self.head
            if head is None:
                while buffer.startswith(b"\r\n"):
                    del buffer[:2]
                end = buffer.find(b"\r\n\r\n", 0, MAX_HEAD_BYTES + 4)
                if end < 0:
                    if len(buffer) > MAX_HEAD_BYTES:
                        self._reject(431, "request head too large")
                    break
                try:
                    head = _parse_head(bytes(buffer[:end]))
                except _BadRequest as e:
                    self._reject(e.status, str(e))
                    break
                del buffer[: end + 4]
                head.started = time.perf_counter()
                self.head = head
                self.metrics.in_flight += 1
                if head.length > self.max_body:
                    self._answer(
                        head, "predict",
                        app_module.error(413, f"body over {self.max_body} bytes"), close=True,
                    )  # fmt: skip
                    break
                if head.expect_continue and len(buffer) < head.length and self.transport:
                    self.transport.write(_CONTINUE)
            if len(buffer) < head.length:
                break
            if head.length:
                body = bytes(buffer[: head.length])
                del buffer[: head.length]
            else:
                body = b""
            route, response = self.app.handle(
                head.method, head.target, head.content_type, body, self.loopback
            )
            if response.delay > 0:
                self.delayed = asyncio.get_running_loop().call_later(
                    response.delay, self._answer_delayed, head, route, response
                )
                self.busy_since = None
                return
            self._answer(head, route, response, close=False)
            # The next request's clock starts now, not when the connection got busy.
            self.busy_since = time.monotonic() if buffer else None
        if self.idle:
            self.busy_since = None
        elif self.busy_since is None:
            self.busy_since = time.monotonic()

    def _answer_delayed(self, head: _Head, route: str, response: app_module.Response) -> None:
        """The timer of a delayed response: send it, then go on with the requests behind it."""
        self.delayed = None
        if self.closed:
            return  # aborted meanwhile; connection_lost settles the in-flight count
        self._answer(head, route, response, close=False)
        if self.buffer:
            self.busy_since = time.monotonic()
        if not self.paused:
            self._process()
        if self.eof and self.delayed is None:
            self.close()

    def _answer(self, head: _Head, route: str, response: app_module.Response, close: bool) -> None:
        app = self.app
        keep_alive = head.keep_alive and not close and not app.draining and not self.hub.closing
        if not keep_alive:
            connection = b"Connection: close\r\n"
        elif head.http10:
            connection = b"Connection: keep-alive\r\n"
        else:
            connection = b""
        body = response.body
        out = (
            b"HTTP/1.1 %s\r\nDate: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
            b"X-Model-Version: %s\r\nX-Pod-Name: %s\r\n%s%s\r\n"
            % (
                _STATUS.get(response.status, b"%d Unknown" % response.status),
                self.hub.date,
                response.content_type,
                len(body),
                app.version_header,
                app.pod_header,
                response.headers,
                connection,
            )
        )
        if self.transport is not None and not self.closed:
            self.transport.write(out if head.method == b"HEAD" else out + body)
        self.head = None
        self.metrics.in_flight -= 1
        self.metrics.observe(route, response.status, time.perf_counter() - head.started)
        if not keep_alive:
            self.buffer.clear()
            self.close()

    def _reject(self, status: int, message: str) -> None:
        """Answer a request that cannot be parsed (or finished) and close the connection."""
        head = self.head
        if head is None:
            head = _Head(b"GET", b"")
            head.started = time.perf_counter()
            self.metrics.in_flight += 1
        self._answer(head, "invalid", app_module.error(status, message), close=True)
