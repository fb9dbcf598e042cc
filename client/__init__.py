"""muxwsgi.client: call muxwsgi (and classic uwsgi) servers from Python.

    from muxwsgi.client import Client

    with Client("mux://127.0.0.1:3031") as client:
        response = client.get("/hello", timeout=2.0)
        print(response.status, response.text)

``AsyncClient`` is the same API for anyio (asyncio or trio): ``async with``, ``await``. Both
multiplex many concurrent requests over a few pooled connections, propagate deadlines
(``timeout=`` becomes MUXWSGI_TIMEOUT_MS and a RESET on expiry), and retry transparently what
the server never processed. ``uwsgi://`` URLs speak classic uwsgi, one connection per request.
``MuxTransport`` / ``AsyncMuxTransport`` plug into httpx.
"""

from typing import TYPE_CHECKING

from ._async.client import AsyncClient
from ._async.response import AsyncResponse
from ._discovery import Address, AsyncResolver, Resolver
from ._exceptions import (
    ClientError,
    ConnectError,
    ConnectTimeout,
    NotMuxWSGIError,
    PoolTimeout,
    ProtocolViolation,
    ReadError,
    RequestTimeout,
    StreamResetError,
    TimeoutException,
    TransportError,
    WriteError,
)
from ._metrics import ClientMetrics, EndpointMetrics, Histogram
from ._models import Endpoint, Headers, parse_url
from ._sync.client import Client
from ._sync.response import Response

if TYPE_CHECKING:
    from ._httpx import AsyncMuxTransport, MuxTransport

__all__ = (
    "Address",
    "AsyncClient",
    "AsyncMuxTransport",
    "AsyncResolver",
    "AsyncResponse",
    "Client",
    "ClientError",
    "ClientMetrics",
    "ConnectError",
    "ConnectTimeout",
    "Endpoint",
    "EndpointMetrics",
    "Headers",
    "Histogram",
    "MuxTransport",
    "NotMuxWSGIError",
    "PoolTimeout",
    "ProtocolViolation",
    "ReadError",
    "RequestTimeout",
    "Resolver",
    "Response",
    "StreamResetError",
    "TimeoutException",
    "TransportError",
    "WriteError",
    "parse_url",
)


def __getattr__(name: str) -> object:
    # httpx is optional: import the transports (and httpx) only when they are asked for.
    if name in ("MuxTransport", "AsyncMuxTransport"):
        from . import _httpx

        return getattr(_httpx, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
