"""Classic uwsgi requests: one connection per request, the response read until the close.

This is how nginx talks to uWSGI; the client speaks it to reach the real uWSGI, gunicorn's
``--protocol uwsgi``, or our server's classic path. The response is raw HTTP (parsed by
client/_classic_parser.py).
"""

from __future__ import annotations

import httptools

from muxwsgi import classic

from .._classic_parser import ResponseParser
from .._config import ClientConfig
from .._exceptions import ProtocolViolation, ReadError, RequestTimeout
from .._models import Endpoint, remaining
from .._primitives import AsyncStream
from .connection import open_stream

__all__ = ("AsyncClassicExchange",)


class AsyncClassicExchange:
    """One classic request on its own connection."""

    def __init__(self, endpoint: Endpoint, stream: AsyncStream) -> None:
        self.endpoint = endpoint
        self._stream = stream
        self._callbacks = ResponseParser()
        self._parser = httptools.HttpResponseParser(self._callbacks)
        self.status = 0
        self.reason = ""
        self.headers: list[tuple[str, str]] = []
        self.local = stream.local_address()
        self._deadline: float | None = None  # the request's (see send)
        self._ended = False  # the server closed the connection

    @classmethod
    async def connect(
        cls, endpoint: Endpoint, timeout: float | None, config: ClientConfig
    ) -> AsyncClassicExchange:
        return cls(endpoint, await open_stream(endpoint, timeout, config))

    async def send(self, vars: dict[str, str], body: bytes, deadline: float | None) -> None:
        """Write the packet and body, then read until the response head is complete. The body
        is then read by iterating the exchange (``async for``), within the same deadline."""
        self._deadline = deadline
        try:
            await self._stream.write(classic.encode_request(vars) + body, remaining(deadline))
            while not self._callbacks.head_done:
                if not await self._feed(deadline):
                    raise ReadError(f"{self.endpoint}: closed before a complete response head")
        except TimeoutError:
            await self.aclose()
            raise RequestTimeout(f"{self.endpoint}: deadline passed") from None
        except OSError as exc:
            await self.aclose()
            raise ReadError(f"{self.endpoint}: {exc.strerror or exc}") from None
        self.status = self._parser.get_status_code()
        self.reason = self._callbacks.reason.decode("latin-1")
        self.headers = self._callbacks.headers

    async def _feed(self, deadline: float | None) -> bool:
        """Read once and parse; False at the end of the connection."""
        data = await self._stream.read(1 << 16, remaining(deadline))
        if not data:
            return False
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            raise ProtocolViolation(f"{self.endpoint}: malformed HTTP response: {exc}") from None
        return True

    def __aiter__(self) -> AsyncClassicExchange:
        return self

    async def __anext__(self) -> bytes:
        """The next piece of the body, until the message is complete or the server closes
        (uwsgi's end mark): StopAsyncIteration then. Raises RequestTimeout when the deadline
        given to :meth:`send` passes, ReadError when the connection fails or the body ends
        before its Content-Length. (Closing is the response's: see AsyncResponse.)"""
        callbacks = self._callbacks
        while not callbacks.chunks:
            if callbacks.complete or self._ended:
                raise StopAsyncIteration
            try:
                more = await self._feed(self._deadline)
            except TimeoutError:
                raise RequestTimeout(f"{self.endpoint}: deadline passed reading the body") from None
            except OSError as exc:
                raise ReadError(f"{self.endpoint}: {exc.strerror or exc}") from None
            if not more:
                self._ended = True
                declared = callbacks.declared_length()
                if declared is not None and not callbacks.complete:
                    raise ReadError(f"{self.endpoint}: the body ended before Content-Length")
        return callbacks.chunks.pop(0)

    async def aclose(self) -> None:
        await self._stream.close()
