"""AsyncClient: requests over pooled, multiplexed muxwsgi connections (or classic uwsgi).

Retries follow PROTOCOL.md §8.1 and gRPC's transparent retries: a request the server's
application never saw (refused stream, above a GOAWAY's last stream id, never written) is sent
again on another connection whatever its method, within the deadline and up to
``max_transparent_retries``; any other failure is retried only for idempotent methods and only
``retries`` times (0 by default), because the server may have acted on it. Either goes to
another endpoint when one has room; a refused request that can only go back where it was
refused waits a little first (a busy server).
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from typing import TYPE_CHECKING, Unpack

from muxwsgi import ErrorCode, ResponseReceived

from .._config import USE_CLIENT_DEFAULT, ClientConfig, UseClientDefault
from .._discovery import AsyncResolver
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
from .._metrics import ClientMetrics, EndpointStats, RequestCounts
from .._models import (
    Chunk,
    Endpoint,
    HeaderTypes,
    Readable,
    RequestBody,
    RequestOptions,
    body_chunks,
    body_size,
    build_vars,
    parse_url,
    remaining,
    request_vars,
)
from .._primitives import AsyncBackground, async_sleep
from .._retries import IDEMPOTENT, refused_pause
from .._tls import CertTypes, VerifyTypes
from .._tracing import TRACEPARENT_VAR, client_spans, new_traceparent
from .classic import AsyncClassicExchange
from .connection import AsyncMuxConnection, AsyncResponseBody, StreamState, _monotonic
from .pool import AsyncPool
from .response import AsyncResponse

if TYPE_CHECKING:
    from .._otel import AttemptSpan

__all__ = ("AsyncClient",)

_clients: weakref.WeakSet[AsyncClient] = weakref.WeakSet()


class AsyncClient:
    """Send requests to a muxwsgi server (``mux://``) or a classic uwsgi one (``uwsgi://``).

    ``url`` is one URL or a list (one endpoint each; a host name is an endpoint per address,
    read again every ``resolve_interval``; mux endpoints are balanced as ``balancing`` says).
    Use it as a context manager, or call :meth:`aclose`. Safe to share between the tasks of one
    event loop.

    ``resolver`` replaces getaddrinfo for the URLs' host names: ``async def resolve(host,
    port)`` returning addresses, or (address, port) pairs (client/_discovery.py). Every other
    keyword is a setting of :class:`~muxwsgi.client._config.ClientConfig`, which says what each
    does (so does docs/client.md); ``config`` is the one the client runs with. Raises
    ValueError for a URL or a setting it cannot use.
    """

    def __init__(
        self,
        url: str | Iterable[str],
        *,
        timeout: float | None = ClientConfig.timeout,
        retries: int = ClientConfig.retries,
        connect_timeout: float = ClientConfig.connect_timeout,
        write_timeout: float = ClientConfig.write_timeout,
        max_connections_per_endpoint: int = ClientConfig.max_connections_per_endpoint,
        keepalive_interval: float = ClientConfig.keepalive_interval,
        keepalive_timeout: float = ClientConfig.keepalive_timeout,
        stream_window: int = ClientConfig.stream_window,
        connection_window: int = ClientConfig.connection_window,
        max_transparent_retries: int = ClientConfig.max_transparent_retries,
        resolve_interval: float = ClientConfig.resolve_interval,
        balancing: str = ClientConfig.balancing,
        ejection_failures: int = ClientConfig.ejection_failures,
        ejection_time: float = ClientConfig.ejection_time,
        max_ejection_time: float = ClientConfig.max_ejection_time,
        max_ejection_percent: int = ClientConfig.max_ejection_percent,
        trace: bool = ClientConfig.trace,
        opentelemetry: bool | str = ClientConfig.opentelemetry,
        resolver: AsyncResolver | None = None,
        verify: VerifyTypes = ClientConfig.verify,
        cert: CertTypes = ClientConfig.cert,
    ) -> None:
        urls = [url] if isinstance(url, str) else list(url)
        if not urls:
            raise ValueError("at least one URL is needed")
        parsed = [parse_url(u) for u in urls]
        protocols = {endpoint.protocol for endpoint, _ in parsed}
        if len(protocols) > 1:
            raise ValueError("mix of mux:// and uwsgi:// URLs: use one client per protocol")
        self.endpoints: list[Endpoint] = [endpoint for endpoint, _ in parsed]
        self.protocol = protocols.pop()
        self.config = ClientConfig(
            timeout=timeout,
            retries=retries,
            connect_timeout=connect_timeout,
            write_timeout=write_timeout,
            max_connections_per_endpoint=max_connections_per_endpoint,
            keepalive_interval=keepalive_interval,
            keepalive_timeout=keepalive_timeout,
            stream_window=stream_window,
            connection_window=connection_window,
            max_transparent_retries=max_transparent_retries,
            resolve_interval=resolve_interval,
            balancing=balancing,
            ejection_failures=ejection_failures,
            ejection_time=ejection_time,
            max_ejection_time=max_ejection_time,
            max_ejection_percent=max_ejection_percent,
            trace=trace,
            opentelemetry=opentelemetry,
            verify=verify,
            cert=cert,
        )
        self._spans = client_spans(self.config.opentelemetry, self.endpoints)
        self._resolver = resolver
        self._counts = RequestCounts()
        self._background = AsyncBackground()
        self._pool = AsyncPool(self.endpoints, self._background, self.config, resolver)
        self._next_classic = 0
        self._open = False
        _clients.add(self)

    async def open(self) -> AsyncClient:
        """Start the client (``async with`` does it), for one kept for the life of the process:
        ``client = await AsyncClient(url).open()``, later ``await client.aclose()``. Under
        anyio, the task that opens it must close it (it owns the connections' reader tasks)."""
        if not self._open:
            await self._background.start()
            self._open = True
        return self

    async def __aenter__(self) -> AsyncClient:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._open = False
        await self._pool.aclose()
        await self._background.stop()

    def _after_fork(self) -> None:
        # The child must never use the parent's sockets (nor close them for it).
        self._pool.drop()
        self._background = AsyncBackground()
        self._pool = AsyncPool(self.endpoints, self._background, self.config, self._resolver)

    def metrics(self) -> ClientMetrics:
        """The client's counters now: requests, errors, retries, and per endpoint its state,
        connections, streams in flight, latency, failures and ejections.
        ``client.metrics().prometheus()`` is the same in Prometheus's text format."""
        return self._pool.metrics(self._counts)

    # ---------------------------------------------------------------- the verbs

    async def request(
        self,
        method: str,
        target: str,
        *,
        headers: HeaderTypes = None,
        body: RequestBody = b"",
        timeout: float | UseClientDefault | None = USE_CLIENT_DEFAULT,
    ) -> AsyncResponse:
        """Send a request and read the whole response body (``response.content``)."""
        response = await self._send(method, target, headers, body, timeout)
        try:
            await response.aread()
        except ClientError as exc:
            self._counts.failed(exc)
            raise
        finally:
            await response.aclose()
        return response

    def stream(
        self,
        method: str,
        target: str,
        *,
        headers: HeaderTypes = None,
        body: RequestBody = b"",
        timeout: float | UseClientDefault | None = USE_CLIENT_DEFAULT,
    ) -> AsyncStreaming:
        """``async with client.stream(...) as response``: send a request; the response body
        streams (``response.aiter_bytes()``). Leaving the block early resets the stream."""
        return AsyncStreaming(partial(self._send, method, target, headers, body, timeout))

    async def get(self, target: str, **kw: Unpack[RequestOptions]) -> AsyncResponse:
        return await self.request("GET", target, **kw)

    async def head(self, target: str, **kw: Unpack[RequestOptions]) -> AsyncResponse:
        return await self.request("HEAD", target, **kw)

    async def options(self, target: str, **kw: Unpack[RequestOptions]) -> AsyncResponse:
        return await self.request("OPTIONS", target, **kw)

    async def post(self, target: str, **kw: Unpack[RequestOptions]) -> AsyncResponse:
        return await self.request("POST", target, **kw)

    async def put(self, target: str, **kw: Unpack[RequestOptions]) -> AsyncResponse:
        return await self.request("PUT", target, **kw)

    async def patch(self, target: str, **kw: Unpack[RequestOptions]) -> AsyncResponse:
        return await self.request("PATCH", target, **kw)

    async def delete(self, target: str, **kw: Unpack[RequestOptions]) -> AsyncResponse:
        return await self.request("DELETE", target, **kw)

    # ---------------------------------------------------------------- sending

    async def _send(
        self,
        method: str,
        target: str,
        headers: HeaderTypes,
        body: RequestBody,
        timeout: float | UseClientDefault | None,
    ) -> AsyncResponse:
        if not self._open:
            raise RuntimeError("the client is not open: use it as a context manager")
        config = self.config
        counts = self._counts
        counts.requests += 1
        if timeout is USE_CLIENT_DEFAULT:
            timeout = config.timeout
        deadline = None if timeout is None else _monotonic() + timeout
        method = method.upper()
        if isinstance(body, bytearray | memoryview):
            body = bytes(body)
        if isinstance(body, str):
            raise TypeError("the request body must be bytes, an iterable of bytes or a file")
        replayable = isinstance(body, bytes)
        traceparent = new_traceparent() if config.trace else None
        spans = self._spans
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
                conn = await self._pool.acquire(deadline, avoid)
                if pause and conn.stats is avoid:
                    left = remaining(deadline)
                    if left is not None and left <= pause:
                        await self._pool.release(conn)
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
                    if traceparent is not None and (
                        block is None or TRACEPARENT_VAR not in block.names
                    ):
                        vars.setdefault(TRACEPARENT_VAR, traceparent)
                    head, state, sid = await conn.request(vars, block, body, deadline)
                except Retry as exc:
                    await self._pool.release(conn)
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
                    await self._pool.release(conn)
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
                    raise
                except BaseException:
                    await self._pool.release(conn)
                    raise
                now = _monotonic()
                conn.stats.answered(now - sent, now)
                if span is not None:
                    span.answered(head.status)
                return self._mux_response(conn, head, state, sid, deadline)
        except BaseException as exc:
            if isinstance(exc, ClientError):
                counts.failed(exc)
            if span is not None:  # the attempt that failed: a retry's span is ended already
                span.failed(exc)
            raise

    def _mux_response(
        self,
        conn: AsyncMuxConnection,
        head: ResponseReceived,
        state: StreamState,
        sid: int,
        deadline: float | None,
    ) -> AsyncResponse:
        pool = self._pool

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
        spans = self._spans
        while True:
            endpoint = self.endpoints[self._next_classic % len(self.endpoints)]
            self._next_classic += 1
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


class AsyncStreaming:
    """What :meth:`AsyncClient.stream` returns: entering sends the request and gives its
    response; leaving closes the response (resetting its stream unless it was read to the
    end)."""

    __slots__ = ("_response", "_send")

    def __init__(self, send: Callable[[], Awaitable[AsyncResponse]]) -> None:
        self._send = send
        self._response: AsyncResponse | None = None

    async def __aenter__(self) -> AsyncResponse:
        self._response = await self._send()
        return self._response

    async def __aexit__(self, *exc: object) -> None:
        if self._response is not None:
            await self._response.aclose()


def _reset_after_fork() -> None:
    for client in list(_clients):
        client._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
