"""WSGI applications the server tests run under a real `muxwsgi serve`."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from wsgiref.validate import validator

StartResponse = Callable[..., Any]
Environ = dict[str, Any]


def _text(start_response: StartResponse, body: bytes, status: str = "200 OK") -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def _stream(n: int, size: int, delay: float) -> Iterator[bytes]:
    for i in range(n):
        if delay:
            time.sleep(delay)
        yield (f"{i:06d}".encode() * (size // 6 + 1))[:size]


class Closing:
    """An iterable whose close() is recorded (PEP 3333 requires the server to call it)."""

    closed: list[str] = []

    def __init__(self, tag: str, chunks: list[bytes], fail_at: int = -1) -> None:
        self.tag = tag
        self.chunks = chunks
        self.fail_at = fail_at

    def __iter__(self) -> Iterator[bytes]:
        for i, chunk in enumerate(self.chunks):
            if i == self.fail_at:
                raise RuntimeError("the application failed mid-stream")
            yield chunk

    def close(self) -> None:
        Closing.closed.append(self.tag)


def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """Routes used across the server and interop tests."""
    path = environ["PATH_INFO"]
    query = dict(p.split("=", 1) for p in environ.get("QUERY_STRING", "").split("&") if "=" in p)
    if path == "/hello":
        return _text(start_response, b"Hello, World!")
    if path == "/echo":
        # read(size) only: PEP 3333 (and wsgiref's validator) do not allow read() bare.
        body = b"".join(iter(lambda: environ["wsgi.input"].read(65536), b""))
        start_response(
            "200 OK",
            [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(body))),
             ("X-Sha256", hashlib.sha256(body).hexdigest())],
        )  # fmt: skip
        return [body]
    if path == "/echo-lines":  # readline() and iteration over wsgi.input
        lines = list(environ["wsgi.input"])
        return _text(start_response, b"".join(b"<" + line.rstrip(b"\n") + b">" for line in lines))
    if path == "/sha256":  # reads the body in 8 KiB pieces
        digest = hashlib.sha256()
        total = 0
        while chunk := environ["wsgi.input"].read(8192):
            digest.update(chunk)
            total += len(chunk)
        return _text(start_response, f"{total} {digest.hexdigest()}".encode())
    if path == "/environ":
        keys = {k: v for k, v in environ.items() if isinstance(v, str | int | bool | float)}
        keys["wsgi.version"] = list(environ["wsgi.version"])
        if "muxwsgi.cancelled" in environ:  # absent under other servers (the real uWSGI)
            keys["muxwsgi.cancelled.is_set"] = environ["muxwsgi.cancelled"].is_set()
        if "muxwsgi.tls" in environ:  # over TLS: the connection's own SSL_* vars
            keys["muxwsgi.tls"] = dict(environ["muxwsgi.tls"])
        return _text(start_response, json.dumps(keys).encode())
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return _stream(int(query.get("n", 5)), int(query.get("size", 10)),
                       float(query.get("delay", 0)))  # fmt: skip
    if path == "/sleep":
        time.sleep(float(query.get("s", "0.2")))
        return _text(start_response, b"slept")
    if path == "/wait-cancel":  # waits until the client resets the stream (or 10 s)
        with _waiting_lock:
            WAITING[0] += 1
        try:
            cancelled = environ["muxwsgi.cancelled"].wait(10)
        finally:
            with _waiting_lock:
                WAITING[0] -= 1
        CANCELS.append(cancelled)
        return _text(start_response, b"cancelled" if cancelled else b"not cancelled")
    if path == "/waiting":  # how many /wait-cancel calls are waiting now
        return _text(start_response, str(WAITING[0]).encode())
    if path == "/cancels":
        return _text(start_response, json.dumps(CANCELS).encode())
    if path == "/raise":
        raise ValueError("the application raised on purpose")
    if path == "/raise-midstream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Closing("midstream", [b"first ", b"second"], fail_at=1)
    if path == "/closing":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Closing(query.get("tag", "x"), [b"a", b"b", b"c"])
    if path == "/closed":
        return _text(start_response, json.dumps(Closing.closed).encode())
    if path == "/bad-header":
        start_response("200 OK", [("X-Evil", "a\r\nSet-Cookie: pwned=1")])
        return [b"should never be sent"]
    if path == "/bad-status":
        start_response("200 OK\r\nX-Evil: 1", [])
        return [b"should never be sent"]
    if path == "/long-content-length":  # declares more than it sends
        start_response("200 OK", [("Content-Length", "100")])
        return [b"only this"]
    if path == "/short-content-length":  # sends more than it declares
        start_response("200 OK", [("Content-Length", "5")])
        return [b"12345", b"overflow that must never reach the wire"]
    if path == "/write":  # the legacy write() callable
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written ")
        write(b"directly")
        return []
    if path == "/file":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](open(__file__, "rb"), 1024)
    if path == "/exc-info":  # start_response again with exc_info before anything was sent
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise KeyError("boom")
        except KeyError:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")],
                           sys.exc_info())  # fmt: skip
        return [b"replaced"]
    if path == "/twice":  # start_response twice without exc_info: an application bug
        start_response("200 OK", [])
        start_response("200 OK", [])
        return [b"never"]
    if path == "/status":
        code = query.get("code", "404")
        return _text(start_response, f"status {code}".encode(), f"{code} Custom")
    if path == "/big":  # one list item of `size` bytes, a pattern that shows a lost piece
        size = int(query.get("size", "1048576"))
        return _text(start_response, (b"0123456789abcdef" * (size // 16 + 1))[:size])
    if path == "/deadline":
        return _text(start_response, repr(environ["muxwsgi.deadline"]).encode())
    if path == "/pid":
        return _text(start_response, str(os.getpid()).encode())
    if path == "/threads":
        return _text(start_response, threading.current_thread().name.encode())
    return _text(start_response, b"Not Found", "404 Not Found")


CANCELS: list[bool] = []
WAITING = [0]
_waiting_lock = threading.Lock()

#: The same application behind wsgiref's validator: every test through it checks PEP 3333
#: compliance of both sides (the validator raises on any violation, which becomes a 500).
validated_app = validator(app)
