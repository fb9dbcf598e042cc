"""The stats endpoint: uWSGI stats-server shaped JSON, Prometheus text, and the health checks
(``/healthz``, ``/readyz``) that Kubernetes probes and load balancers poll, served by the master.

The master has no event loop, so this is a tiny blocking HTTP responder driven by the master's
``select``: one short request at a time, with a short timeout, then close. It answers
HTTP/1.0 and HTTP/1.1 requests alike (``Connection: close``, a Content-Length, GET or HEAD).
"""

from __future__ import annotations

import json
import os
import re
import socket
import struct
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from muxwsgi import __version__

from .procfs import rss_mib
from .scoreboard import Scoreboard
from .sockets import Listener, bind

__all__ = ("MasterView", "StatsServer", "WorkerView", "listen_queue", "prometheus", "snapshot")

_TCP_INFO = getattr(socket, "TCP_INFO", None)
#: The longest request head read; a probe's is a few hundred bytes.
_MAX_HEAD = 8192
#: How long one client may take to send its request: the master serves nothing else meanwhile.
_CLIENT_TIMEOUT = 1.0
#: A byte that has no place in an HTTP/1.x request head: the peer speaks something else (a mux
#: or uwsgi client sent here by mistake), and is answered 400 at once instead of waited for.
_NOT_HTTP = re.compile(rb"[^\t\r\n\x20-\x7e]")
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    503: "Service Unavailable",
}


def listen_queue(listener: Listener) -> dict[str, int] | None:
    """Current and maximum accept-queue length of a TCP listening socket (Linux TCP_INFO:
    for a listening socket tcpi_unacked is the queue length and tcpi_sacked its limit)."""
    if listener.address.family != "tcp" or _TCP_INFO is None:
        return None
    try:
        info = listener.sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 104)
    except OSError:
        return None
    queued, limit = struct.unpack_from("<II", info, 24)
    return {"queue": queued, "max": limit}


class WorkerView(Protocol):
    """A worker, as the stats endpoint reads it."""

    @property
    def pid(self) -> int: ...
    @property
    def index(self) -> int:
        """Its scoreboard slot."""

    @property
    def generation(self) -> int: ...
    @property
    def started(self) -> float:
        """``time.monotonic()`` when it was started."""


class MasterView(Protocol):
    """What the stats endpoint reads from the master (the arbiter)."""

    @property
    def listeners(self) -> Sequence[Listener]: ...
    @property
    def scoreboard(self) -> Scoreboard: ...
    @property
    def started(self) -> float:
        """``time.time()`` when the master started."""

    @property
    def target(self) -> int: ...
    @property
    def respawns(self) -> int: ...
    @property
    def workers(self) -> Mapping[int, WorkerView]: ...
    def not_ready(self) -> str:
        """Why the server should not be sent traffic (a few words), or "" when it should."""


def snapshot(master: MasterView) -> dict[str, Any]:
    """Everything the stats endpoint reports, as one dict (the JSON document)."""
    now = time.monotonic()
    workers = []
    for info in sorted(master.workers.values(), key=lambda i: i.index):
        slot = master.scoreboard.read(info.index)
        rss = rss_mib(info.pid)
        workers.append(
            {
                "id": info.index + 1,
                "pid": info.pid,
                "status": slot.status.name.lower(),
                "generation": info.generation,
                "requests": slot.requests,
                "exceptions": slot.exceptions,
                "harakiri_count": slot.harakiri_count,
                "connections": slot.connections,
                "streams": slot.streams,
                "rss": int(rss * 1024 * 1024) if rss is not None else None,
                "avg_rt": int(slot.response_time / slot.requests * 1e6) if slot.requests else 0,
                "running_time": int(slot.response_time * 1e6),
                "last_spawn": int(time.time() - (now - info.started)),
                "respawn_count": master.respawns,
            }
        )
    queues = [q for q in (listen_queue(listener) for listener in master.listeners) if q]
    return {
        "version": __version__,
        "pid": os.getpid(),
        "uid": os.getuid(),
        "gid": os.getgid(),
        "cwd": os.getcwd(),
        "started": int(master.started),
        "listen_queue": sum(q["queue"] for q in queues),
        "listen_queue_max": max((q["max"] for q in queues), default=0),
        "sockets": [str(listener.address) for listener in master.listeners],
        "workers_target": master.target,
        "respawns": master.respawns,
        "workers": workers,
    }


def prometheus(snap: dict[str, Any]) -> str:
    """The same figures in the Prometheus text exposition format."""
    lines = [
        "# HELP muxwsgi_workers Workers alive.",
        "# TYPE muxwsgi_workers gauge",
        f"muxwsgi_workers {len(snap['workers'])}",
        "# HELP muxwsgi_listen_queue Connections waiting in the accept queues.",
        "# TYPE muxwsgi_listen_queue gauge",
        f"muxwsgi_listen_queue {snap['listen_queue']}",
        "# HELP muxwsgi_respawns_total Workers respawned after an unexpected death.",
        "# TYPE muxwsgi_respawns_total counter",
        f"muxwsgi_respawns_total {snap['respawns']}",
    ]
    metrics = [
        ("requests_total", "counter", "requests", "Requests completed by the worker."),
        ("exceptions_total", "counter", "exceptions", "Application exceptions."),
        ("harakiri_total", "counter", "harakiri_count", "Requests killed by harakiri."),
        ("connections", "gauge", "connections", "Open client connections."),
        ("streams", "gauge", "streams", "Requests queued or running."),
        ("rss_bytes", "gauge", "rss", "Resident memory."),
        ("busy_seconds_total", "counter", "running_time", "Time spent in application calls."),
    ]
    for name, kind, key, help_text in metrics:
        lines.append(f"# HELP muxwsgi_worker_{name} {help_text}")
        lines.append(f"# TYPE muxwsgi_worker_{name} {kind}")
        for worker in snap["workers"]:
            value = worker[key]
            if value is None:
                continue
            if key == "running_time":
                value = value / 1e6
            lines.append(
                f'muxwsgi_worker_{name}{{worker="{worker["id"]}",pid="{worker["pid"]}"}} {value}'
            )
    return "\n".join(lines) + "\n"


class StatsServer:
    """Answers, on the ``--stats`` address:

    - ``GET /``: the JSON document (:func:`snapshot`);
    - ``GET /metrics``: Prometheus text (:func:`prometheus`);
    - ``GET /healthz``: 200 ``ok`` whenever the master answers (liveness: its loop turns);
    - ``GET /readyz``: 200 ``ok`` when the server should get traffic, else 503 and the reason
      (``MasterView.not_ready``: stopping, or fewer workers ready than the target).

    HEAD is answered like GET, without the body; other methods get 405, other paths 404.
    """

    def __init__(self, master: MasterView, spec: str) -> None:
        self.master = master
        # A stats socket shows internals: owner-only for a unix socket (0600).
        self.listener = bind(spec, backlog=16, unix_mode=0o600)
        self.listener.sock.setblocking(False)
        self.listener.sock.set_inheritable(False)

    def fileno(self) -> int:
        return self.listener.sock.fileno()

    def handle_one(self) -> None:
        """Accept one connection (if one is waiting), read its request head, answer, close."""
        try:
            client, _ = self.listener.sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        with client:
            try:
                method, target = _request_line(_read_head(client))
                status, ctype, body = self.respond(method, target)
                client.settimeout(_CLIENT_TIMEOUT)
                allow = "Allow: GET, HEAD\r\n" if status == 405 else ""
                client.sendall(
                    f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {ctype}\r\n"
                    f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\n{allow}"
                    "Connection: close\r\n\r\n".encode()
                    + (b"" if method == b"HEAD" else body)
                )
                _discard_unread(client)
            except OSError:
                pass

    def respond(self, method: bytes, target: bytes) -> tuple[int, str, bytes]:
        """The status, content type and body that answer ``method`` on ``target`` (a method
        of b"" stands for a request that could not be parsed)."""
        text = "text/plain; charset=utf-8"
        if not method:
            return 400, text, b"bad request\n"
        if method not in (b"GET", b"HEAD"):
            return 405, text, b"method not allowed\n"
        path = target.partition(b"?")[0]
        if path == b"/healthz":
            return 200, text, b"ok\n"
        if path == b"/readyz":
            reason = self.master.not_ready()
            if reason:
                return 503, text, f"not ready: {reason}\n".encode()
            return 200, text, b"ok\n"
        if path == b"/metrics":
            return 200, "text/plain; version=0.0.4", prometheus(snapshot(self.master)).encode()
        if path == b"/":
            return (
                200,
                "application/json",
                json.dumps(snapshot(self.master), indent=1).encode() + b"\n",
            )
        return 404, text, b"not found\n"

    def close(self) -> None:
        self.listener.close()
        if self.listener.address.family == "unix":
            try:
                os.unlink(self.listener.address.path)
            except OSError:
                pass


def _request_line(head: bytes) -> tuple[bytes, bytes]:
    """``(method, target)`` of an HTTP/1.0 or 1.1 request head; two empty values if its first
    line is not such a request line."""
    parts = head.split(b"\n", 1)[0].rstrip(b"\r").split(b" ")
    if len(parts) != 3 or not parts[1].startswith(b"/") or not parts[2].startswith(b"HTTP/1."):
        return b"", b""
    return parts[0], parts[1]


def _read_head(client: socket.socket) -> bytes:
    """The request head: read until the blank line that ends it (a probe may send it in
    pieces), the peer's EOF, _MAX_HEAD bytes, or a byte that is not HTTP, all within
    _CLIENT_TIMEOUT. Raises OSError (TimeoutError) when the time is up first."""
    deadline = time.monotonic() + _CLIENT_TIMEOUT
    head = b""
    while b"\r\n\r\n" not in head and b"\n\n" not in head and len(head) < _MAX_HEAD:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request head did not arrive in time")
        client.settimeout(left)
        chunk = client.recv(_MAX_HEAD)
        if not chunk or _NOT_HTTP.search(chunk):
            return head + chunk
        head += chunk
    return head


def _discard_unread(client: socket.socket) -> None:
    """Read what the peer sent beyond the request head (a body, the rest of a protocol it
    mistook us for) without waiting: closing with unread bytes resets the connection, and a
    reset can reach the peer before the answer it was sent."""
    client.setblocking(False)
    for _ in range(16):
        try:
            if not client.recv(_MAX_HEAD):
                return
        except OSError:  # nothing more yet (BlockingIOError), or the peer is gone
            return
