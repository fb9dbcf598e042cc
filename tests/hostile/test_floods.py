"""Floods at full speed against a live server: rapid reset, PING, SETTINGS and empty-frame
floods, rapid reset on 16 connections at once, and clients that never read.

Each flooder runs in its own process (benchmarks/attack.py), reconnecting whenever the server
closes its connection, until the server has closed a few; meanwhile a healthy mux client on
another connection keeps streams in flight. Checked is what load cannot move: every connection
the server closed got GOAWAY ENHANCE_YOUR_CALM first, every healthy request was answered
correctly, the worker lives with bounded memory, a fresh connection is served. How much of its
throughput the healthy client keeps is a figure, measured by ``python -m benchmarks hostile``
(docs/hardening.md), never asserted by a test.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from muxwsgi import ErrorCode, FrameType
from muxwsgi._frames import split_frames

from ..core.helpers import frame, headers, preface, spec, window_update
from ..muxclient import vars_for
from ..servers import ROOT, ServerProcess, start, until
from .kit import Healthy, get, log_problems, rss_kib

pytestmark = pytest.mark.slow

#: Connections flooding at once in the storm test (each reconnecting after its GOAWAY).
STORM = 16
#: A bound for a flood that the server never stops (each takes a few seconds).
LIMIT = 60.0
#: Worker RSS growth allowed over one flood: the read buffers of connections that wait for
#: their turn in the penalty lane, not what the flooder sent.
RSS_GROWTH_KIB = 64 * 1024


def report(line: str) -> None:
    """Print figures (``pytest -s`` shows them)."""
    print(f"\nhostile-figures {line}", file=sys.stderr)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start("tests.hostile.apps:app", "--threads", "8",
                log_dir=tmp_path_factory.mktemp("floods"))  # fmt: skip
    yield srv
    srv.stop()


def flood_until_closed(
    server: ServerProcess, kind: str, closed: int, parallel: int = 1
) -> dict[str, object]:
    """Flood with ``kind`` on ``parallel`` connections at once until the server has closed
    ``closed`` of them, while a healthy client (8 streams in flight on one connection) is
    served; check what load cannot move, and return what the flooder reported."""
    (worker,) = server.worker_pids()
    host, port = server.address
    rss_before = rss_kib(worker)
    with Healthy(server.address, depth=8) as healthy:
        healthy.check(0)
        since = healthy.ok
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.attack", kind, host, str(port),
             "--closed", str(closed), "--parallel", str(parallel), "--seconds", str(LIMIT)],
            cwd=ROOT, capture_output=True, text=True, timeout=LIMIT + 30,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        # Answered throughout, each correctly, on the same connection.
        healthy.check(since)
    attack = json.loads(done.stdout)
    report(done.stdout.strip())
    # The server stopped the flood (not the time limit), and every connection it closed
    # showed its GOAWAY ENHANCE_YOUR_CALM first.
    assert attack["closed"] >= closed, attack
    assert attack["goaways"].get("ENHANCE_YOUR_CALM", 0) >= attack["closed"], attack
    assert attack["cut"] <= parallel, attack  # only those flooding when the run ended
    assert server.worker_pids() == [worker]
    assert rss_kib(worker) - rss_before < RSS_GROWTH_KIB
    assert get(server.address, "/hello") == b"Hello, World!"
    return attack


def test_rapid_reset(server: ServerProcess) -> None:
    """CVE-2023-44487 at full speed: each connection is cut after its RESET burst (the
    server's default flood limits), the worker survives with bounded memory, and the healthy
    client on another connection is served throughout."""
    flood_until_closed(server, "rapid-reset", 2)


@pytest.mark.parametrize(("kind", "closed"), [("ping", 50), ("settings", 100), ("empty", 3)])
def test_control_frame_floods(server: ServerProcess, kind: str, closed: int) -> None:
    flood_until_closed(server, kind, closed)


def test_rapid_reset_storm(server: ServerProcess) -> None:
    """Rapid reset on STORM connections at once, each reconnecting after its GOAWAY: past half
    of their allowances they share one penalty lane (server/protocols/flood.py), where each
    waits its turn until it is closed."""
    flood_until_closed(server, "rapid-reset", STORM, STORM)


# ------------------------------------------------------------------ readers that never read

HELD = 4  # streams, each asking for a response far larger than any buffer


@pytest.fixture(scope="module")
def stuck_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start("tests.hostile.apps:app", "--threads", "8", "--stuck-window-timeout", "2",
                "--send-buffer-size", "256k", log_dir=tmp_path_factory.mktemp("stuck"))  # fmt: skip
    yield srv
    srv.stop()


def held_streams(tag: str, settings: dict[int, int] | None = None, window: int = 0) -> bytes:
    """The opening (with ``settings``, and a connection WINDOW_UPDATE of ``window``) and
    HELD requests for 128 MiB responses."""
    out = [preface(settings), frame(FrameType.SETTINGS, 1, 0)]
    if window:
        out.append(window_update(0, window))
    for i in range(HELD):
        out.append(headers(2 * i + 1, vars_for("GET", f"/held?tag={tag}-{i}&n=2048&size=65536")))
    return b"".join(out)


def closed_tags(server: ServerProcess, tag: str, timeout: float) -> list[str]:
    """Wait until the HELD responses of ``tag`` had their close() called."""

    def tags() -> list[str]:
        return [t for t in json.loads(get(server.address, "/held-closed")) if t.startswith(tag)]

    try:
        until(lambda: len(tags()) == HELD, timeout, 0.2)
    except TimeoutError:
        pass  # the caller says what is missing
    return tags()


@spec("L-3", "L-2")
def test_window_never_opened(stuck_server: ServerProcess) -> None:
    """The client reads the socket but never grants window: each stream gets its first
    window's worth, the application thread blocks on a bounded buffer, and once the window
    has stayed shut for stuck-window-timeout the stream is reset (CANCEL), the thread freed
    and the iterable closed."""
    (worker,) = stuck_server.worker_pids()
    rss_before = rss_kib(worker)
    sock = socket.create_connection(stuck_server.address, timeout=10)
    received = bytearray()
    try:
        sock.sendall(held_streams("shut"))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            sock.settimeout(0.5)
            try:
                chunk = sock.recv(1 << 16)
            except TimeoutError:
                chunk = b"x" if not received else None
            if chunk == b"":
                break
            received += chunk or b""
            frames, _ = split_frames(bytes(received))
            if sum(1 for f in frames if f.type == FrameType.RESET) >= HELD:
                break
            if time.monotonic() - deadline > -13:  # meanwhile: another client is served
                assert get(stuck_server.address, "/hello") == b"Hello, World!"
        rss_during = rss_kib(worker)
    finally:
        sock.close()
    frames, _ = split_frames(bytes(received))
    resets = {f.stream_id: ErrorCode.parse(struct.unpack("<I", f.payload)[0])
              for f in frames if f.type == FrameType.RESET}  # fmt: skip
    assert resets == {2 * i + 1: ErrorCode.CANCEL for i in range(HELD)}
    sent = sum(len(f.payload) for f in frames if f.type == FrameType.DATA)
    assert sent <= 65535  # the connection window, never more
    assert len(closed_tags(stuck_server, "shut", 10)) == HELD
    # Bounded: the send buffers of the streams plus slack, not 4 x 128 MiB.
    assert rss_during - rss_before < HELD * 256 + 32 * 1024


def test_client_never_reads(stuck_server: ServerProcess) -> None:
    """The client opens a 2 GiB window and then never reads the socket: what the server
    buffers stays bounded (its send buffers and the kernel's), and the streams are reset
    once nothing drains for stuck-window-timeout."""
    (worker,) = stuck_server.worker_pids()
    rss_before = rss_kib(worker)
    sock = socket.create_connection(stuck_server.address, timeout=10)
    try:
        sock.sendall(held_streams("deaf", {0x2: 0x7FFFFFFF}, 0x7FFFFFFF - 65535))
        peak = rss_before
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            peak = max(peak, rss_kib(worker))
            assert get(stuck_server.address, "/hello") == b"Hello, World!"  # others are served
        tags = closed_tags(stuck_server, "deaf", 15)
        peak = max(peak, rss_kib(worker))
    finally:
        sock.close()
    report(json.dumps({"kind": "never-reads", "rss_before_kib": rss_before, "rss_peak_kib": peak}))
    assert peak - rss_before < HELD * 256 + 32 * 1024, (rss_before, peak)
    assert len(tags) == HELD


def test_the_log_has_no_internal_error(server: ServerProcess, stuck_server: ServerProcess) -> None:
    """Runs last: every hostile act was handled, none escaped as an internal error."""
    assert log_problems(server.log()) == []
    assert log_problems(stuck_server.log()) == []
