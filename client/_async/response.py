"""The response object of both client flavours."""

from __future__ import annotations

import json as _json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from .._models import Headers

__all__ = ("AsyncResponse",)


class AsyncResponse:
    """A response: status, reason, headers, and a body read at once or streamed.

    ``aiter_bytes()`` streams the body (once); ``aread()`` reads it all and keeps it in
    ``content``. Closing a response that was not read to the end resets its stream, so the
    server stops producing it.
    """

    def __init__(
        self,
        status: int,
        reason: str,
        headers: list[tuple[str, str]],
        body: AsyncIterator[bytes] | None,
        on_close: Callable[[bool], Awaitable[None]] | None,
        *,
        url: str,
        complete: Callable[[], bytes | None] | None = None,
        http_version: str = "HTTP/1.1",
    ) -> None:
        self.status = status
        self.reason = reason
        self.headers = Headers(headers)
        self.url = url
        self.http_version = http_version
        self._body = body
        self._on_close = on_close
        #: Returns the whole body when it has all arrived already (None: not yet).
        self._complete = complete
        self._content: bytes | None = None
        self._consumed = False
        self._closed = False

    @staticmethod
    def with_content(
        status: int,
        reason: str,
        headers: list[tuple[str, str]],
        content: bytes,
        *,
        url: str,
        http_version: str = "HTTP/1.1",
    ) -> AsyncResponse:
        """A response whose whole body is ``content``, read and closed already: nothing is
        left to stream, reset or release."""
        # A static method naming the class: compiled, a classmethod's cls() is a generic call.
        response = AsyncResponse(
            status, reason, headers, None, None, url=url, http_version=http_version
        )
        response._content, response._consumed, response._closed = content, True, True
        return response

    @property
    def status_code(self) -> int:
        return self.status

    @property
    def content(self) -> bytes:
        if self._content is None:
            raise RuntimeError("the body was not read: call read() first, or use request()")
        return self._content

    @property
    def text(self) -> str:
        ctype = self.headers.get("content-type", "") or ""
        charset = "utf-8"
        for part in ctype.split(";")[1:]:
            key, _, value = part.strip().partition("=")
            if key.lower() == "charset" and value:
                charset = value.strip('"')
        return self.content.decode(charset, errors="replace")

    def json(self) -> Any:
        return _json.loads(self.content)

    @property
    def is_closed(self) -> bool:
        """Whether the response is closed: its body read to the end, or given up on."""
        return self._closed

    @property
    def is_success(self) -> bool:
        return 200 <= self.status < 300

    async def aread(self) -> bytes:
        if self._content is None:
            body = None
            if self._complete is not None and not self._consumed:
                body = self._complete()
            if body is not None:
                self._content, self._consumed = body, True
                await self._close(complete=True)
            else:
                self._content = b"".join([chunk async for chunk in self.aiter_bytes()])
        return self._content

    def aiter_bytes(self) -> AsyncIterator[bytes]:
        """The body in the pieces it arrives in, once (RuntimeError the second time), or the
        content ``aread()`` kept. The response closes when the body ends or fails."""
        if self._content is not None:
            return AsyncBodyIterator(self, self._content, None)
        if self._consumed:
            raise RuntimeError("the body was already streamed")
        self._consumed = True
        return AsyncBodyIterator(self, None, self._body)

    async def aclose(self) -> None:
        await self._close(complete=self._content is not None)

    async def _close(self, complete: bool) -> None:
        if not self._closed:
            self._closed = True
            if self._on_close is not None:
                await self._on_close(complete)

    async def __aenter__(self) -> AsyncResponse:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<Response [{self.status} {self.reason}] {self.url}>"


class AsyncBodyIterator:
    """What :meth:`AsyncResponse.aiter_bytes` returns: ``first`` (if any), then the pieces of
    ``body``; the response is closed when ``body`` ends (complete) or fails (not complete: its
    stream is reset). A class, not an async generator: the compiled build has none."""

    __slots__ = ("_body", "_first", "_response")

    def __init__(
        self, response: AsyncResponse, first: bytes | None, body: AsyncIterator[bytes] | None
    ) -> None:
        self._response = response
        self._first = first
        self._body = body

    def __aiter__(self) -> AsyncBodyIterator:
        return self

    async def __anext__(self) -> bytes:
        first = self._first
        if first is not None:
            self._first = None
            return first
        body = self._body
        if body is None:
            raise StopAsyncIteration
        try:
            return await body.__anext__()
        except StopAsyncIteration as exc:
            self._body = None
            await self._response._close(complete=True)
            raise exc  # never a bare raise after an await (tests/test_compiled.py says why)
        except BaseException as exc:
            self._body = None
            await self._response._close(complete=False)
            raise exc
