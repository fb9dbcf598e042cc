"""The stats endpoint: uWSGI stats-server shaped JSON and Prometheus text, served by the master.

The master has no event loop, so this is a tiny blocking HTTP responder driven by the master's
``select``: one short request at a time, with a short timeout, then close.
"""

from __future__ import annotations

import json
import os
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
    """Answers ``GET /`` (JSON) and ``GET /metrics`` on the ``--stats`` address."""

    def __init__(self, master: MasterView, spec: str) -> None:
        self.master = master
        # A stats socket shows internals: owner-only for a unix socket (0600).
        self.listener = bind(spec, backlog=16, unix_mode=0o600)
        self.listener.sock.setblocking(False)
        self.listener.sock.set_inheritable(False)

    def fileno(self) -> int:
        return self.listener.sock.fileno()

    def handle_one(self) -> None:
        try:
            client, _ = self.listener.sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        with client:
            client.settimeout(1.0)
            try:
                request = client.recv(4096)
                path = request.split(b" ", 2)[1] if request.count(b" ") >= 2 else b"/"
                snap = snapshot(self.master)
                if path.startswith(b"/metrics"):
                    body = prometheus(snap).encode()
                    ctype = "text/plain; version=0.0.4"
                else:
                    body = json.dumps(snap, indent=1).encode() + b"\n"
                    ctype = "application/json"
                client.sendall(
                    f"HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                    "Connection: close\r\n\r\n".encode()
                    + body
                )
            except OSError:
                pass

    def close(self) -> None:
        self.listener.close()
        if self.listener.address.family == "unix":
            try:
                os.unlink(self.listener.address.path)
            except OSError:
                pass
