"""Floods at full speed against a live server, with figures: rapid reset, PING, SETTINGS and
empty-frame floods, and a client that never reads.

Each flooder runs in its own process and reconnects whenever the server closes its connection.
A healthy mux client on another connection measures its throughput meanwhile. The control is
the same measurement while the same process only burns its CPU: the process takes turns,
control, attack, control, attack, ..., control, and each attack turn is compared with the mean
of the control turns either side of it; the figure asserted is the median of those ratios, so
that what other jobs on a shared machine do to one turn cancels out (never a timing against a
constant). With two CPUs or more, the flooder runs alone on one, the worker and the healthy
client share another: what the attack takes from the healthy client is then the worker's time
spent on it, not CPU the flooder takes for itself.

Longer runs (a minute of rapid reset, 30 s per flood)::

    MUXWSGI_HOSTILE_LONG=1 pytest -s tests/hostile/test_floods.py
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from muxwsgi import ErrorCode, FrameType
from muxwsgi._frames import split_frames

from ..core.helpers import frame, headers, preface, spec, window_update
from ..muxclient import vars_for
from ..servers import ROOT, ServerProcess, start
from .kit import Meter, cpu_seconds, get, log_problems, pin, rss_kib, throughput

pytestmark = pytest.mark.slow

LONG = os.environ.get("MUXWSGI_HOSTILE_LONG") == "1"
#: Attack turns per flood (rapid reset: RAPID_RESET_ROUNDS), seconds per attack turn and
#: per control turn.
RAPID_RESET_ROUNDS = 10 if LONG else 5
ROUNDS = 10 if LONG else 4
RAPID_RESET_TURN = 6.0 if LONG else 2.0  # 60 s (10 s in CI) of rapid reset in all
FLOOD_TURN = 3.0 if LONG else 1.0
CONTROL_TURN = 1.5 if LONG else 1.0
#: After each switch, before measuring: the previous turn's connections wind down.
SETTLE = 0.2
#: Connections flooding at once in the storm test (each reconnecting after its GOAWAY).
STORM = 16
#: The share of its throughput the healthy client must keep: the median of the rounds' ratios.
#: The target is 0.8. Six runs of this file on a shared 2-core machine kept medians of
#: 0.83-1.20 per flood (docs/hardening.md); the server before the penalty lane kept 0.37-0.73
#: measured the same way. 0.75 fails that server on every flood and leaves >= 0.08 for noise.
KEPT = 0.75
#: The server's side (worker and healthy client) and the flooder's, each on CPUs of its own.
_CPUS = sorted(os.sched_getaffinity(0))
SERVER_CPUS, ATTACK_CPUS = ({_CPUS[0]}, {_CPUS[1]}) if len(_CPUS) >= 2 else (set(_CPUS),) * 2


@dataclass
class Figures:
    kind: str
    control: list[float]  # healthy answers per second, each control turn
    attack: list[float]  # the same, each attack turn
    failures: list[str]
    cpu_control: float  # worker CPU seconds per wall second over the control turns
    cpu_attack: float  # ... over the attack turns
    rss_before_kib: int
    rss_after_kib: int
    flooder: dict[str, object] = field(default_factory=dict)

    @property
    def kept(self) -> list[float]:
        """Each attack turn's rate over the mean of the control turns either side of it."""
        c = self.control
        return [a / ((c[i] + c[i + 1]) / 2) for i, a in enumerate(self.attack)]

    @property
    def kept_median(self) -> float:
        return statistics.median(self.kept)

    def line(self) -> str:
        out = {**self.__dict__, "kept": [round(k, 3) for k in self.kept]}
        out["kept_median"] = round(self.kept_median, 3)
        out["control"] = [round(r) for r in self.control]
        out["attack"] = [round(r) for r in self.attack]
        return json.dumps(out)


def report(line: str) -> None:
    """Print figures (``pytest -s`` shows them; docs/hardening.md quotes runs)."""
    print(f"\nhostile-figures {line}", file=sys.stderr)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start("tests.hostile.apps:app", "--threads", "8",
                log_dir=tmp_path_factory.mktemp("floods"))  # fmt: skip
    yield srv
    srv.stop()


def alternate(
    server: ServerProcess, kind: str, attack_turn: float, rounds: int = ROUNDS, parallel: int = 1
) -> Figures:
    """``rounds`` attack turns of ``kind`` (on ``parallel`` connections at once) between
    ``rounds`` + 1 control turns, the healthy client measured in each; the worker pinned with
    the healthy client, the flooder elsewhere."""
    (worker,) = server.worker_pids()
    host, port = server.address
    command = ["--switched", kind, host, str(port), str(parallel)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.hostile.attack", *command],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    mine, theirs = os.sched_getaffinity(0), os.sched_getaffinity(worker)
    meter = None
    try:
        pin(proc.pid, ATTACK_CPUS)
        pin(worker, SERVER_CPUS)
        os.sched_setaffinity(0, SERVER_CPUS)
        rss_before = rss_kib(worker)
        meter = Meter(server.address)
        rates: dict[str, list[float]] = {"burn": [], "flood": []}
        cpu = {"burn": 0.0, "flood": 0.0}
        wall = {"burn": 0.0, "flood": 0.0}
        for command in ["burn"] + ["flood", "burn"] * rounds:
            proc.stdin.write(command + "\n")
            proc.stdin.flush()
            assert proc.stdout.readline() == f"ok {command}\n"
            meter.run(SETTLE)
            cpu_before, started = cpu_seconds(worker), time.monotonic()
            rates[command].append(meter.run(attack_turn if command == "flood" else CONTROL_TURN))
            cpu[command] += cpu_seconds(worker) - cpu_before
            wall[command] += time.monotonic() - started
        proc.stdin.write("stop\n")
        proc.stdin.flush()
        out = proc.stdout.readline()
        proc.wait(30)
    finally:
        os.sched_setaffinity(0, mine)
        pin(worker, theirs)
        if meter is not None:
            meter.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    figures = Figures(kind, rates["burn"], rates["flood"], meter.failures,
                      cpu["burn"] / wall["burn"], cpu["flood"] / wall["flood"],
                      rss_before, rss_kib(worker), json.loads(out))  # fmt: skip
    report(figures.line())
    return figures


def check_attack_was_stopped(figures: Figures, server: ServerProcess) -> None:
    attack = figures.flooder
    assert figures.failures == []
    # Every attacking connection but those cut by the flooder at the end of its turns got
    # GOAWAY and close, and the server closed at least one per turn.
    calm = attack["goaways"].get("ENHANCE_YOUR_CALM", 0)  # type: ignore[attr-defined]
    closed = attack["connections"] - attack["cut"]  # type: ignore[operator]
    turns = len(figures.attack)
    assert attack["cut"] <= turns * attack["parallel"], attack  # type: ignore[operator]
    assert closed >= turns and calm >= closed, attack
    assert server.worker_pids() and get(server.address, "/hello") == b"Hello, World!"


def test_rapid_reset(server: ServerProcess) -> None:
    """CVE-2023-44487 at full speed: each connection is cut after its RESET burst (the
    server's default flood limits), the worker survives with bounded memory, and the healthy
    client on another connection keeps its share of the worker."""
    (worker,) = server.worker_pids()
    figures = alternate(server, "rapid-reset", RAPID_RESET_TURN, RAPID_RESET_ROUNDS)
    check_attack_was_stopped(figures, server)
    assert server.worker_pids() == [worker]
    assert figures.kept_median >= KEPT, figures.line()
    assert figures.rss_after_kib - figures.rss_before_kib < 64 * 1024


@pytest.mark.parametrize("kind", ["ping", "settings", "empty"])
def test_control_frame_floods(server: ServerProcess, kind: str) -> None:
    figures = alternate(server, kind, FLOOD_TURN)
    check_attack_was_stopped(figures, server)
    assert figures.kept_median >= KEPT, figures.line()
    assert figures.rss_after_kib - figures.rss_before_kib < 64 * 1024


def test_rapid_reset_storm(server: ServerProcess) -> None:
    """Rapid reset on STORM connections at once, each reconnecting after its GOAWAY: past half
    of their allowances they share one penalty lane (server/protocols/flood.py), so opening
    more connections buys a flooder no more of the worker."""
    figures = alternate(server, "rapid-reset", RAPID_RESET_TURN, ROUNDS, STORM)
    check_attack_was_stopped(figures, server)
    assert figures.kept_median >= KEPT, figures.line()
    assert figures.rss_after_kib - figures.rss_before_kib < 64 * 1024


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
    deadline = time.monotonic() + timeout
    while True:
        tags = [t for t in json.loads(get(server.address, "/held-closed")) if t.startswith(tag)]
        if len(tags) == HELD or time.monotonic() > deadline:
            return tags
        time.sleep(0.2)


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
                rate, failures = throughput(stuck_server.address, 0.5)
                assert failures == [] and rate > 0
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
            rate, failures = throughput(stuck_server.address, 0.3)
            assert failures == [] and rate > 0
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
