"""The response to a classic uwsgi request is raw HTTP/1.x, parsed by httptools (llhttp)
rather than by hand. Shared by both flavours; the I/O is theirs (``classic.py``)."""

from __future__ import annotations

__all__ = ("ResponseParser",)


class ResponseParser:
    """httptools' callbacks (``httptools.HttpResponseParser(ResponseParser())``): collects the
    head, then the body chunks until the exchange takes them."""

    def __init__(self) -> None:
        self.reason = b""
        self.headers: list[tuple[str, str]] = []
        self.head_done = False
        self.complete = False
        self.chunks: list[bytes] = []

    def on_status(self, status: bytes) -> None:
        self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self.head_done = True

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        self.complete = True

    def declared_length(self) -> int | None:
        """The head's Content-Length, if it has a valid one."""
        for name, value in self.headers:
            if name.lower() == "content-length" and value.isdigit():
                return int(value)
        return None
