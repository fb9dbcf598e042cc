"""Classic uwsgi: one request per connection, the response written as raw HTTP, then close.

This is what nginx's ``uwsgi_pass`` speaks (PROTOCOL.md §12). The vars block size is checked
against ``buffer_size`` from the 4-byte header, before the block is read; the body is exactly
CONTENT_LENGTH bytes and anything after it is never parsed (a classic connection carries one
request, so leftover bytes cannot be smuggled in as a second one). The body is read before the
application is called, or streamed on an upload slot when it is over ``body_buffer_size``
(bodies.py).
"""

from __future__ import annotations

import logging
import select
import threading
import time
from collections.abc import Callable
from typing import Any, Final

from muxwsgi import InvalidVarsError, classic

from .. import fdio
from ..bodies import RequestBody
from ..config import Config
from ..dispatch import AppRunner
from ..exchange import EMPTY_INPUT, Exchange, call_now
from ..wsgi import ReadableInput, ResponseHead
from .base import BaseProtocol, ServerContext

__all__ = ("UwsgiProtocol", "render_head", "serve_in_thread")

log = logging.getLogger("muxwsgi.error")
_monotonic: Final = time.monotonic


def render_head(protocol: str, head: ResponseHead) -> bytes:
    """The status line and headers as uWSGI writes them for a classic request."""
    lines = [f"{protocol} {head.status} {head.reason}\r\n"]
    lines.extend(f"{name}: {value}\r\n" for name, value in head.headers)
    lines.append("\r\n")
    return "".join(lines).encode("latin-1")


def error_response(status: str, message: str) -> bytes:
    body = message.encode() + b"\n"
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body


class UwsgiProtocol(BaseProtocol):
    kind = "uwsgi"

    def __init__(self, ctx: ServerContext) -> None:
        super().__init__(ctx)
        self._buffer = b""
        self._datasize = -1
        self._exchange: Exchange | None = None
        #: The request's body, from its head on: read before the application is called, or
        #: read by it as it arrives.
        self._request_body: RequestBody | None = None
        self._environ: dict[str, Any] = {}
        self._body_left = 0
        #: The application reads its body as it arrives: it holds an upload slot.
        self._uploading = False
        self._pending: list[bytes] = []  # response bytes held while writing is paused
        self._held = 0
        self._protocol_line = "HTTP/1.1"
        #: The peer sent bytes after its request: closing with them unread would send an RST
        #: that can destroy the response, so the close lingers (see LINGER).
        self._trailing = False
        #: The socket was handed to an application thread with the request (_hand_over).
        self._handed = False

    # ---------------------------------------------------------------- input

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return  # lingering after our close: dropped
        self.last_activity = _monotonic()
        if self._exchange is not None or self._request_body is not None:
            self._body(data)
            return
        buffer = self._buffer + data if self._buffer else data
        if self._datasize < 0:
            if len(buffer) < 4:
                self._buffer = buffer
                return
            modifier1, datasize, _ = classic.parse_packet_header(buffer[:4])
            if modifier1 != 0:
                # [U-5] only WSGI requests are served; uWSGI's other packet types are not.
                log.warning(
                    "uwsgi connection from %s: modifier1 %d is not served; closing",
                    self.peer,
                    modifier1,
                )
                self.close()
                return
            if datasize > self.config.buffer_size:
                # [U-1] refused before reading the block, as uWSGI does; but say why.
                log.warning(
                    "uwsgi connection from %s: vars block of %d bytes exceeds buffer-size %d",
                    self.peer,
                    datasize,
                    self.config.buffer_size,
                )
                self._reject(
                    "431 Request Header Fields Too Large",
                    f"vars block of {datasize} bytes exceeds buffer-size",
                )
                return
            self._datasize = datasize
        end = 4 + self._datasize
        if len(buffer) < end:
            self._buffer = buffer
            return
        self._buffer = b""
        self._start(buffer[4:end], buffer[end:])

    def _start(self, block: bytes, rest: bytes) -> None:
        try:
            environ: dict[str, Any] = classic.decode_vars(block, self.config.max_vars)
            content_length = classic.content_length(environ)
        except InvalidVarsError as exc:
            log.warning("uwsgi request from %s: %s", self.peer, exc)
            self._reject("400 Bad Request", str(exc))
            return
        self._protocol_line = environ.get("SERVER_PROTOCOL") or "HTTP/1.1"
        if not self._protocol_line.startswith("HTTP/"):
            self._protocol_line = "HTTP/1.1"
        limit = self.config.limit_post
        if limit and content_length > limit:
            self._reject("413 Content Too Large", "request body too large")
            return
        if "REMOTE_ADDR" not in environ and self.peer != "unix":
            environ["REMOTE_ADDR"], _, environ["REMOTE_PORT"] = self.peer.rpartition(":")
        self._trailing = len(rest) > content_length
        self._environ = environ
        if not content_length:
            if self._trailing or not self._hand_over(EMPTY_INPUT):
                if self.transport is not None:
                    self.transport.pause_reading()  # a body-less request reads nothing more
                self._call(EMPTY_INPUT)
            return
        # The body is read first (bodies.py): the application is called once it is
        # complete, or once it outgrew body_buffer_size and got an upload slot.
        self._request_body = RequestBody(content_length, self.config.body_buffer_size)
        self._body_left = content_length
        self._body(rest)

    def _call(self, wsgi_input: ReadableInput) -> None:
        exchange = Exchange(self.runner, self, 0, self._environ, wsgi_input, None, "uwsgi")
        self._exchange = exchange
        self.runner.submit(exchange)

    def _start_streaming(self) -> None:
        """The request got an upload slot: its application reads the body as it arrives
        (the bytes so far first)."""
        body = self._request_body
        if body is None or self._exchange is not None or self.closed:
            self.ctx.uploads.release(self)  # gone meanwhile
            return
        body.ticket = None
        self._uploading = True
        self._unread = body.size
        self._call(body.stream_input(self._consumed, self.config.body_timeout))
        if self._body_left and self.transport is not None:
            self.transport.resume_reading()  # stopped at the bound, waiting for the slot

    def _hand_over(self, wsgi_input: ReadableInput) -> bool:
        """Give the complete request (its body, if any, was buffered whole) and the socket to
        an application thread (see serve_in_thread). The loop's transport is dropped here,
        after the socket was duplicated, so the thread owns the only descriptor and the loop
        can never close it under the thread. Only for a request that nothing followed: the
        thread closes at once, which a peer with bytes left unread would see as an RST.

        The connection stays in the worker's connections until the thread is done with it
        (see _handed_done): max_connections counts it, as it would on the loop."""
        transport = self.transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is None or transport is None:
            return False  # over TLS: the socket carries ciphertext
        try:
            fd = fdio.dup(sock.fileno())
        except OSError:
            return False
        # The transport forgets the connection now (see connection_lost).
        self.closed = self._handed = True
        self._request_body = None
        transport.abort()
        serve_in_thread(self.runner, self.config, fd, self._environ, wsgi_input,
                        self._handed_done, self.ctx.connections)  # fmt: skip
        return True

    def _handed_done(self, exchange: Exchange) -> None:
        """The thread that was handed the connection closed it (loop thread)."""
        self.ctx.connections.discard(self)
        self.runner.done(exchange)

    def _body(self, data: bytes) -> None:
        body = self._request_body
        if body is None or not self._body_left:
            self._trailing = self._trailing or bool(data)
            return  # [U-4] bytes after the body are never parsed
        if len(data) > self._body_left:
            self._trailing = True
            data = data[: self._body_left]
        self._body_left -= len(data)
        if data:
            body.feed(data)
            if self._uploading:
                self._unread += len(data)
        transport = self.transport
        if not self._body_left:
            body.end()
            if transport is not None:
                transport.pause_reading()
            if self._exchange is None:
                if body.ticket is not None:
                    self.ctx.uploads.withdraw(body.ticket)  # it ended before it got a slot
                    body.ticket = None
                wsgi_input = body.buffered_input()
                if self._trailing or not self._hand_over(wsgi_input):
                    self._call(wsgi_input)
        elif self._exchange is None:
            if body.outgrown:
                if transport is not None:
                    transport.pause_reading()  # the rest waits for the slot in the socket
                body.ticket = self.ctx.uploads.acquire(self, self._start_streaming)
        elif self._unread >= self._high_water and transport is not None:
            transport.pause_reading()

    def on_peer_eof(self) -> None:
        body = self._request_body
        if body is not None and self._body_left:
            # Fewer body bytes than CONTENT_LENGTH, and no more will come: fail the
            # application's read now rather than after body_timeout, or drop a request still
            # waiting for its body (it never reaches the application).
            body.fail("the client closed the connection before the end of the body")
            if self._exchange is None:
                self._drop_pending()
        super().on_peer_eof()

    def _drop_pending(self) -> None:
        """Forget a request that waits for its body and will never run."""
        body, self._request_body = self._request_body, None
        if body is not None and body.ticket is not None:
            self.ctx.uploads.withdraw(body.ticket)
            body.ticket = None

    def wants_more_body(self) -> bool:
        return bool(self._body_left)

    def _reject(self, status: str, message: str) -> None:
        if self.transport is not None:
            self.transport.write(error_response(status, message))
        self.close()

    # ---------------------------------------------------------------- output (Sink)

    def _write(self, data: bytes) -> None:
        if self.closed or self.transport is None:
            return
        if self.writing_paused:
            self._pending.append(data)
            self._held += len(data)
        else:
            self.transport.write(data)

    def respond(self, exchange: Exchange, head: ResponseHead, body: bytes) -> None:
        self._write(render_head(self._protocol_line, head) + body)
        self.done(exchange)

    def send_head(self, exchange: Exchange, head: ResponseHead) -> None:
        self._write(render_head(self._protocol_line, head))

    def send_chunk(self, exchange: Exchange, chunk: bytes) -> None:
        self._write(chunk)
        if not self.writing_paused:
            exchange.sent(len(chunk))

    def end_response(self, exchange: Exchange) -> None:
        pass  # the connection closes in done(): that ends a classic response

    def abort_response(self, exchange: Exchange, reason: str) -> None:
        # Without framing, a cut response can only be signalled by dropping the connection
        # before the declared length; abort() skips the orderly close.
        self._pending.clear()
        self.abort()

    def done(self, exchange: Exchange) -> None:
        self.runner.done(exchange)
        self._exchange = None
        self._request_body = None
        if self._uploading:
            self._uploading = False
            self.ctx.uploads.release(self)
        if not self._pending:
            self._close_after_response()

    def _close_after_response(self) -> None:
        """Close once the response is written. Without bytes from the peer left unread the
        socket closes at once, as uWSGI's does: a lingering close costs a shutdown(), a read
        of the peer's FIN and more loop wake-ups per request, and guards only against an RST
        that nothing unread can cause (bytes after the body, or the rest of a body the
        application did not read, are)."""
        self.close(linger=self._trailing or self._body_left > 0)

    def resume_writing(self) -> None:
        super().resume_writing()
        pending, self._pending = self._pending, []
        held, self._held = self._held, 0
        if self.transport is not None and pending:
            self.transport.writelines(pending)
        if self._exchange is not None and held:
            self._exchange.sent(held)
        elif self._exchange is None:
            self._close_after_response()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._handed:
            return  # the transport let go of a socket that an application thread now serves
        super().connection_lost(exc)
        if self._exchange is not None:
            self._exchange.cancel()
        else:
            self._drop_pending()

    @property
    def busy(self) -> bool:
        return self._exchange is not None or self._request_body is not None

    def enforce_timeouts(self, now: float) -> None:
        if self.drain_expired(now):
            return
        body = self._request_body
        if self._exchange is None and body is not None:
            # A body the server buffers, stalled (one waiting for an upload slot waits on us).
            if body.ticket is None and now - body.last_at > self.config.body_timeout:
                log.info(
                    "uwsgi connection from %s: no request body bytes for %gs; closing",
                    self.peer,
                    self.config.body_timeout,
                )
                self._drop_pending()
                self.close()
        elif self._exchange is None and now - self.opened > self.config.header_timeout:
            log.info(
                "uwsgi connection from %s: no complete request in %gs; closing",
                self.peer,
                self.config.header_timeout,
            )
            self.close()


def serve_in_thread(
    runner: AppRunner,
    config: Config,
    fd: int,
    environ: dict[str, Any],
    wsgi_input: ReadableInput,
    finished: Callable[[Exchange], None],
    connections: set[BaseProtocol],
) -> None:
    """Run a complete classic request on an application thread that also writes the response
    to the socket ``fd`` and closes it (uWSGI's model); the thread owns ``fd`` from now on.

    This is the one hand-off of the request: the loop is not woken for its response, which
    the thread writes as it is produced (a streamed one chunk by chunk, with no round trip
    through the loop per chunk). ``finished`` runs on the loop with the next batch (see
    AppRunner.post_quiet), or at once while more than half of max_connections are in use
    (``connections``, the worker's): the connection it gives back may be the one a new
    client needs. A socket with room takes the response in one
    non-blocking send; a peer that does not read holds the thread for at most
    ``stuck_window_timeout`` without progress.
    """
    sink = _ThreadSink(fd, runner, config.stuck_window_timeout, finished)
    if len(connections) * 2 > config.max_connections:
        sink.wake = True
    runner.submit(Exchange(runner, sink, 0, environ, wsgi_input, None, "uwsgi", post=call_now))


#: Responses up to this size are sent with their head in one write; larger bodies are not
#: copied to be joined to it.
_JOIN_LIMIT: Final = 64 * 1024


class _ThreadSink:
    """The Sink of a classic request run by serve_in_thread.

    Every method runs on the application thread (the exchange posts with call_now), except
    abort_response, which harakiri may call from the loop: the lock keeps the descriptor from
    being closed (and its number reused by another connection) while the thread writes.
    """

    __slots__ = ("_fd", "_finished", "_lock", "_runner", "_timeout", "wake")
    #: Never over TLS: the hand-over needs the connection's own socket.
    tls_environ = None

    def __init__(
        self, fd: int, runner: AppRunner, timeout: float, finished: Callable[[Exchange], None]
    ) -> None:
        #: The socket's descriptor (non-blocking, as the loop accepted it); -1 once closed.
        self._fd = fd
        self._lock = threading.Lock()
        self._runner = runner
        self._finished = finished
        #: Wake the loop for ``finished`` rather than let it wait for the next batch.
        self.wake = False
        self._timeout = timeout

    def _send(self, exchange: Exchange, data: bytes) -> None:
        """Write all of ``data``; waits (at most ``timeout`` without progress) while the peer
        does not read. A failure cancels the exchange: its next chunk is not produced."""
        offset = 0
        deadline = 0.0
        while offset < len(data):
            with self._lock:
                fd = self._fd
                if fd < 0:
                    return
                try:
                    sent = fdio.write(fd, data, offset)
                except BlockingIOError:
                    sent = 0
                except OSError:
                    sent = -1
            if sent < 0:
                self._fail(exchange)
                return
            if sent:
                offset += sent
                deadline = 0.0
                continue
            now = _monotonic()
            if not deadline:
                deadline = now + self._timeout
            elif now >= deadline:
                log.info("uwsgi response: the peer read nothing for %gs; closing", self._timeout)
                self._fail(exchange)
                return
            poller = select.poll()
            poller.register(fd, select.POLLOUT)
            poller.poll(min(deadline - now, 1.0) * 1000)

    def _fail(self, exchange: Exchange) -> None:
        exchange.cancelled.set()
        self._close()

    def _close(self) -> None:
        with self._lock:
            fd, self._fd = self._fd, -1
        if fd >= 0:
            fdio.close(fd)

    def respond_now(self, exchange: Exchange, head: ResponseHead, body: bytes) -> bool:
        return False  # respond runs on this thread already (call_now)

    def respond(self, exchange: Exchange, head: ResponseHead, body: bytes) -> None:
        rendered = render_head(_protocol_line(exchange.environ), head)
        if len(body) <= _JOIN_LIMIT:
            self._send(exchange, rendered + body)
        else:
            self._send(exchange, rendered)
            self._send(exchange, body)
        self.done(exchange)

    def send_head(self, exchange: Exchange, head: ResponseHead) -> None:
        self._send(exchange, render_head(_protocol_line(exchange.environ), head))

    def send_chunk(self, exchange: Exchange, chunk: bytes) -> None:
        self._send(exchange, chunk)
        exchange.sent(len(chunk))

    def end_response(self, exchange: Exchange) -> None:
        pass  # closing the socket ends a classic response

    def abort_response(self, exchange: Exchange, reason: str) -> None:
        self._close()  # before the declared length: the peer sees the response was cut

    def done(self, exchange: Exchange) -> None:
        self._close()
        exchange.finished = _monotonic()
        # Bookkeeping (counters, the access log, the connection count): no reason to wake
        # the loop for it unless connections run short.
        if self.wake:
            self._runner.post(self._finished, exchange)
        else:
            self._runner.post_quiet(self._finished, exchange)


def _protocol_line(environ: dict[str, Any]) -> str:
    protocol = environ.get("SERVER_PROTOCOL") or "HTTP/1.1"
    return protocol if protocol.startswith("HTTP/") else "HTTP/1.1"
