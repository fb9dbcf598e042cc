"""The demo WSGI application served by ``muxwsgi serve muxwsgi.demo:app``.

    /                 a greeting (text/plain)
    /echo             the request body back (POST/PUT)
    /stream?n=5       n chunks streamed one by one
    /sleep?ms=100     answers after a delay
    /environ          the request's environ as JSON (what the server passed to the app)
    /status/418       any status code

Pure WSGI, no imports beyond the standard library: it never touches the protocol core.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qs

__all__ = ("app",)

_StartResponse = Callable[..., Any]

_GREETING = b"Hello from muxwsgi: one socket, many requests.\n"


def _query(environ: dict[str, Any]) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}


def _int(value: str | None, default: int, lo: int, hi: int) -> int:
    try:
        return max(lo, min(hi, int(value))) if value is not None else default
    except ValueError:
        return default


def _stream(n: int) -> Iterator[bytes]:
    for i in range(n):
        yield f"chunk {i + 1} of {n}\n".encode()


def app(environ: dict[str, Any], start_response: _StartResponse) -> Iterable[bytes]:
    """The demo application (PEP 3333): answers the paths listed in the module docstring, and
    404 for any other."""
    path = environ.get("PATH_INFO", "/")
    query = _query(environ)
    if path == "/":
        body = _GREETING
    elif path == "/echo":
        body = environ["wsgi.input"].read()
        ctype = environ.get("CONTENT_TYPE", "application/octet-stream")
        start_response("200 OK", [("Content-Type", ctype), ("Content-Length", str(len(body)))])
        return [body]
    elif path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _stream(_int(query.get("n"), 5, 0, 10_000))
    elif path == "/sleep":
        ms = _int(query.get("ms"), 100, 0, 60_000)
        time.sleep(ms / 1000)
        body = f"slept {ms} ms\n".encode()
    elif path == "/environ":
        visible = {k: v for k, v in environ.items() if isinstance(v, str | int | bool | float)}
        body = json.dumps(visible, indent=2, sort_keys=True).encode() + b"\n"
        start_response(
            "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        )
        return [body]
    elif path.startswith("/status/"):
        code = _int(path.rsplit("/", 1)[1], 200, 100, 599)
        body = f"status {code}\n".encode()
        start_response(f"{code} Status", [("Content-Type", "text/plain")])
        return [body]
    else:
        body = b"Not Found\n"
        start_response(
            "404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
        )
        return [body]
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
