"""The application behind the hostile-input suite: the server tests' routes, plus a record of
which requests reached the application (so a case can prove that a rejected request never did)
and routes that hold a response or a body read open."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator

from ..server.apps import Environ, StartResponse, _text
from ..server.apps import app as base_app

#: Paths under /mark/ that reached the application (one worker: one list).
MARKS: list[str] = []
#: What /input-error saw: the exception raised by wsgi.input.read(), or "" if none.
INPUT_ERRORS: list[str] = []
#: Tags of /held responses whose close() was called.
CLOSED: list[str] = []
#: /input-error calls and /held responses (by tag) that reached the application.
STARTED: list[str] = []
_lock = threading.Lock()


class Held:
    """A response of ``n`` chunks of ``size`` bytes; close() is recorded under ``tag``."""

    def __init__(self, tag: str, n: int, size: int) -> None:
        self.tag, self.n, self.size = tag, n, size

    def __iter__(self) -> Iterator[bytes]:
        for _ in range(self.n):
            yield b"x" * self.size

    def close(self) -> None:
        with _lock:
            CLOSED.append(self.tag)


def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    query = dict(p.split("=", 1) for p in environ.get("QUERY_STRING", "").split("&") if "=" in p)
    if path.startswith("/mark/"):
        with _lock:
            MARKS.append(path[6:])
        return _text(start_response, b"marked")
    if path == "/marks":
        return _text(start_response, json.dumps(MARKS).encode())
    if path == "/input-error":  # reads the whole declared body; records how that ended
        with _lock:
            STARTED.append("input-error")
        try:
            while environ["wsgi.input"].read(65536):
                pass
            outcome = ""
        except Exception as exc:  # the point: what did it raise
            outcome = f"{type(exc).__name__}: {exc}"
        with _lock:
            INPUT_ERRORS.append(outcome or "completed")
        return _text(start_response, b"read")
    if path == "/input-errors":
        return _text(start_response, json.dumps(INPUT_ERRORS).encode())
    if path == "/held":  # a big response for a client that never reads it
        tag = query.get("tag", "held")
        with _lock:
            STARTED.append(f"held:{tag}")
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return Held(tag, int(query.get("n", 1000)), int(query.get("size", 65536)))
    if path == "/held-closed":
        return _text(start_response, json.dumps(CLOSED).encode())
    if path == "/started":
        return _text(start_response, json.dumps(STARTED).encode())
    return base_app(environ, start_response)
