"""httpx transports over muxwsgi: existing httpx code keeps its API and gains multiplexing.

    client = httpx.Client(transport=MuxTransport("mux://127.0.0.1:3031"), base_url="http://backend")

The transport owns a muxwsgi Client; the request's path and query become the request target,
its headers the HTTP_* vars. httpx is an optional extra (``muxwsgi[httpx]``): this module is
imported only when MuxTransport or AsyncMuxTransport is first used.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx

from ._async.client import AsyncClient
from ._sync.client import Client

__all__ = ("AsyncMuxTransport", "MuxTransport")

_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "upgrade"})


def _target(request: httpx.Request) -> str:
    return request.url.raw_path.decode("ascii")


def _headers(request: httpx.Request) -> list[tuple[str, str]]:
    return [
        (name.decode("latin-1"), value.decode("latin-1"))
        for name, value in request.headers.raw
        if name.lower().decode("latin-1") not in _HOP_BY_HOP | {"content-length"}
    ]


def _timeout(request: httpx.Request) -> float | None:
    timeouts = request.extensions.get("timeout", {})
    values = [v for v in (timeouts.get("read"), timeouts.get("connect")) if v is not None]
    return max(values) if values else None


class MuxTransport(httpx.BaseTransport):
    """An ``httpx.BaseTransport`` sending every request to a muxwsgi (or uwsgi) endpoint."""

    def __init__(self, url: str | list[str], **client_options: Any) -> None:
        self._client = Client(url, **client_options)
        self._client.open()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        manager = self._client.stream(request.method, _target(request), headers=_headers(request),
                                      body=body, timeout=_timeout(request))  # fmt: skip
        response = manager.__enter__()

        class _Body(httpx.SyncByteStream):
            def __iter__(self) -> Iterator[bytes]:
                yield from response.iter_bytes()

            def close(self) -> None:
                manager.__exit__(None, None, None)

        return httpx.Response(response.status, headers=response.headers.items(), stream=_Body(),
                              extensions={"reason_phrase": response.reason.encode()})  # fmt: skip

    def close(self) -> None:
        self._client.close()


class AsyncMuxTransport(httpx.AsyncBaseTransport):
    """An ``httpx.AsyncBaseTransport``; use it inside ``async with httpx.AsyncClient(...)``."""

    def __init__(self, url: str | list[str], **client_options: Any) -> None:
        self._client = AsyncClient(url, **client_options)
        self._entered = False

    async def __aenter__(self) -> AsyncMuxTransport:
        # httpx.AsyncClient.__aenter__ calls this: the client's task group is entered by the
        # task that will also exit it (opening it in the first request's task fails to close
        # when that request ran in a child task).
        await self._open()
        return self

    async def _open(self) -> None:
        if not self._entered:
            await self._client.__aenter__()
            self._entered = True

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not self._entered:  # used without ``async with``: open in this task
            await self._open()
        body = await request.aread()
        manager = self._client.stream(request.method, _target(request), headers=_headers(request),
                                      body=body, timeout=_timeout(request))  # fmt: skip
        response = await manager.__aenter__()

        class _Body(httpx.AsyncByteStream):
            async def __aiter__(self) -> AsyncIterator[bytes]:
                async for chunk in response.aiter_bytes():
                    yield chunk

            async def aclose(self) -> None:
                await manager.__aexit__(None, None, None)

        return httpx.Response(response.status, headers=response.headers.items(), stream=_Body(),
                              extensions={"reason_phrase": response.reason.encode()})  # fmt: skip

    async def aclose(self) -> None:
        if self._entered:
            self._entered = False
            await self._client.aclose()
