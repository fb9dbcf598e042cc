"""Raw byte scripts against a live server, what came back, and a healthy client that must not
notice any of it.

A script is a list of byte strings sent in order (with a short pause between them, so a case can
split a frame across reads); the runner then reads until the server closes, the expected outcome
shows up, or a few seconds pass. Mux replies are split into raw frames (no client state machine,
which would refuse most of these scripts before they reach the wire).
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import msgpack

from benchmarks.hostile import Meter, next_answers
from benchmarks.hostile import rss_kib as rss_kib  # for the tests
from muxwsgi import ErrorCode, FrameType, classic
from muxwsgi._frames import Frame, split_frames

from ..muxclient import RawMux
from ..servers import until

_U32 = struct.Struct("<I")


@dataclass
class Seen:
    """Everything the server sent on one connection."""

    raw: bytes
    closed: bool
    frames: list[Frame] = field(default_factory=list)

    @classmethod
    def mux(cls, raw: bytes, closed: bool) -> Seen:
        frames, _ = split_frames(raw)
        return cls(raw, closed, frames)

    def resets(self) -> dict[int, ErrorCode]:
        return {
            f.stream_id: ErrorCode.parse(_U32.unpack(f.payload)[0])
            for f in self.frames
            if f.type == FrameType.RESET
        }

    def goaway(self) -> ErrorCode | None:
        codes = [
            ErrorCode.parse(struct.unpack_from("<II", f.payload)[1])
            for f in self.frames
            if f.type == FrameType.GOAWAY
        ]
        return codes[-1] if codes else None

    def statuses(self) -> dict[int, int]:
        """Mux: the response status per stream."""
        return {
            f.stream_id: msgpack.unpackb(f.payload)[0]
            for f in self.frames
            if f.type == FrameType.HEADERS
        }

    def body(self, stream_id: int) -> bytes:
        return b"".join(
            f.payload for f in self.frames if f.type == FrameType.DATA and f.stream_id == stream_id
        )

    @property
    def http_status(self) -> int | None:
        """Classic uwsgi and HTTP/1.1: the status of the first response, if any."""
        if not self.raw.startswith(b"HTTP/"):
            return None
        return int(self.raw.split(b" ", 2)[1])


def converse(
    address: tuple[str, int],
    script: list[bytes],
    *,
    done: object = None,
    timeout: float = 5.0,
    mux: bool = False,
    gap: float = 0.02,
    half_close: bool = False,
) -> Seen:
    """Send ``script``; read until the server closes, ``done(seen)`` is true, or ``timeout``."""
    sock = socket.create_connection(address, timeout=timeout)
    received = bytearray()
    closed = False
    try:
        for i, chunk in enumerate(script):
            if i and gap:
                time.sleep(gap)
            try:
                sock.sendall(chunk)
            except OSError:  # the server may close before the script ends: that is an outcome
                break
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            sock.settimeout(max(0.01, min(0.2, deadline - time.monotonic())))
            try:
                chunk = sock.recv(1 << 16)
            except TimeoutError:
                chunk = None
            except ConnectionResetError:
                closed = True
                break
            if chunk == b"":
                closed = True
                break
            if chunk:
                received += chunk
            seen = Seen.mux(bytes(received), False) if mux else Seen(bytes(received), False)
            if done is not None and done(seen):  # type: ignore[operator]
                break
    finally:
        sock.close()
    return Seen.mux(bytes(received), closed) if mux else Seen(bytes(received), closed)


class Healthy:
    """A well-behaved mux client on its own connection, in a thread, for the whole module: it
    keeps ``depth`` GET /hello streams in flight and files every answer. One connection on
    purpose: a hostile case must not disturb another connection's streams."""

    def __init__(self, address: tuple[str, int], depth: int = 2) -> None:
        self.address = address
        self.depth = depth
        self.ok = 0
        self.failures: list[str] = []
        self.bodies: Counter[bytes] = Counter()
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="healthy", daemon=True)

    def __enter__(self) -> Healthy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        client = RawMux(self.address)
        self.connections += 1
        pending: set[int] = set()
        try:
            while not self._stop.is_set():
                replies = next_answers(client, pending, self.depth)
                if replies is None:
                    self.failures.append("the healthy connection was closed by the server")
                    return
                for reply in replies:
                    if reply.status == 200 and reply.body == b"Hello, World!" and not reply.reset:
                        self.ok += 1
                    else:
                        self.failures.append(
                            f"stream {reply.stream_id}: {reply.status} {reply.reset}"
                        )
                    self.bodies[reply.body] += 1
        except Exception as exc:  # reported by check()
            self.failures.append(f"{type(exc).__name__}: {exc}")
        finally:
            client.close()

    def check(self, since: int, at_least: int = 3, timeout: float = 15.0) -> None:
        """Assert no failure so far and ``at_least`` more answers than ``since``."""
        try:
            until(lambda: self.ok >= since + at_least or self.failures, timeout, 0.01)
        except TimeoutError:
            pass  # said below
        assert self.failures == [], self.failures
        assert self.ok >= since + at_least, f"the healthy client stalled at {self.ok}"
        assert self.connections == 1


def classic_post(path: str, length: int) -> bytes:
    """The head of a classic uwsgi POST of ``length`` body bytes (the body is not included)."""
    return classic.encode_request(
        {"REQUEST_METHOD": "POST", "PATH_INFO": path, "SERVER_PROTOCOL": "HTTP/1.1",
         "CONTENT_LENGTH": str(length)}
    )  # fmt: skip


def get(address: tuple[str, int], path: str) -> bytes:
    """One request on a fresh mux connection; the body of a 200 answer."""
    client = RawMux(address)
    try:
        reply = client.request("GET", path)
    finally:
        client.close()
    assert reply.status == 200, (path, reply.status, reply.reset)
    return reply.body


def marks(address: tuple[str, int]) -> list[str]:
    return json.loads(get(address, "/marks"))


def throughput(address: tuple[str, int], seconds: float, depth: int = 8) -> tuple[float, list[str]]:
    """GET /hello on a new mux connection, ``depth`` streams in flight, for ``seconds``:
    (answers per second, failures)."""
    meter = Meter(address, depth)
    rate = meter.run(seconds)  # failures are collected, not raised
    try:
        meter.close()
    except Exception as exc:  # reported to the caller
        meter.failures.append(f"{type(exc).__name__}: {exc}")
        meter.client.close()
    return rate, meter.failures


def log_problems(log: str) -> list[str]:
    """What a server log must not hold after hostile input: internal errors, and tracebacks
    other than those of the application's own exceptions (logged as "...: the application
    raised; ...")."""
    problems = [line for line in log.splitlines() if "internal error" in line]
    expected = log.count("): the application raised;")
    if log.count("\nTraceback") != expected:
        problems.append(f"{log.count(chr(10) + 'Traceback')} tracebacks, {expected} expected")
    return problems
