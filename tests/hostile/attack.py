"""Flood attackers, each in its own process (so that its CPU and the GIL are not the healthy
client's): ``python -m tests.hostile.attack KIND HOST PORT SECONDS`` floods for SECONDS, opening
a new connection whenever the server closes one, and prints what it did as JSON.

KIND is one of: rapid-reset (HEADERS then RESET, stream after stream: CVE-2023-44487), ping
(CVE-2019-9512), settings (CVE-2019-9515), empty (empty DATA frames on an open stream:
CVE-2019-9518).
"""

from __future__ import annotations

import json
import socket
import struct
import sys
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


def flood(kind: str, address: tuple[str, int], seconds: float) -> dict[str, object]:
    """Flood until ``seconds`` pass; reconnect whenever the server closes the connection."""
    sent = connections = 0
    goaways: Counter[str] = Counter()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        connections += 1
        received = bytearray()
        sock = socket.create_connection(address, timeout=5)
        try:
            sock.sendall(OPENING)
            sock.setblocking(False)
            for chunk, frames in KINDS[kind]():
                if time.monotonic() >= deadline:
                    break
                try:
                    _send_all(sock, chunk, deadline)
                    sent += frames
                    if not _drain(sock, received):
                        break  # the server closed the connection
                except OSError:
                    break
        finally:
            sock.close()
        frames_seen, _ = split_frames(bytes(received))
        for frame in frames_seen:
            if frame.type == FrameType.GOAWAY:
                goaways[ErrorCode.parse(struct.unpack_from("<II", frame.payload)[1]).name] += 1
    return {"kind": kind, "frames": sent, "connections": connections, "goaways": dict(goaways),
            "seconds": seconds}  # fmt: skip


def _send_all(sock: socket.socket, data: bytes, deadline: float) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[sock.send(view) :]
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise TimeoutError from None
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
    kind, host, port, seconds = sys.argv[1:5]
    if kind == "burn":
        result = burn(float(seconds))
    else:
        result = flood(kind, (host, int(port)), float(seconds))
    print(json.dumps(result), flush=True)
