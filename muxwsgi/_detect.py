"""Tell the protocols apart by a connection's first bytes (PROTOCOL.md §2).

One listening socket speaks three protocols. The first byte decides: 0 is classic uwsgi
(modifier1 0 = a WSGI request), an uppercase ASCII letter starts an HTTP/1.1 method, and
FrameType.PREFACE starts a muxwsgi connection. Anything else is refused.
"""

from __future__ import annotations

import enum

from ._frames import MAGIC, FrameType

__all__ = ("Protocol", "describe_peer_bytes", "detect_protocol")


class Protocol(enum.Enum):
    """The protocols one listening socket tells apart by the first byte."""

    MUX = "mux"
    UWSGI = "uwsgi"
    HTTP = "http"
    UNKNOWN = "unknown"


def detect_protocol(first: bytes) -> Protocol | None:
    """Return the protocol the peer speaks, from at least one byte; None if ``first`` is empty.

    This looks at the first byte only: the protocol handlers validate the rest (the mux
    preface's magic, the uwsgi header, the HTTP request line).
    """
    if not first:
        return None
    b = first[0]
    if b == FrameType.PREFACE:
        return Protocol.MUX
    if b == 0:
        return Protocol.UWSGI
    if 65 <= b <= 90:
        return Protocol.HTTP
    return Protocol.UNKNOWN


def describe_peer_bytes(data: bytes) -> str:
    """Say in words what ``data`` (the first bytes from a peer) looks like, for error messages."""
    if not data:
        return "nothing (the peer closed the connection)"
    if data.startswith(b"HTTP/"):
        return "an HTTP response (the peer is an HTTP server, not muxwsgi)"
    if data.startswith(b"PRI * HTTP/2.0"):
        return "the HTTP/2 connection preface (h2c is not muxwsgi)"
    if data[0] == FrameType.PREFACE and not data[8 : 8 + len(MAGIC)].startswith(
        MAGIC[: max(0, len(data) - 8)]
    ):
        return "a PREFACE frame with the wrong magic (another muxwsgi version?)"
    if data[0] == 0x16:
        return "a TLS handshake (the peer expects TLS)"
    if data[0] == 0:
        return "a classic uwsgi packet (the peer speaks classic uwsgi, not muxwsgi)"
    if 65 <= data[0] <= 90:
        return f"an HTTP request line ({data[:16]!r}...)"
    return f"unrecognised bytes {data[:16]!r}"
