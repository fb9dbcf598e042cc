"""Continuous load for the process tests (reload, stop, recycle): threads that keep sending
requests over mux, classic uwsgi and HTTP/1.1 and count what succeeded and what failed.

Each loop behaves as a correct client of its protocol is allowed to:
- mux: a stream refused (REFUSED_STREAM, or above a GOAWAY's last stream id) was never
  processed and is sent again on a new connection; nothing else is retried;
- HTTP/1.1: keep-alive; a request whose reused connection turns out closed before any response
  byte is sent once more on a new connection (what urllib3 and browsers do for idempotent
  requests on a stale connection);
- classic uwsgi: one connection per request, never retried.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import muxwsgi
from muxwsgi import ErrorCode, classic

from .muxclient import RawMux


@dataclass
class Tally:
    ok: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    retried: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    bodies: Counter[bytes] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def success(self, kind: str, body: bytes) -> None:
        with self.lock:
            self.ok[kind] += 1
            self.bodies[body] += 1

    def failure(self, kind: str, why: str) -> None:
        with self.lock:
            self.failed[kind] += 1
            if len(self.errors) < 50:
                self.errors.append(f"{kind}: {why}")

    @property
    def total_ok(self) -> int:
        return sum(self.ok.values())

    @property
    def total_failed(self) -> int:
        return sum(self.failed.values())


class Load:
    """Run loops in threads until stop(); ``paths`` alternate per request."""

    def __init__(self, address: tuple[str, int], paths: list[str], *, mux: int = 2,
                 http: int = 2, uwsgi: int = 2, mux_depth: int = 8) -> None:  # fmt: skip
        self.address = address
        self.paths = paths
        self.tally = Tally()
        self._stop = threading.Event()
        self.threads = (
            [self._thread(self._mux_loop, mux_depth) for _ in range(mux)]
            + [self._thread(self._http_loop) for _ in range(http)]
            + [self._thread(self._uwsgi_loop) for _ in range(uwsgi)]
        )

    def _thread(self, target: Callable[..., None], *args: object) -> threading.Thread:
        return threading.Thread(target=target, args=args, daemon=True)

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> Tally:
        self._stop.set()
        for thread in self.threads:
            thread.join(30)
        return self.tally

    def _path(self, i: int) -> str:
        return self.paths[i % len(self.paths)]

    # ---------------------------------------------------------------- mux

    def _mux_loop(self, depth: int) -> None:
        tally, i = self.tally, 0
        client: RawMux | None = None
        pending: dict[int, str] = {}  # stream id -> path
        retry: list[str] = []
        while not self._stop.is_set() or pending:
            try:
                if client is None or client.closed or not client.conn.can_open_stream:
                    if client is not None and pending:
                        # A connection going away: wait for its accepted streams to finish.
                        client.pump(1.0)
                        self._mux_collect(client, pending, retry)
                        if not client.closed:
                            continue
                        for sid, path in pending.items():
                            tally.failure("mux", f"connection lost with stream {sid} ({path})")
                        pending.clear()
                    if self._stop.is_set():
                        break
                    client = RawMux(self.address)
                while (
                    len(pending) < depth and not self._stop.is_set() and client.conn.can_open_stream
                ):
                    path = retry.pop() if retry else self._path(i)
                    i += 1
                    pending[client.send("GET", path)] = path
                client.pump(1.0)
                self._mux_collect(client, pending, retry)
            except (OSError, muxwsgi.ProtocolError) as exc:
                if pending:
                    tally.failure("mux", f"{type(exc).__name__}: {exc}")
                    pending.clear()
                client = None
                time.sleep(0.01)

    def _mux_collect(self, client: RawMux, pending: dict[int, str], retry: list[str]) -> None:
        for sid in [s for s in pending if client.replies[s].finished]:
            reply = client.replies.pop(sid)
            path = pending.pop(sid)
            if reply.reset == ErrorCode.REFUSED_STREAM:
                self.tally.retried["mux"] += 1
                retry.append(path)  # never processed: safe to send again, anywhere
            elif reply.reset is not None or reply.status != 200:
                self.tally.failure("mux", f"{path}: status {reply.status} reset {reply.reset}")
            else:
                self.tally.success("mux", reply.body)

    # ---------------------------------------------------------------- HTTP/1.1

    def _http_loop(self) -> None:
        conn: http.client.HTTPConnection | None = None
        i = 0
        while not self._stop.is_set():
            path = self._path(i)
            i += 1
            for attempt in range(2):
                reused = conn is not None
                if conn is None:
                    conn = http.client.HTTPConnection(*self.address, timeout=30)
                try:
                    conn.request("GET", path)
                    response = conn.getresponse()
                    body = response.read()
                    if response.status == 200:
                        self.tally.success("http", body)
                    else:
                        self.tally.failure("http", f"{path}: status {response.status}")
                    if response.will_close:
                        conn.close()
                        conn = None
                    break
                except (
                    http.client.RemoteDisconnected,
                    ConnectionResetError,
                    BrokenPipeError,
                ) as exc:
                    conn.close()
                    conn = None
                    if reused and attempt == 0:
                        self.tally.retried["http"] += 1
                        continue  # a stale keep-alive connection: once more on a new one
                    self.tally.failure("http", f"{path}: {type(exc).__name__}: {exc}")
                    break
                except OSError as exc:
                    conn.close()
                    conn = None
                    self.tally.failure("http", f"{path}: {type(exc).__name__}: {exc}")
                    break

    # ---------------------------------------------------------------- classic uwsgi

    def _uwsgi_loop(self) -> None:
        i = 0
        while not self._stop.is_set():
            path = self._path(i)
            i += 1
            path_info, _, query = path.partition("?")
            packet = classic.encode_request(
                {"REQUEST_METHOD": "GET", "PATH_INFO": path_info, "QUERY_STRING": query,
                 "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_NAME": "t", "SERVER_PORT": "80"}
            )  # fmt: skip
            try:
                with socket.create_connection(self.address, timeout=30) as sock:
                    sock.sendall(packet)
                    data = b"".join(iter(lambda: sock.recv(65536), b""))
            except OSError as exc:
                self.tally.failure("uwsgi", f"{path}: {type(exc).__name__}: {exc}")
                continue
            head, _, body = data.partition(b"\r\n\r\n")
            if head.startswith(b"HTTP/1.1 200"):
                self.tally.success("uwsgi", body)
            else:
                self.tally.failure("uwsgi", f"{path}: {head[:60]!r}")
