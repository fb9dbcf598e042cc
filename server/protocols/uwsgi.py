"""Classic uwsgi: one request per connection, the response written as raw HTTP, then close.

This is what nginx's ``uwsgi_pass`` speaks (PROTOCOL.md §12). The vars block size is checked
against ``buffer_size`` from the 4-byte header, before the block is read; the body is exactly
CONTENT_LENGTH bytes and anything after it is never parsed (a classic connection carries one
request, so leftover bytes cannot be smuggled in as a second one).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from muxwsgi import InvalidVarsError, classic
from muxwsgi._vars import parse_content_length

from ..exchange import EMPTY_INPUT, Exchange, InputStream
from ..wsgi import ResponseHead
from .base import BaseProtocol, ServerContext

__all__ = ("UwsgiProtocol", "render_head")

log = logging.getLogger("muxwsgi.error")
_monotonic = time.monotonic


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
        self._input: InputStream | None = None
        self._body_left = 0
        self._pending: list[bytes] = []  # response bytes held while writing is paused
        self._held = 0
        self._protocol_line = "HTTP/1.1"

    # ---------------------------------------------------------------- input

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return  # lingering after our close: dropped
        self.last_activity = _monotonic()
        if self._exchange is not None:
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
        if self.transport is not None:
            self.transport.pause_reading()  # resumed only to read a body
        try:
            environ = classic.decode_vars(block, self.config.max_vars)
            content_length = parse_content_length(environ.get("CONTENT_LENGTH")) or 0
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
        wsgi_input: Any = EMPTY_INPUT
        if content_length:
            self._input = wsgi_input = InputStream(self._consumed, self.config.body_timeout)
            self._body_left = content_length
        exchange = Exchange(self.runner, self, 0, environ, wsgi_input, None, "uwsgi")
        self._exchange = exchange
        self.runner.submit(exchange)
        if content_length:
            self._body(rest)
            if self._body_left and self.transport is not None:
                self.transport.resume_reading()

    def _body(self, data: bytes) -> None:
        if self._input is None or not self._body_left:
            return  # [U-4] bytes after the body are never parsed
        data = data[: self._body_left]
        self._body_left -= len(data)
        if data:
            self._input.feed(data)
        if not self._body_left:
            self._input.feed_eof()
            if self.transport is not None:
                self.transport.pause_reading()

    def on_peer_eof(self) -> None:
        if self._input is not None and self._body_left:
            # Fewer body bytes than CONTENT_LENGTH, and no more will come: fail the
            # application's read now rather than after body_timeout.
            self._input.fail("the client closed the connection before the end of the body")
        super().on_peer_eof()

    def _consumed(self, size: int) -> None:
        """Body bytes were read by the application (its thread): nothing to do, the socket
        buffers are the flow control here."""

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

    def on_complete(self, exchange: Exchange, head: ResponseHead, body: bytes) -> None:
        self._write(render_head(self._protocol_line, head) + body)

    def on_head(self, exchange: Exchange, head: ResponseHead) -> None:
        self._write(render_head(self._protocol_line, head))

    def on_chunk(self, exchange: Exchange, chunk: bytes) -> None:
        self._write(chunk)
        if not self.writing_paused:
            exchange.sent(len(chunk))

    def on_end(self, exchange: Exchange) -> None:
        pass  # the connection closes in on_done: that ends a classic response

    def on_abort(self, exchange: Exchange, reason: str) -> None:
        # Without framing, a cut response can only be signalled by dropping the connection
        # before the declared length; abort() skips the orderly close.
        self._pending.clear()
        self.abort()

    def on_done(self, exchange: Exchange) -> None:
        self.runner.done(exchange)
        self._exchange = None
        if not self._pending:
            self.close()

    def resume_writing(self) -> None:
        super().resume_writing()
        pending, self._pending = self._pending, []
        held, self._held = self._held, 0
        if self.transport is not None and pending:
            self.transport.writelines(pending)
        if self._exchange is not None and held:
            self._exchange.sent(held)
        elif self._exchange is None:
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self._exchange is not None:
            self._exchange.cancel()

    @property
    def busy(self) -> bool:
        return self._exchange is not None

    def check_timeouts(self, now: float) -> None:
        if self.closed:
            self.linger_expired(now)
            return
        if self.drain_expired(now):
            return
        if self._exchange is None and now - self.opened > self.config.header_timeout:
            log.info(
                "uwsgi connection from %s: no complete request in %gs; closing",
                self.peer,
                self.config.header_timeout,
            )
            self.close()
