"""One request's life on the application thread, and what it shares with the event loop.

An :class:`Exchange` is created on the loop thread when a request head arrives and is queued for
an application thread, which runs the WSGI application and hands its results to the protocol
that owns the request (its :class:`~muxwsgi.server.interfaces.Sink`) through
:meth:`AppRunner.post <muxwsgi.server.dispatch.AppRunner.post>`. Only plain attribute writes and
the per-exchange condition variables cross threads; every protocol object is touched by the
loop thread alone.

The common case is kept short: a request answered by a list of byte strings becomes a single
``respond`` message carrying the whole response. Anything else (``write()``, generators, file
wrappers) takes the streaming path, which blocks the application thread when the peer is not
reading (a bounded send buffer per stream, PROTOCOL.md [L-3]).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final, TypeVarTuple

from .errors import ClientDisconnected
from .interfaces import Post, Runner, Sink
from .wsgi import (
    HeadersError,
    ReadableInput,
    ResponseHead,
    StartResponse,
    close_iterable,
    prepare_environ,
)

__all__ = (
    "CancelFlag",
    "ClientDisconnected",
    "EmptyInput",
    "Exchange",
    "InputStream",
    "call_now",
)

log = logging.getLogger("muxwsgi.error")
_monotonic: Final = time.monotonic
_Args = TypeVarTuple("_Args")
_INTERNAL_ERROR_HEAD: Final = ResponseHead(
    500, "Internal Server Error", [("Content-Type", "text/plain"), ("Content-Length", "21")]
)
_INTERNAL_ERROR_BODY: Final = b"Internal Server Error"


class Cancelled(Exception):
    """Internal: stop iterating a response whose stream is gone."""


#: Taken to create a CancelFlag's condition, once per flag that is ever waited on: never on
#: the path of a request whose application does not wait.
_CONDITION_CREATION: Final = threading.Lock()


class CancelFlag:
    """``environ["muxwsgi.cancelled"]``: set when the client resets the stream or goes away,
    or when the request's deadline passes.

    It offers threading.Event's ``is_set()`` and ``wait(timeout)``, and :attr:`fired`, the
    same answer as ``is_set()`` as a plain attribute for the server's per-request checks. Its
    condition is created only when someone waits, because most requests never look at it and
    an Event costs a Condition per request. The creation holds a module-wide lock: two threads
    waiting at once must share one condition, or ``set()`` would wake the waiters of only one.
    """

    __slots__ = ("_cond", "fired")

    def __init__(self) -> None:
        #: True once :meth:`set` was called.
        self.fired = False
        self._cond: threading.Condition | None = None

    def is_set(self) -> bool:
        return self.fired

    def set(self) -> None:
        # fired is written before _cond is read, and wait() writes _cond before it reads
        # fired (under the condition): if this sees no condition yet, the waiter sees fired.
        self.fired = True
        cond = self._cond
        if cond is not None:
            with cond:
                cond.notify_all()

    def wait(self, timeout: float | None = None) -> bool:
        if self.fired:
            return True
        cond = self._cond
        if cond is None:
            with _CONDITION_CREATION:
                cond = self._cond
                if cond is None:
                    cond = self._cond = threading.Condition(threading.Lock())
        with cond:
            if not self.fired:
                cond.wait(timeout)
        return self.fired


class EmptyInput:
    """``wsgi.input`` of a request without a body: stateless, so one instance serves all."""

    def read(self, size: int = -1, /) -> bytes:
        return b""

    def readline(self, size: int = -1, /) -> bytes:
        return b""

    def readlines(self, hint: int = -1, /) -> list[bytes]:
        return []

    def __iter__(self) -> Iterator[bytes]:
        return iter(())


EMPTY_INPUT: Final = EmptyInput()


class InputStream:
    """``wsgi.input`` fed by the event loop as body bytes arrive.

    The loop calls :meth:`feed`, :meth:`feed_eof` and :meth:`fail`; the application thread reads
    and blocks until enough bytes arrived, the body ended, or ``timeout`` seconds pass without a
    byte (then :class:`ClientDisconnected`). Every consumed byte is reported to ``on_consumed``
    (posted to the loop), which reopens the client's flow-control window: that is the
    backpressure a slow application puts on a fast uploader.
    """

    def __init__(
        self, on_consumed: Callable[[int], None], timeout: float, chunks: Iterable[bytes] = ()
    ) -> None:
        #: Bytes fed and not yet read (``chunks``: those that arrived before the stream).
        self._chunks: deque[bytes] = deque(chunks)
        self._cond = threading.Condition(threading.Lock())
        self._eof = False
        self._error: str | None = None
        self._on_consumed = on_consumed
        self._timeout = timeout
        self._pending = b""

    # ---------------------------------------------------------------- loop side

    def feed(self, data: bytes) -> None:
        with self._cond:
            self._chunks.append(data)
            self._cond.notify()

    def feed_eof(self) -> None:
        with self._cond:
            self._eof = True
            self._cond.notify()

    def fail(self, reason: str) -> None:
        with self._cond:
            self._error = reason
            self._cond.notify()

    # ---------------------------------------------------------------- application side

    def _next_chunk(self) -> bytes:
        """Wait for the next chunk; b"" at the end of the body."""
        with self._cond:
            while not self._chunks:
                if self._error is not None:
                    raise ClientDisconnected(self._error)
                if self._eof:
                    return b""
                if not self._cond.wait(self._timeout) and not self._chunks:
                    self._error = f"no request body bytes for {self._timeout:g}s"
            chunk = self._chunks.popleft()
        self._on_consumed(len(chunk))
        return chunk

    def read(self, size: int = -1, /) -> bytes:
        if size is None or size < 0:
            parts = [self._pending]
            self._pending = b""
            while chunk := self._next_chunk():
                parts.append(chunk)
            return b"".join(parts)
        while len(self._pending) < size:
            chunk = self._next_chunk()
            if not chunk:
                break
            self._pending += chunk
        data, self._pending = self._pending[:size], self._pending[size:]
        return data

    def readline(self, size: int = -1, /) -> bytes:
        while b"\n" not in self._pending and (size < 0 or len(self._pending) < size):
            chunk = self._next_chunk()
            if not chunk:
                break
            self._pending += chunk
        end = self._pending.find(b"\n") + 1 or len(self._pending)
        if size >= 0:
            end = min(end, size)
        line, self._pending = self._pending[:end], self._pending[end:]
        return line

    def readlines(self, hint: int = -1, /) -> list[bytes]:
        lines: list[bytes] = []
        total = 0
        while line := self.readline():
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line


class Exchange:
    """One request: created by a protocol on the loop thread, run by :meth:`run` on an
    application thread.

    ``sink`` is the protocol's loop-side half; every message to it goes through ``post``
    (``runner.post`` unless the sink lives on the application thread, see :func:`call_now`).
    ``key`` identifies the request for the sink (the stream id on a mux connection).
    """

    __slots__ = (
        "_buffered",
        "_cond",
        "_declared_sent",
        "_start",
        "cancelled",
        "deadline",
        "environ",
        "finished",
        "input",
        "key",
        "post",
        "protocol_name",
        "runner",
        "sent_bytes",
        "sink",
        "started",
        "status",
    )

    def __init__(
        self,
        runner: Runner,
        sink: Sink[Exchange],
        key: int,
        environ: dict[str, Any],
        wsgi_input: ReadableInput,
        deadline: float | None,
        protocol_name: str,
        post: Post | None = None,
    ) -> None:
        self.runner = runner
        self.sink = sink
        #: How the application thread hands a message to the sink: ``runner.post`` (run on the
        #: loop) unless the sink lives on the application thread (see call_now).
        self.post: Post = runner.post if post is None else post
        self.key = key
        self.environ = environ
        self.input = wsgi_input
        self.deadline = deadline
        self.protocol_name = protocol_name
        self.cancelled = CancelFlag()
        self.started = 0.0
        #: When the application thread finished (0.0: not yet, or done on the loop).
        self.finished = 0.0
        # For the access log: the response status and body bytes the application produced.
        self.status = 0
        self.sent_bytes = 0
        # Response bytes posted to the loop and not yet accepted by the protocol; the
        # condition exists only once the response streams. Only the application thread
        # creates it, before it posts the first chunk: the loop's cancel() may miss it, but
        # cancel() sets the flag first, which the thread checks under the condition.
        self._buffered = 0
        self._cond: threading.Condition | None = None
        # Body bytes streamed so far, checked against a declared Content-Length.
        self._declared_sent = 0
        self._start: StartResponse | None = None

    # ---------------------------------------------------------------- loop side

    def cancel(self) -> None:
        """The stream is gone (reset, connection lost, stuck window): stop the application's
        reads and writes at their next step. Loop thread."""
        self.cancelled.set()
        if isinstance(self.input, InputStream):
            self.input.fail("the client reset the stream or closed the connection")
        cond = self._cond
        if cond is not None:
            with cond:
                cond.notify_all()

    def sent(self, size: int) -> None:
        """The protocol accepted ``size`` streamed bytes: let a blocked application go on."""
        cond = self._cond
        if cond is not None:
            with cond:
                self._buffered -= size
                cond.notify_all()

    # ---------------------------------------------------------------- application side

    def run(self) -> None:
        """Run the application for this request and hand the response to the loop."""
        runner = self.runner
        post = self.post
        sink = self.sink
        if self.cancelled.fired:
            post(sink.done, self)
            return
        now = _monotonic()
        if self.deadline is not None and now >= self.deadline:
            post(sink.abort_response, self, "deadline")
            post(sink.done, self)
            return
        self.started = now
        environ = prepare_environ(
            self.environ,
            wsgi_input=self.input,
            constants=runner.environ_constants,
            server_name=runner.server_name,
            server_port=runner.server_port,
            tls=sink.tls_environ,
        )
        environ["muxwsgi.protocol"] = self.protocol_name
        environ["muxwsgi.stream_id"] = self.key
        environ["muxwsgi.deadline"] = self.deadline
        environ["muxwsgi.cancelled"] = self.cancelled
        environ["muxwsgi.request_id"] = (
            environ.get(runner.request_id_var) or runner.new_request_id()
        )
        start = self._start = StartResponse(self._write)
        result: Iterable[bytes] | None = None
        responded = False  # respond was posted: it ends the exchange, no done follows
        try:
            result = runner.app(environ, start)
            if type(result) is list or type(result) is tuple:
                # The fast path: the whole body is known; one message to the loop.
                head = start.head
                if head is None:
                    raise HeadersError("the application returned without calling start_response")
                if not start.head_sent:
                    body = b"".join(result)
                    if head.content_length is not None and len(body) != head.content_length:
                        body = self._fix_length(head, body)
                    if environ["REQUEST_METHOD"] == "HEAD":
                        body = b""
                    self.status = head.status
                    self.sent_bytes = len(body)
                    result = None  # an exact list or tuple has no close() to call
                    responded = True
                    if not sink.respond_now(self, head, body):
                        # One message for the whole exchange: response and its end together.
                        post(sink.respond, self, head, body)
                    return
            self._stream(result, start)
        except Cancelled:
            pass
        except BaseException as exc:
            responded = self._fail(exc, start)
            if not isinstance(exc, Exception):
                raise
        finally:
            # start_response's write() refers back to the exchange: without this cycle the
            # request (a buffered body with it) is freed with its last reference, not at the
            # next garbage collection, which large bodies alone never trigger.
            self._start = None
            if result is not None:
                try:
                    close_iterable(result)
                except Exception:
                    log.exception("%s: the response iterable's close() raised", self.describe())
            if not responded:
                post(sink.done, self)

    def _fix_length(self, head: ResponseHead, body: bytes) -> bytes:
        """Content-Length disagrees with the body: send what was declared, never more.

        Too much body is cut (the excess must not reach the peer as a next response); too
        little cannot be completed, so the response is aborted after what there is.
        """
        declared = head.content_length
        assert declared is not None
        if len(body) > declared:
            log.error(
                "%s: the application sent %d body bytes but declared Content-Length %d; cut",
                self.describe(),
                len(body),
                declared,
            )
            return body[:declared]
        raise _ShortBody(body)

    def _stream(self, result: Iterable[bytes], start: StartResponse) -> None:
        """The streaming path: send the head with the first non-empty chunk, then chunks."""
        if self._cond is None:
            self._cond = threading.Condition(threading.Lock())
        post = self.post
        sink = self.sink
        head_only = self.environ["REQUEST_METHOD"] == "HEAD"
        cancelled = self.cancelled
        for chunk in result:
            if cancelled.fired:
                raise Cancelled
            if not chunk:
                continue
            if type(chunk) is not bytes:
                raise TypeError(f"the application yielded {type(chunk).__name__}, not bytes")
            self._send_chunk(chunk, start, head_only)
        if start.head is None:
            raise HeadersError("the application returned without calling start_response")
        if not start.head_sent:
            start.head_sent = True
            self.status = start.head.status
            post(sink.send_head, self, start.head)
        declared = start.head.content_length
        if declared is not None and not head_only and self._declared_sent < declared:
            raise _ShortBody(b"")
        post(sink.end_response, self)

    def _send_chunk(self, chunk: bytes, start: StartResponse, head_only: bool) -> None:
        head = start.head
        if head is None:
            raise HeadersError("the application sent body bytes before start_response")
        post = self.post
        sink = self.sink
        if not start.head_sent:
            start.head_sent = True
            self.status = head.status
            post(sink.send_head, self, head)
        if head_only:
            return
        declared = head.content_length
        if declared is not None:
            room = declared - self._declared_sent
            if len(chunk) > room:
                log.error(
                    "%s: the application sent more than its Content-Length %d; cut",
                    self.describe(),
                    declared,
                )
                chunk = chunk[:room]
                if not chunk:
                    return
            self._declared_sent += len(chunk)
        cond = self._cond
        assert cond is not None
        limit = self.runner.send_buffer_size
        cancelled = self.cancelled
        with cond:
            # Backpressure: wait while this stream already has a full buffer in flight.
            while self._buffered >= limit and not cancelled.fired:
                cond.wait()
            if cancelled.fired:
                raise Cancelled
            self._buffered += len(chunk)
        self.sent_bytes += len(chunk)
        post(sink.send_chunk, self, chunk)

    def _write(self, data: bytes) -> None:
        """The legacy ``write()`` callable returned by start_response."""
        if self._cond is None:
            self._cond = threading.Condition(threading.Lock())
        if type(data) is not bytes:
            raise TypeError(f"write() takes bytes, not {type(data).__name__}")
        if self.cancelled.fired:
            raise ClientDisconnected("the client reset the stream or closed the connection")
        start = self._start
        assert start is not None
        if data:
            try:
                self._send_chunk(data, start, self.environ["REQUEST_METHOD"] == "HEAD")
            except Cancelled:
                raise ClientDisconnected("the client went away") from None

    def _fail(self, exc: BaseException, start: StartResponse) -> bool:
        """The application (or its response) failed: a 500 if nothing was sent, else abort.
        Returns whether it responded (which ends the exchange)."""
        post = self.post
        sink = self.sink
        if isinstance(exc, _ShortBody):
            if not start.head_sent and start.head is not None:
                start.head_sent = True
                post(sink.send_head, self, start.head)
                if exc.body:
                    post(sink.send_chunk, self, exc.body)
            log.error("%s: the response is shorter than its Content-Length", self.describe())
            post(sink.abort_response, self, "short body")
            return False
        log.error(
            "%s: the application raised; %s",
            self.describe(),
            "answering 500" if not start.head_sent else "aborting the response",
            exc_info=(type(exc), exc, exc.__traceback__),
        )
        self.runner.exceptions += 1
        if start.head_sent:
            post(sink.abort_response, self, "application error")
            return False
        self.status = 500
        self.sent_bytes = len(_INTERNAL_ERROR_BODY)
        post(sink.respond, self, _INTERNAL_ERROR_HEAD, _INTERNAL_ERROR_BODY)
        return True

    def describe(self) -> str:
        """The request in a log line: method, URI, protocol and stream."""
        env = self.environ
        return (
            f"{env.get('REQUEST_METHOD', '?')} {env.get('REQUEST_URI') or env.get('PATH_INFO', '')}"
            f" ({self.protocol_name}, stream {self.key})"
        )


def call_now(func: Callable[[*_Args], None], /, *args: *_Args) -> None:
    """``Exchange.post`` for a sink that runs on the application thread itself."""
    func(*args)


class _ShortBody(Exception):
    def __init__(self, body: bytes) -> None:
        self.body = body
