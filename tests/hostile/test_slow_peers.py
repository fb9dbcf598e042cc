"""Slow peers at hundreds of connections (slowloris on heads, on bodies, idle connections):
every timeout fires, and the worker keeps serving a healthy client meanwhile (items 16-18).

The server runs with one-second timeouts, so the whole run takes a few seconds. Longer::

    MUXWSGI_HOSTILE_LONG=1 pytest tests/hostile/test_slow_peers.py
"""

from __future__ import annotations

import json
import os
import select
import socket
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from muxwsgi import ErrorCode, FrameType

from ..core.helpers import frame, headers, preface, spec
from ..muxclient import vars_for
from ..servers import ServerProcess, start
from .kit import classic_post, converse, get, log_problems, throughput

pytestmark = pytest.mark.slow

LONG = os.environ.get("MUXWSGI_HOSTILE_LONG") == "1"
#: Connections of each kind; eight kinds.
EACH = 120 if LONG else 40
TIMEOUT = 1.0
OPENING = preface() + frame(FrameType.SETTINGS, 1, 0)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    timeouts = ("--header-timeout", "--body-timeout", "--keepalive-timeout", "--idle-timeout")
    args = [x for t in timeouts for x in (t, str(TIMEOUT))]
    srv = start("tests.hostile.apps:app", "--threads", "16", "--max-connections", "2000", *args,
                log_dir=tmp_path_factory.mktemp("slow"))  # fmt: skip
    yield srv
    srv.stop()


SLOW_UPLOAD = headers(1, vars_for("POST", "/input-error", CONTENT_LENGTH="100"), end=False)
#: kind -> (first bytes, bytes dribbled one at a time afterwards, or b"" for silence)
KINDS: dict[str, tuple[bytes, bytes]] = {
    "idle-socket": (b"", b""),
    "mux-idle": (OPENING, b""),
    "mux-slow-head": (OPENING, headers(1, vars_for("GET", "/hello"))),
    "uwsgi-slow-head": (b"", classic_post("/hello", 0)),
    "http-slow-head": (b"GET /hello HTTP/1.1\r\n", b"X-Slow: " + b"a" * 200 + b"\r\n"),
    "mux-slow-body": (OPENING + SLOW_UPLOAD + frame(FrameType.DATA, 0, 1, b"ten bytes."), b""),
    "uwsgi-slow-body": (classic_post("/input-error", 100) + b"ten bytes.", b""),
    "http-slow-body": (b"POST /input-error HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n"
                       b"ten bytes.", b""),
}  # fmt: skip


@dataclass
class Peer:
    kind: str
    sock: socket.socket
    dribble: bytes
    closed_at: float = 0.0


@spec("L-4")
def test_hundreds_of_slow_peers(server: ServerProcess) -> None:
    started_before = json.loads(get(server.address, "/started")).count("input-error")
    peers: list[Peer] = []
    started = time.monotonic()
    try:
        for kind, (first, dribble) in KINDS.items():
            for _ in range(EACH):
                sock = socket.create_connection(server.address, timeout=5)
                if first:
                    sock.sendall(first)
                sock.setblocking(False)
                peers.append(Peer(kind, sock, dribble))
        rates: list[float] = []
        deadline = started + TIMEOUT * 4 + 8
        while time.monotonic() < deadline and any(not p.closed_at for p in peers):
            for peer in peers:  # one more byte from every dribbler that is still connected
                if peer.dribble and not peer.closed_at:
                    try:
                        peer.sock.send(peer.dribble[:1])
                        peer.dribble = peer.dribble[1:] or peer.dribble
                    except OSError:
                        peer.closed_at = time.monotonic()
            readable, _, _ = select.select([p.sock for p in peers if not p.closed_at], [], [], 0)
            for peer in peers:
                if peer.sock in readable:
                    try:
                        while peer.sock.recv(1 << 16):
                            pass
                    except BlockingIOError:
                        continue
                    except OSError:
                        pass
                    peer.closed_at = time.monotonic()
            # Meanwhile the worker serves a healthy client on another connection.
            rate, failures = throughput(server.address, 0.25)
            assert failures == [], failures
            rates.append(rate)
    finally:
        for peer in peers:
            peer.sock.close()
    open_by_kind = Counter(p.kind for p in peers if not p.closed_at)
    assert open_by_kind == {}, f"still open: {open_by_kind}"
    # Each kind was closed by its timeout (plus the once-a-second check), none much later.
    latest = max(p.closed_at - started for p in peers)
    assert latest < TIMEOUT * 4 + 8
    # Served throughout (answers in most quarter-second windows; a window on a busy machine
    # may see none): the stalled uploads hold no thread.
    assert rates[-1] > 0 and sum(r > 0 for r in rates) >= len(rates) // 2, rates
    # The slow bodies were read by the server, never by the application: none reached it,
    # each was dropped at body-timeout (mux: RESET, then the idle connection closed).
    assert json.loads(get(server.address, "/started")).count("input-error") == started_before
    assert get(server.address, "/hello") == b"Hello, World!"


@spec("E-5", "L-4")
@pytest.mark.parametrize(
    ("script", "code"),
    [
        ([preface()], ErrorCode.SETTINGS_TIMEOUT),  # never acknowledges the server's settings
        ([OPENING, headers(1, vars_for("GET", "/hello"))[:20]], ErrorCode.PROTOCOL_ERROR),
    ],
    ids=["settings-never-acknowledged", "frame-never-completed"],
)
def test_mux_peer_that_stalls_gets_goaway(
    server: ServerProcess, script: list[bytes], code: ErrorCode
) -> None:
    started = time.monotonic()
    seen = converse(server.address, script, mux=True, timeout=TIMEOUT * 3 + 5)
    assert seen.closed and seen.goaway() == code, seen.frames
    assert time.monotonic() - started < TIMEOUT * 3 + 5


def test_the_log_has_no_internal_error(server: ServerProcess) -> None:
    """Runs last: every hostile act was handled, none escaped as an internal error."""
    assert log_problems(server.log()) == []
