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
from typing import Unpack

from .._config import USE_CLIENT_DEFAULT, ClientConfig, UseClientDefault
from .._discovery import AsyncResolver
from .._metrics import ClientMetrics, RequestCounts
from .._models import (
    Endpoint,
    HeaderTypes,
    RequestBody,
    RequestOptions,
    parse_url,
)
from .._primitives import AsyncBackground
from .._tls import CertTypes, VerifyTypes
from .._tracing import client_spans
from .pool import AsyncPool
from .response import AsyncResponse
from .sending import AsyncSender

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
        self._resolver = resolver
        self._counts = RequestCounts()
        self._background = AsyncBackground()
        self._pool = AsyncPool(self.endpoints, self._background, self.config, resolver)
        self._sender = AsyncSender(
            self.endpoints,
            self.protocol,
            self.config,
            self._pool,
            self._counts,
            client_spans(self.config.opentelemetry, self.endpoints),
        )
        _clients.add(self)

    async def open(self) -> AsyncClient:
        """Start the client (``async with`` does it), for one kept for the life of the process:
        ``client = await AsyncClient(url).open()``, later ``await client.aclose()``. Under
        anyio, the task that opens it must close it (it owns the connections' reader tasks)."""
        if not self._sender.open:
            await self._background.start()
            self._sender.open = True
        return self

    async def __aenter__(self) -> AsyncClient:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._sender.open = False
        await self._pool.aclose()
        await self._background.stop()

    def _after_fork(self) -> None:
        # The child must never use the parent's sockets (nor close them for it).
        self._pool.drop()
        self._background = AsyncBackground()
        self._pool = AsyncPool(self.endpoints, self._background, self.config, self._resolver)
        self._sender.pool = self._pool  # the pool requests go through, not only metrics()'s

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
        return await self._sender.request(method, target, headers, body, timeout)

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
        return AsyncStreaming(partial(self._sender.send, method, target, headers, body, timeout))

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
