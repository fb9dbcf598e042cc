"""The one WSGI application every benchmarked server runs (PEP 3333, stdlib only).

    /hello   13 bytes, no work: the per-request overhead of the server itself
    /sleep   10 ms of I/O wait (time.sleep) then a short body: a thread-bound backend call
    /echo    the request body sent back (the 1 MiB echo scenario)
    /slow    1 s wait: the long request of the head-of-line scenario
    /stream  1 MiB streamed in 64 KiB chunks, with a Content-Length

Plain module-level code, no framework: uWSGI loads it with ``--wsgi-file``, the others import
``benchmarks.app:app``. ``benchmarks/grpc_server.py`` does the same work as gRPC methods.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

HELLO = b"Hello, World!"
SLEEP_SECONDS = 0.010
SLOW_SECONDS = 1.0
CHUNK = b"x" * (64 << 10)
STREAM_CHUNKS = 16  # 16 x 64 KiB = 1 MiB
READ_SIZE = 256 << 10

StartResponse = Callable[..., Any]


def _ok(start_response: StartResponse, length: int, kind: str = "text/plain") -> None:
    start_response("200 OK", [("Content-Type", kind), ("Content-Length", str(length))])


def _read_body(environ: dict[str, Any]) -> bytes:
    """The whole request body, read in bounded pieces (wsgi.input may be a socket)."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    stream = environ["wsgi.input"]
    parts: list[bytes] = []
    while length > 0:
        piece = stream.read(min(length, READ_SIZE))
        if not piece:
            break
        parts.append(piece)
        length -= len(piece)
    return b"".join(parts)


def _stream() -> Iterator[bytes]:
    for _ in range(STREAM_CHUNKS):
        yield CHUNK


#: How long /fleet waits: set per backend by benchmarks/fleet.py (one is slower than the rest).
FLEET_SECONDS = float(os.environ.get("BENCH_FLEET_SECONDS", "0.010"))


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """Route on PATH_INFO; anything unknown is a 404."""
    path = environ.get("PATH_INFO", "")
    if path == "/hello":
        _ok(start_response, len(HELLO))
        return [HELLO]
    if path == "/sleep":
        time.sleep(SLEEP_SECONDS)
        _ok(start_response, len(HELLO))
        return [HELLO]
    if path == "/echo":
        body = _read_body(environ)
        _ok(start_response, len(body), "application/octet-stream")
        return [body]
    if path == "/slow":
        time.sleep(SLOW_SECONDS)
        _ok(start_response, len(HELLO))
        return [HELLO]
    if path == "/stream":
        _ok(start_response, len(CHUNK) * STREAM_CHUNKS, "application/octet-stream")
        return _stream()
    if path == "/fleet":  # the fleet scenario: each backend waits as long as it was told
        time.sleep(FLEET_SECONDS)
        _ok(start_response, len(HELLO))
        return [HELLO]
    start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "0")])
    return [b""]


application = app  # uWSGI's default callable name
