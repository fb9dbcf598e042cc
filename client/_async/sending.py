"""How an AsyncClient sends a request: the per-request path, compiled in the compiled build.

:class:`~muxwsgi.client._async.client.AsyncClient` is the public face (its signatures, its
settings' errors, weak references to it); each of its requests runs here, in
:class:`AsyncSender`, which holds what the client made: its settings, pool, counters and span
maker. Retries follow the client module's docstring.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

from muxwsgi import ErrorCode, ResponseReceived

from .._config import USE_CLIENT_DEFAULT, ClientConfig, UseClientDefault
from .._exceptions import (
    ClientError,
    ConnectError,
    ReadError,
    RequestTimeout,
    Retry,
    StreamResetError,
    TransportError,
    WriteError,
)
from .._metrics import EndpointStats, RequestCounts
from .._models import (
    Chunk,
    Endpoint,
    HeaderTypes,
    Readable,
    RequestBody,
    body_chunks,
    body_size,
    build_vars,
    remaining,
    request_vars,
)
from .._primitives import async_sleep
from .._retries import IDEMPOTENT, refused_pause
from .._tracing import TRACEPARENT_VAR, new_traceparent
from .classic import AsyncClassicExchange
from .connection import AsyncMuxConnection, AsyncResponseBody, StreamState, _monotonic
from .pool import AsyncPool
from .response import AsyncResponse

if TYPE_CHECKING:
    from .._otel import AttemptSpan, ClientSpans

__all__ = ("AsyncSender",)

#: Final: the compiled build reads it from a C static, not the module dict, per request.
_USE_CLIENT_DEFAULT: Final = USE_CLIENT_DEFAULT


class AsyncSender:
    """Sends an :class:`AsyncClient`'s requests (see :meth:`send`)."""

    def __init__(
        self,
        endpoints: list[Endpoint],
        protocol: str,
        config: ClientConfig,
        pool: AsyncPool,
        counts: RequestCounts,
        spans: ClientSpans | None,
    ) -> None:
        self.endpoints = endpoints
        self.protocol = protocol
        self.config = config
        self.pool = pool
        self.counts = counts
        self.spans = spans
        self.next_classic = 0
        #: Whether the client is open (it sets this): requests are refused until it is.
        self.open = False

    async def request(
        self,
        method: str,
        target: str,
        headers: HeaderTypes,
        body: RequestBody,
        timeout: float | UseClientDefault | None,
    ) -> AsyncResponse:
        """:meth:`send`, then read the whole response body and close the response."""
        response = await self.send(method, target, headers, body, timeout, whole=True)
        if response.is_closed:  # the whole body had arrived with the head (see send)
            return response
        try:
            await response.aread()
        except BaseException as exc:
            if isinstance(exc, ClientError):
                self.counts.failed(exc)
            await response.aclose()
            raise exc  # not a bare raise after an await: see send()
        await response.aclose()
        return response

    async def send(
        self,
        method: str,
        target: str,
        headers: HeaderTypes,
        body: RequestBody,
        timeout: float | UseClientDefault | None,
        *,
        whole: bool = False,
    ) -> AsyncResponse:
        """Send a request and return its response once its head arrived (the body streams).
        Raises what the client's methods document: ClientError and its kinds, TypeError or
        ValueError for a request that cannot be sent, RuntimeError while the client is not
        open.

        ``whole`` (for :meth:`request`, which reads the body anyway): when the whole mux body
        has arrived with the head, as small responses do, the response comes back read and
        closed, its connection released, without the streaming machinery (body iterator,
        close callback) that a streamed response needs.
        """
        if not self.open:
            raise RuntimeError("the client is not open: use it as a context manager")
        config = self.config
        counts = self.counts
        counts.requests += 1
        if timeout is _USE_CLIENT_DEFAULT:
            timeout = config.timeout
        deadline = None if timeout is None else _monotonic() + timeout
        method = method.upper()
        if type(body) is not bytes and isinstance(body, bytearray | memoryview):  # (see body_size)
            body = bytes(body)
        if isinstance(body, str):
            raise TypeError("the request body must be bytes, an iterable of bytes or a file")
        replayable = isinstance(body, bytes)
        traceparent = new_traceparent() if config.trace else None
        spans = self.spans
        span: AttemptSpan | None = None  # the OpenTelemetry span of the current attempt
        try:
            if self.protocol == "uwsgi":
                return await self._send_classic(
                    method, target, headers, body, deadline, traceparent
                )
            transparent = 0
            retries = config.retries
            avoid: EndpointStats | None = None  # the endpoint where the last attempt failed
            pause = 0.0  # how long a refused request waits to go back where it was refused
            while True:
                if spans is not None:
                    span = spans.start(method, target, transparent + config.retries - retries)
                conn = await self.pool.acquire(deadline, avoid)
                if pause and conn.stats is avoid:
                    left = remaining(deadline)
                    if left is not None and left <= pause:
                        await self.pool.release(conn)
                        raise RequestTimeout(f"{conn.endpoint}: the deadline passed retrying")
                    await async_sleep(pause)
                sent = _monotonic()
                try:
                    vars, block = request_vars(
                        method,
                        target,
                        headers,
                        body_length=body_size(body),
                        server_name=conn.endpoint.host or "localhost",
                        server_port=str(conn.endpoint.port or ""),
                        local=conn.local,
                        scheme=conn.endpoint.request_scheme,
                    )
                    if span is not None:
                        span.send(conn.endpoint, vars, block)
                    if traceparent is not None and TRACEPARENT_VAR not in block.names:
                        vars.setdefault(TRACEPARENT_VAR, traceparent)
                    head, state, sid = await conn.request(vars, block, body, deadline)
                except Retry as exc:
                    await self.pool.release(conn)
                    transparent += 1
                    if not replayable or transparent > config.max_transparent_retries:
                        why = "the body cannot be replayed" if not replayable else "too many times"
                        raise StreamResetError(
                            f"{exc.reason}; not retried: {why}", ErrorCode.REFUSED_STREAM
                        ) from None
                    counts.retried("transparent")
                    avoid, pause = conn.stats, refused_pause(transparent)
                    if span is not None:
                        span.failed(exc)
                    continue
                except (TransportError, StreamResetError, RequestTimeout) as exc:
                    await self.pool.release(conn)
                    if (
                        retries > 0
                        and replayable
                        and method in IDEMPOTENT
                        and not isinstance(exc, RequestTimeout)
                    ):
                        retries -= 1
                        counts.retried("after_failure")
                        avoid, pause = conn.stats, 0.0
                        if span is not None:
                            span.failed(exc)
                        continue
                    raise exc
                except BaseException as exc:
                    # `raise exc`, never a bare `raise`, after an await in an except block:
                    # compiled, the coroutine has no exception state of its own, and a bare
                    # raise after resuming would raise whatever ran in between left there.
                    await self.pool.release(conn)
                    raise exc
                now = _monotonic()
                conn.stats.answered(now - sent, now)
                if span is not None:
                    span.answered(head.status)
                if whole:
                    content = conn.take_complete(sid, state)
                    if content is not None:
                        await self.pool.release(conn)
                        return AsyncResponse.with_content(
                            head.status, head.reason, head.headers, content, url=conn.url
                        )
                return self._mux_response(conn, head, state, sid, deadline)
        except BaseException as exc:
            if isinstance(exc, ClientError):
                counts.failed(exc)
            if span is not None:  # the attempt that failed: a retry's span is ended already
                span.failed(exc)
            raise exc

    def _mux_response(
        self,
        conn: AsyncMuxConnection,
        head: ResponseReceived,
        state: StreamState,
        sid: int,
        deadline: float | None,
    ) -> AsyncResponse:
        pool = self.pool

        async def on_close(complete: bool) -> None:
            if not complete:
                await conn.cancel(sid)
            await pool.release(conn)

        if head.end_stream:
            state.done = True
        return AsyncResponse(
            head.status,
            head.reason,
            head.headers,
            AsyncResponseBody(conn, sid, state, deadline),
            on_close,
            url=conn.url,
            complete=lambda: conn.take_complete(sid, state),
        )

    async def _send_classic(
        self,
        method: str,
        target: str,
        headers: HeaderTypes,
        body: bytes | Iterable[Chunk] | Readable,
        deadline: float | None,
        traceparent: str | None,
    ) -> AsyncResponse:
        if not isinstance(body, bytes):
            # Classic uwsgi frames a body by CONTENT_LENGTH only: it must be known up front.
            body = b"".join(body_chunks(body))
        retries = self.config.retries
        attempts = 0
        spans = self.spans
        while True:
            endpoint = self.endpoints[self.next_classic % len(self.endpoints)]
            self.next_classic += 1
            attempts += 1
            span = None if spans is None else spans.start(method, target, attempts - 1)
            try:
                left = remaining(deadline)
                exchange = await AsyncClassicExchange.connect(
                    endpoint,
                    self.config.connect_timeout
                    if left is None
                    else min(left, self.config.connect_timeout),
                    self.config,
                )
                vars = build_vars(
                    method,
                    target,
                    headers,
                    body_length=len(body),
                    server_name=endpoint.host or "localhost",
                    server_port=str(endpoint.port or ""),
                    local=exchange.local,
                    scheme=endpoint.request_scheme,
                )
                if span is not None:
                    span.send(endpoint, vars, None)
                if traceparent is not None:
                    vars.setdefault(TRACEPARENT_VAR, traceparent)
                await exchange.send(vars, body, deadline)
            except BaseException as exc:
                if span is not None:
                    span.failed(exc)
                # Nothing was sent after a ConnectError: another endpoint may take it,
                # whatever the method.
                if (
                    isinstance(exc, ConnectError)
                    and len(self.endpoints) > 1
                    and attempts < len(self.endpoints) + self.config.max_transparent_retries
                ):
                    continue
                if isinstance(exc, ReadError | WriteError) and retries > 0 and method in IDEMPOTENT:
                    retries -= 1
                    continue
                raise
            if span is not None:
                span.answered(exchange.status)
            break

        async def on_close(complete: bool) -> None:
            await exchange.aclose()

        return AsyncResponse(
            exchange.status,
            exchange.reason,
            exchange.headers,
            exchange,
            on_close,
            url=str(endpoint),
        )
