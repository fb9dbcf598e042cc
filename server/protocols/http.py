"""Plain HTTP/1.1 on the muxwsgi socket (uWSGI's ``http-socket`` role): curl, wrk, health checks.

Parsing is httptools (llhttp, as in uvicorn): a hand-written HTTP parser is where request
smuggling lives. Keep-alive and pipelining are supported; requests are answered strictly in
order, one application call at a time per connection. A response whose request body was not
read to the end closes the connection, so unread bytes are never taken for a next request.
A request body is read before the application is called, or streamed on an upload slot when it
outgrows ``body_buffer_size`` (bodies.py).

A whole keep-alive response (a list body) is written to the socket by the application thread
itself when nothing else can come before it on the connection (:meth:`HttpProtocol.respond_now`),
and the loop settles the exchange when the next request arrives: behind a proxy's keep-alive
pool, the loop is then woken once per request (to read it) instead of twice (to read it, then
to write its response). Behind nginx this served 5-32% more requests per second in five
interleaved pairs, at ~15% less server CPU per request (benchmarks/README.md).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from typing import Any, Final, cast
from urllib.parse import unquote_to_bytes

import httptools

from .. import fdio
from ..bodies import RequestBody
from ..config import Config
from ..exchange import EMPTY_INPUT, Exchange
from ..wsgi import ReadableInput, ResponseHead
from .base import BaseProtocol, ServerContext
from .uwsgi import error_response

__all__ = ("HttpProtocol",)

log = logging.getLogger("muxwsgi.error")
_monotonic: Final = time.monotonic
# Framing is ours to decide; the application's say on these would corrupt it.
_HOP_BY_HOP: Final = frozenset({"connection", "keep-alive", "transfer-encoding", "upgrade", "te"})
_NO_BODY_STATUS: Final = frozenset({204, 304})
_MAX_PIPELINE: Final = 16


class _Request:
    """A parsed request head waiting for (or running in) an application thread."""

    __slots__ = (
        "answered",
        "body",
        "complete",
        "continue_due",
        "environ",
        "exchange",
        "keep_alive",
        "method",
    )

    def __init__(self, environ: dict[str, Any], keep_alive: bool) -> None:
        self.environ = environ
        self.keep_alive = keep_alive
        self.method = environ["REQUEST_METHOD"]
        self.body: RequestBody | None = None
        #: The client waits for "100 Continue" before it sends the body.
        self.continue_due = False
        #: Created when the application is called (a body is read first).
        self.exchange: Exchange | None = None
        self.complete = False  # the whole request, body included, has been received
        #: Its application thread wrote the whole response itself (respond_now): the loop
        #: has only to settle the exchange.
        self.answered = False


class _RequestReader:
    """The httptools callbacks of one connection: collect each request head within the
    limits, and feed each body to its ``wsgi.input``.

    Apart from HttpProtocol, whose methods speak for the response (it is the exchanges'
    Sink). A callback refuses a request by raising _Reject.
    """

    __slots__ = (
        "_header_bytes",
        "_max_header_bytes",
        "_max_headers",
        "_max_url",
        "_protocol",
        "head_started",
        "headers",
        "in_head",
        "parsing",
        "url",
    )

    def __init__(self, protocol: HttpProtocol, config: Config) -> None:
        self._protocol = protocol
        self._max_url = config.max_request_line
        self._max_header_bytes = config.buffer_size
        self._max_headers = config.max_vars
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self._header_bytes = 0
        #: A request head is partly received, since head_started.
        self.in_head = False
        self.head_started = 0.0
        #: The request whose body is being received.
        self.parsing: _Request | None = None

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self._header_bytes = 0
        self.in_head = True
        self.head_started = _monotonic()

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self._max_url:
            raise _Reject("414 URI Too Long", "request line too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value)
        if self._header_bytes > self._max_header_bytes or len(self.headers) >= self._max_headers:
            raise _Reject("431 Request Header Fields Too Large", "request headers too large")
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.parsing = self._protocol.head_received(self.url, self.headers)

    def on_body(self, body: bytes) -> None:
        request = self.parsing
        if request is not None and request.body is not None:
            self._protocol.body_received(request, body)

    def on_message_complete(self) -> None:
        request = self.parsing
        self.parsing = None
        if request is None:
            return
        request.complete = True
        if request.body is not None:
            self._protocol.body_complete(request)


class HttpProtocol(BaseProtocol):
    kind = "http"

    def __init__(self, ctx: ServerContext) -> None:
        super().__init__(ctx)
        self._reader = _RequestReader(self, self.config)
        self._parser = httptools.HttpRequestParser(self._reader)
        self._queue: deque[_Request] = deque()  # parsed; the first one is being served
        self._bound = self.config.body_buffer_size
        #: The application call in progress reads its body as it arrives: it holds an
        #: upload slot.
        self._uploading = False
        self._chunked = False
        self._keep_alive = True
        self._head_only = False
        self._server_addr: tuple[str, str] = ("localhost", "")
        #: A duplicate of the socket's descriptor, for responses the application thread
        #: writes itself (respond_now); -1: none yet, -2: none to be had (TLS, closed).
        #: A duplicate, so that the loop closing the transport never leaves the thread a
        #: descriptor number that another connection may reuse; closed under _wlock.
        self._wfd = -1
        self._wlock = threading.Lock()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        sockname = transport.get_extra_info("sockname")
        if isinstance(sockname, tuple):
            self._server_addr = (str(sockname[0]), str(sockname[1]))

    # ---------------------------------------------------------------- requests

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return  # lingering after our close: dropped
        self.last_activity = _monotonic()
        # Before the next request is parsed: it may be served at once.
        if not self._settle_answered():
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            # Our callbacks refuse with _Reject; httptools wraps what callbacks raise.
            reason = exc.__context__
            if isinstance(reason, _Reject):
                self._fail(reason.status, str(reason))
            else:
                log.error("http connection from %s: internal error", self.peer, exc_info=reason)
                self._fail("500 Internal Server Error", "internal error")
        except httptools.HttpParserUpgrade:
            self._fail("501 Not Implemented", "protocol upgrades are not supported")
        except httptools.HttpParserError as exc:
            if data.startswith(b"PRI * HTTP/2.0"):
                self._fail(
                    "505 HTTP Version Not Supported",
                    "HTTP/2 is not spoken here; use the muxwsgi protocol for multiplexing",
                )
            else:
                self._fail("400 Bad Request", f"malformed HTTP request: {exc}")

    def head_received(self, url: bytes, headers: list[tuple[bytes, bytes]]) -> _Request:
        """A request head is complete (called by the reader): queue the request, and serve it
        if it is the first in line."""
        parser = self._parser
        environ = self._environ(
            url, headers, parser.get_method().decode("ascii"), parser.get_http_version()
        )
        request = _Request(environ, parser.should_keep_alive())
        length = environ.get("CONTENT_LENGTH")
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        limit = self.config.limit_post
        if limit and length and int(length) > limit:
            raise _Reject("413 Content Too Large", "request body too large")
        if (length and int(length)) or chunked:
            request.body = RequestBody(int(length) if length else None, self._bound)
            # Sent when the server starts reading this body: at once, unless the request
            # waits behind others (a 100 must not land inside their responses).
            request.continue_due = environ.get("HTTP_EXPECT", "").lower() == "100-continue"
        queue = self._queue
        with self._wlock:  # against respond_now, answering in the meantime: see there
            self._settle_answered()
            queue.append(request)
        if len(self._queue) > _MAX_PIPELINE and self.transport is not None:
            self.transport.pause_reading()
        if len(self._queue) == 1:
            self._serve(request)
        return request

    def body_received(self, request: _Request, data: bytes) -> None:
        """Request body bytes arrived (called by the reader): buffer them or hand them to the
        application, and stop reading while too many wait unread."""
        body = request.body
        assert body is not None
        if self.config.limit_post and body.size + len(data) > self.config.limit_post:
            raise _Reject("413 Content Too Large", "request body too large")
        self._unread += len(data)
        body.feed(data)
        if body.outgrown and request.exchange is None and request is self._queue[0]:
            self._advance(request)
        if self._unread >= self._high_water and self.transport is not None:
            self.transport.pause_reading()

    def body_complete(self, request: _Request) -> None:
        """The request's whole body has arrived (called by the reader)."""
        body = request.body
        assert body is not None
        body.end()
        if request.exchange is None and self._queue and request is self._queue[0]:
            self._advance(request)

    def _environ(
        self, raw_url: bytes, headers: list[tuple[bytes, bytes]], method: str, version: str
    ) -> dict[str, Any]:
        url = httptools.parse_url(raw_url)
        # httptools' stubs say bytes, but an absent part is None: read around the stubs, or a
        # compiled build checks the value against them and fails.
        path = cast("bytes | None", getattr(url, "path"))  # noqa: B009
        query = cast("bytes | None", getattr(url, "query"))  # noqa: B009
        raw_path = path or b"/"
        environ: dict[str, Any] = {
            "REQUEST_METHOD": method,
            "REQUEST_URI": raw_url.decode("latin-1"),
            "PATH_INFO": unquote_to_bytes(raw_path).decode("latin-1"),
            "QUERY_STRING": (query or b"").decode("latin-1"),
            "SERVER_PROTOCOL": f"HTTP/{version}",
            "SERVER_NAME": self._server_addr[0],
            "SERVER_PORT": self._server_addr[1],
        }
        if self.peer != "unix":
            environ["REMOTE_ADDR"], _, environ["REMOTE_PORT"] = self.peer.rpartition(":")
        for raw_name, raw_value in headers:
            name = raw_name.decode("latin-1")
            if "_" in name:
                # Transfer_Encoding would become HTTP_TRANSFER_ENCODING too: drop such names,
                # as nginx does by default (underscores_in_headers off).
                continue
            value = raw_value.decode("latin-1")
            key = name.upper().replace("-", "_")
            if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                key = "HTTP_" + key
            if key in environ:
                if key == "HTTP_HOST":
                    # RFC 9112 3.2: two Host lines are a 400, never "a, b" for the app to split.
                    raise _Reject("400 Bad Request", "more than one Host header")
                environ[key] += ("; " if key == "HTTP_COOKIE" else ", ") + value
            else:
                environ[key] = value
        return environ

    def _serve(self, request: _Request) -> None:
        """The request is first in line: call the application, or read its body first."""
        if self.ctx.draining:
            request.keep_alive = False
        self._keep_alive = request.keep_alive
        self._head_only = request.method == "HEAD"
        if request.body is None:
            if self._wfd == -1 and request.keep_alive:
                self._wfd = self._duplicate_socket()
            request.exchange = Exchange(
                self.runner, self, 0, request.environ, EMPTY_INPUT, None, "http"
            )
            self.runner.submit(request.exchange)
            return
        if request.continue_due:
            request.continue_due = False
            self._write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self._advance(request)

    def _advance(self, request: _Request) -> None:
        """The first request's body is read before its application call: call it with the
        whole body once complete, or ask for an upload slot once the body outgrew the bound;
        meanwhile keep reading."""
        body = request.body
        assert body is not None
        if body.complete:
            if body.ticket is not None:
                self.ctx.uploads.withdraw(body.ticket)  # it ended before it got a slot
                body.ticket = None
            self._call(request, body.buffered_input())
        elif body.outgrown:
            body.ticket = self.ctx.uploads.acquire(self, self._start_streaming)
        elif (
            self.transport is not None
            and not self.closed
            and not self.writing_paused
            and self._unread < self._high_water
            and len(self._queue) <= _MAX_PIPELINE
        ):
            self.transport.resume_reading()

    def _start_streaming(self) -> None:
        """The first request got an upload slot: its application reads the body as it
        arrives (the bytes so far first)."""
        request = self._queue[0] if self._queue else None
        body = request.body if request is not None else None
        if request is None or body is None or request.exchange is not None or self.closed:
            self.ctx.uploads.release(self)  # gone meanwhile
            return
        body.ticket = None
        self._uploading = True
        self._call(request, body.stream_input(self._consumed, self.config.body_timeout))

    def _call(self, request: _Request, wsgi_input: ReadableInput) -> None:
        request.exchange = Exchange(self.runner, self, 0, request.environ, wsgi_input, None, "http")
        self.runner.submit(request.exchange)

    def wants_more_body(self) -> bool:
        return len(self._queue) <= _MAX_PIPELINE

    # ---------------------------------------------------------------- output (Sink)

    def _render(self, head: ResponseHead, body_length: int | None) -> bytes:
        lines = [f"HTTP/1.1 {head.status} {head.reason}\r\n"]
        for name, value in head.headers:
            if name.lower() not in _HOP_BY_HOP:
                lines.append(f"{name}: {value}\r\n")
        self._chunked = False
        if head.status in _NO_BODY_STATUS or 100 <= head.status < 200:
            pass
        elif head.content_length is None:
            if body_length is not None:
                lines.append(f"Content-Length: {body_length}\r\n")
            elif self._queue and self._queue[0].environ["SERVER_PROTOCOL"] == "HTTP/1.1":
                self._chunked = not self._head_only
                lines.append("Transfer-Encoding: chunked\r\n")
            else:
                self._keep_alive = False  # HTTP/1.0 without a length: the close ends the body
        if not self._keep_alive:
            lines.append("Connection: close\r\n")
        lines.append("\r\n")
        return "".join(lines).encode("latin-1")

    def _write(self, data: bytes) -> None:
        if not self.closed and self.transport is not None:
            self.transport.write(data)

    def respond(self, exchange: Exchange, head: ResponseHead, body: bytes) -> None:
        self._write(self._render(head, len(body)) + (b"" if self._head_only else body))
        self.done(exchange)

    def respond_now(self, exchange: Exchange, head: ResponseHead, body: bytes) -> bool:
        """Application thread: write a whole keep-alive response to the socket from here,
        as the classic path does, so that the loop is not woken for it; True if written.

        Only for a request without a body, and only when nothing else can come first on the
        connection: this request is the only one queued, and the transport has nothing of
        ours left to write (the loop writes nothing on the connection while its request
        runs). The loop settles the exchange when the next request arrives (data_received,
        head_received), or with the next batch of results (post_quiet). What the socket does
        not take at once is left to the loop, in order.

        Under _wlock, as head_received's look at the first request and queueing of the next:
        otherwise a request arriving between this write and ``answered`` would queue behind
        an exchange that nothing settles before the next batch.
        """
        queue = self._queue
        with self._wlock:
            fd = self._wfd
            transport = self.transport
            if (
                fd < 0
                or self.closed
                or not self._keep_alive
                or self.peer_eof
                or self.writing_paused
                or self.ctx.draining
                or len(queue) != 1
                or transport is None
                or transport.get_write_buffer_size()
            ):
                return False
            request = queue[0]
            if request.exchange is not exchange or request.body is not None or not request.complete:
                # A request body may have paused reading (bodies.py): the loop must settle
                # the exchange at once to resume it, so gains nothing from being spared.
                return False
            data = self._render(head, len(body))
            if body and not self._head_only:
                data += body
            try:
                sent = fdio.write(fd, data, 0)
            except BlockingIOError:
                sent = 0
            except OSError:
                sent = -1  # the connection is gone: the loop hears of it too
            if sent == len(data):
                request.answered = True
        exchange.finished = _monotonic()  # the access log's end, whenever it is settled
        if 0 <= sent < len(data):
            self.runner.post(self._write_rest, exchange, data[sent:])
        elif sent < 0:
            self.runner.post(self._settle, exchange)
        else:
            self.runner.post_quiet(self._settle, exchange)
        return True

    def _duplicate_socket(self) -> int:
        """A descriptor for respond_now: the socket's, duplicated; -2 where there is none
        (TLS: bytes must go through the TLS layer)."""
        transport = self.transport
        if self.tls_environ is not None or transport is None:
            return -2
        sock = transport.get_extra_info("socket")
        if sock is None:
            return -2
        try:
            return fdio.dup(sock.fileno())
        except OSError:
            return -2

    def _write_rest(self, exchange: Exchange, rest: bytes) -> None:
        """What the socket did not take of a response respond_now wrote."""
        self._write(rest)
        self._settle(exchange)

    def _settle(self, exchange: Exchange) -> None:
        """The exchange's response was written by its thread: end it, unless that was done
        already (the next request came first)."""
        queue = self._queue
        if queue and queue[0].exchange is exchange:
            self.done(exchange)

    def _settle_answered(self) -> bool:
        """End the first exchange if respond_now answered it; whether the connection is
        still open after that (done closes it when no other request is to follow)."""
        queue = self._queue
        if queue and queue[0].answered:
            exchange = queue[0].exchange
            assert exchange is not None
            self.done(exchange)
        return not self.closed

    def send_head(self, exchange: Exchange, head: ResponseHead) -> None:
        self._write(self._render(head, None))

    def send_chunk(self, exchange: Exchange, chunk: bytes) -> None:
        if self._chunked:
            self._write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
        else:
            self._write(chunk)
        exchange.sent(len(chunk))

    def end_response(self, exchange: Exchange) -> None:
        if self._chunked:
            self._write(b"0\r\n\r\n")

    def abort_response(self, exchange: Exchange, reason: str) -> None:
        # The head is out: the only honest signal left is to drop the connection.
        self._keep_alive = False
        self.abort()

    def done(self, exchange: Exchange) -> None:
        self.runner.done(exchange)
        request = self._queue.popleft() if self._queue else None
        if request is not None and request.body is not None:
            if self._uploading:
                self._uploading = False
                self.ctx.uploads.release(self)
            # Whatever the application left unread is dropped (or the connection closes):
            # what remains unread are the bodies of the requests behind it.
            self._unread = sum(r.body.size for r in self._queue if r.body is not None)
        if (
            not self._keep_alive
            or self.closed
            or request is None
            or not request.complete
            or self.ctx.draining
            or (self.peer_eof and not self._queue)
        ):
            # Unread body bytes must never be parsed as the next request: close instead.
            self.close()
            return
        if self._queue:
            self._serve(self._queue[0])
        elif self.transport is not None and not self.closed and not self.writing_paused:
            self.transport.resume_reading()

    def on_peer_eof(self) -> None:
        self._settle_answered()
        request = self._reader.parsing
        if request is not None and request.body is not None and not request.complete:
            # The body will never be complete: the application's read must fail now rather
            # than wait for body_timeout, and a request still waiting for its body is dropped
            # (it never reaches the application).
            request.body.fail("the client closed the connection before the end of the body")
            if request.exchange is None:
                self._queue.remove(request)
                self._withdraw(request)
        super().on_peer_eof()

    def _withdraw(self, request: _Request) -> None:
        """Forget the place in the upload slots' queue of a request that will never run."""
        body = request.body
        if body is not None and body.ticket is not None:
            self.ctx.uploads.withdraw(body.ticket)
            body.ticket = None

    def _fail(self, status: str, message: str) -> None:
        log.info("http connection from %s: %s", self.peer, message)
        if not self._queue or self._queue[0].exchange is None:
            # Nothing in flight: the error response is next in order.
            self._write(error_response(status, message))
        self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._settle_answered()
        with self._wlock:
            if self._wfd >= 0:
                fdio.close(self._wfd)
            self._wfd = -2
        for request in self._queue:
            if request.exchange is not None:
                request.exchange.cancel()
            else:
                self._withdraw(request)

    @property
    def busy(self) -> bool:
        return bool(self._queue)

    def enforce_timeouts(self, now: float) -> None:
        config = self.config
        self._settle_answered()
        if self._queue:
            request = self._queue[0]
            body = request.body
            if (
                request.exchange is None
                and body is not None
                and body.ticket is None  # one waiting for an upload slot waits on us
                and now - body.last_at > config.body_timeout
            ):
                self._fail("408 Request Timeout", "request body not received in time")
            return
        if self.drain_expired(now):
            return
        reader = self._reader
        if reader.in_head:
            # Counted from the head's first byte, not the last one: a peer that dribbles a
            # header line now and then must not hold the connection for ever (slowloris).
            if now - reader.head_started > config.header_timeout:
                self._fail("408 Request Timeout", "request head not received in time")
        elif now - self.last_activity > config.keepalive_timeout:
            self.close()


class _Reject(Exception):
    """Raised from a parser callback to answer with a specific status and close."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status
