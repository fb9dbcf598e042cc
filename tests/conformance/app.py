"""The WSGI application the conformance suite runs under a real `muxwsgi serve`.

Every request that carries an ``X-Case`` header (the var HTTP_X_CASE) is recorded, so that a
case can ask ``/seen?case=...`` whether a request reached the application at all.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

StartResponse = Callable[..., Any]

_seen: set[str] = set()
_lock = threading.Lock()


def _reply(start_response: StartResponse, body: bytes, status: str = "200 OK") -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def _chunks(n: int, size: int, delay: float) -> Iterator[bytes]:
    for i in range(n):
        if i and delay:
            time.sleep(delay)
        yield bytes([0x61 + i % 26]) * size


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    case = environ.get("HTTP_X_CASE")
    if case:
        with _lock:
            _seen.add(case)
    path = environ.get("PATH_INFO", "")
    query = dict(p.split("=", 1) for p in environ.get("QUERY_STRING", "").split("&") if "=" in p)
    if path == "/hello":
        return _reply(start_response, b"Hello, conformance!")
    if path == "/seen":
        with _lock:
            return _reply(start_response, b"yes" if query.get("case") in _seen else b"no")
    if path == "/echo":
        body = b"".join(iter(lambda: environ["wsgi.input"].read(65536), b""))
        return _reply(start_response, body)
    if path == "/environ":
        found = {k: v for k, v in environ.items() if isinstance(v, str)}
        return _reply(start_response, json.dumps(found).encode())
    if path == "/deadline":  # how the server exposes MUXWSGI_TIMEOUT_MS ([T-2])
        return _reply(start_response, repr(environ.get("muxwsgi.deadline")).encode())
    if path == "/fields":  # n response header fields
        fields = [
            (f"X-Field-{i}", "v" * int(query.get("size", "1"))) for i in range(int(query["n"]))
        ]
        start_response("200 OK", [("Content-Length", "2"), *fields])
        return [b"ok"]
    if path == "/big":  # n bytes, in one piece
        return _reply(start_response, b"x" * int(query.get("n", "100000")))
    if path == "/stream":  # n chunks of size bytes, delay seconds apart
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        n, size = int(query.get("n", "3")), int(query.get("size", "10"))
        return _chunks(n, size, float(query.get("delay", "0")))
    if path == "/sleep":  # does not read the body, and does not notice a reset
        time.sleep(float(query.get("s", "1")))
        return _reply(start_response, b"slept")
    return _reply(start_response, b"Not Found", "404 Not Found")
