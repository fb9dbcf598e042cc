"""``python -m benchmarks hostile``: what a flood takes from a healthy client.

One ``muxwsgi serve`` worker (8 threads, default flood settings) serves a healthy mux client
(one connection, ``DEPTH`` GET /hello streams always in flight) while a flooder
(benchmarks/attack.py) attacks it from its own process, reconnecting whenever the server closes
its connection. The figure is "kept": the healthy client's throughput under attack over its
throughput under the same CPU contention without the attack. The target is ``TARGET``.

The machine may be shared, so a timing against a constant means little; instead:

- *Pinned*: with two CPUs or more the flooder runs alone on one, the worker and the healthy
  client share another: what the flood takes from the healthy client is then the worker's time
  spent on it, not CPU the flooder takes for itself.
- *Same process, alternating*: the control is the same flooder process, on the same CPU, told
  to burn its CPU instead of flooding: control, attack, control, ..., control, on one healthy
  connection that lives through all the turns.
- *Paired, median*: each attack turn's rate over the mean of the control turns either side of
  it; the median of those ratios is "kept", so that another tenant's load on one turn moves one
  ratio, not the figure.

The tests (tests/hostile/test_floods.py) check what load cannot move: the flooder gets GOAWAY
ENHANCE_YOUR_CALM, every healthy request succeeds, RSS stays bounded.

The starvation table (``--starvation`` alone, or after the floods): one ``muxwsgi serve``
worker with 8 threads; 8 or 64 requests that promise a 1000-byte body, send 10 bytes and stall
(on one mux connection, or each on its own HTTP/1.1 or classic uwsgi connection); meanwhile a
healthy GET /hello, each on a fresh HTTP/1.1 connection, one after another: its delay (connect
to last byte), p50 and max, against ``STARVATION_TARGET``. Before the server read bodies itself
every healthy request waited for ``body_timeout`` (30 s); tests/hostile/test_starvation.py checks
that it is answered at all while every stalled peer is still stalled.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .procs import ROOT, ServerProcess, free_port, start_server
from .rawmux import RawMux, Reply
from .stall import stall

__all__ = (
    "FLOODS",
    "STARVATION",
    "STARVATION_TARGET",
    "TARGET",
    "Figures",
    "Flood",
    "Meter",
    "Starved",
    "alternate",
    "cpu_seconds",
    "hwm_kib",
    "markdown",
    "next_answers",
    "rss_kib",
    "run",
    "run_starvation",
    "starvation_markdown",
)

#: The share of its throughput the healthy client should keep under each flood.
TARGET = 0.8
#: Streams the healthy client keeps in flight.
DEPTH = 8
#: After each switch between control and attack, before measuring: the previous turn's
#: connections wind down.
SETTLE = 0.2
#: The server's side (worker and healthy client) and the flooder's, each on CPUs of its own.
_CPUS = sorted(os.sched_getaffinity(0))
SERVER_CPUS, ATTACK_CPUS = ({_CPUS[0]}, {_CPUS[1]}) if len(_CPUS) >= 2 else (set(_CPUS),) * 2


@dataclass(frozen=True)
class Flood:
    """One row: a kind of flood on ``parallel`` connections at once, ``rounds`` attack turns
    of ``turn`` seconds between ``rounds`` + 1 control turns of ``control`` seconds."""

    id: str
    what: str
    kind: str  # a KIND of benchmarks/attack.py
    turn: float
    rounds: int
    control: float = 1.0
    parallel: int = 1

    def longer(self) -> Flood:
        """The long run: 60 s of rapid reset, 30 s of each other flood."""
        turn = 6.0 if self.kind == "rapid-reset" and self.parallel == 1 else 3.0
        return Flood(self.id, self.what, self.kind, turn, 10, 1.5, self.parallel)


FLOODS = {
    flood.id: flood
    for flood in (
        Flood("rapid-reset", "rapid reset (HEADERS + RESET)", "rapid-reset", 2.0, 5),
        Flood("ping", "PING", "ping", 1.0, 4),
        Flood("settings", "SETTINGS", "settings", 1.0, 4),
        Flood("empty", "empty DATA", "empty", 1.0, 4),
        Flood("storm", "rapid reset on 16 connections at once", "rapid-reset", 2.0, 4, parallel=16),
    )
}


# ---------------------------------------------------------------------------- measuring


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    raise LookupError(pid)


def rss_kib(pid: int) -> int:
    """The resident size of process ``pid`` now, KiB."""
    return _status_kib(pid, "VmRSS:")


def hwm_kib(pid: int) -> int:
    """The peak resident size of process ``pid`` so far, KiB."""
    return _status_kib(pid, "VmHWM:")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pin(pid: int, cpus: set[int]) -> None:
    """Pin every thread of process ``pid`` (threads started later inherit it) to ``cpus``."""
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(task), cpus)
        except (ProcessLookupError, PermissionError):
            pass  # a thread that just ended


def next_answers(client: RawMux, pending: set[int], depth: int) -> list[Reply] | None:
    """Top ``pending`` up to ``depth`` GET /hello streams, read for up to a second, and return
    the replies that finished (their streams leave ``pending``); None when the server closed
    the connection."""
    while len(pending) < depth:
        pending.add(client.send("GET", "/hello"))
    if not client.pump(1.0):
        return None
    finished = [sid for sid in pending if client.replies[sid].finished]
    pending.difference_update(finished)
    return [client.replies.pop(sid) for sid in finished]


class Meter:
    """A healthy mux client on one connection, ``depth`` GET /hello streams always in flight,
    measured window after window (the connection and its streams carry on between windows).
    Every answer that is not a 200 "Hello, World!" is filed in ``failures``."""

    def __init__(self, address: tuple[str, int], depth: int = DEPTH) -> None:
        self.client = RawMux(address)
        self.depth = depth
        self.failures: list[str] = []
        self._pending: set[int] = set()

    def run(self, seconds: float) -> float:
        """Keep the streams going for ``seconds``: answers per second over that time."""
        client, pending = self.client, self._pending
        ok = 0
        started = time.monotonic()
        deadline = started + seconds
        try:
            while time.monotonic() < deadline and not self.failures:
                replies = next_answers(client, pending, self.depth)
                if replies is None:
                    self.failures.append("connection closed by the server")
                    break
                for reply in replies:
                    if reply.status == 200 and reply.body == b"Hello, World!":
                        ok += 1
                    else:
                        self.failures.append(
                            f"stream {reply.stream_id}: {reply.status} {reply.reset}"
                        )
        except Exception as exc:  # reported to the caller
            self.failures.append(f"{type(exc).__name__}: {exc}")
        return ok / (time.monotonic() - started)

    def close(self) -> None:
        try:
            if not self.failures and not self.client.closed:
                self.client.wait(*self._pending)
        finally:
            self.client.close()


@dataclass
class Figures:
    flood: str
    control: list[float]  # healthy answers per second, each control turn
    attack: list[float]  # the same, each attack turn
    failures: list[str]
    cpu_control: float  # worker CPU seconds per wall second over the control turns
    cpu_attack: float  # ... over the attack turns
    rss_before_kib: int
    rss_after_kib: int
    flooder: dict[str, Any]  # what benchmarks/attack.py reported

    @property
    def kept(self) -> list[float]:
        """Each attack turn's rate over the mean of the control turns either side of it."""
        c = self.control
        return [a / ((c[i] + c[i + 1]) / 2) for i, a in enumerate(self.attack)]

    @property
    def kept_median(self) -> float:
        return statistics.median(self.kept)

    def problems(self) -> list[str]:
        """What went wrong besides the figure: a failed healthy request, or a flooding
        connection that the server closed without GOAWAY ENHANCE_YOUR_CALM. (How many it
        closed depends on the turns' length: a storm's connections wait in the penalty lane
        for 2 s before they are closed, and the flooder cuts them at the end of its turn.)"""
        attack = self.flooder
        out = [f"healthy client: {f}" for f in self.failures]
        if attack["goaways"].get("ENHANCE_YOUR_CALM", 0) < attack["closed"]:
            out.append(f"flooder: closed without ENHANCE_YOUR_CALM: {attack}")
        return out

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "kept": self.kept, "kept_median": self.kept_median}


def alternate(
    address: tuple[str, int], worker: int, flood: Flood, progress: Callable[[str], None]
) -> Figures:
    """Measure ``flood`` against the server at ``address`` (one worker, pid ``worker``): its
    turns alternated with control turns, the worker pinned with the healthy client and the
    flooder elsewhere."""
    host, port = address
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.attack", flood.kind, host, str(port),
         "--switched", "--parallel", str(flood.parallel)],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    mine, theirs = os.sched_getaffinity(0), os.sched_getaffinity(worker)
    meter = None
    try:
        pin(proc.pid, ATTACK_CPUS)
        pin(worker, SERVER_CPUS)
        os.sched_setaffinity(0, SERVER_CPUS)
        rss_before = rss_kib(worker)
        meter = Meter(address)
        rates: dict[str, list[float]] = {"burn": [], "flood": []}
        cpu = {"burn": 0.0, "flood": 0.0}
        wall = {"burn": 0.0, "flood": 0.0}
        for command in ["burn"] + ["flood", "burn"] * flood.rounds:
            proc.stdin.write(command + "\n")
            proc.stdin.flush()
            assert proc.stdout.readline() == f"ok {command}\n"
            meter.run(SETTLE)
            cpu_before, started = cpu_seconds(worker), time.monotonic()
            rates[command].append(meter.run(flood.turn if command == "flood" else flood.control))
            cpu[command] += cpu_seconds(worker) - cpu_before
            wall[command] += time.monotonic() - started
            progress(f"  {flood.id}: {command} {rates[command][-1]:,.0f} req/s")
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
    return Figures(flood.id, rates["burn"], rates["flood"], meter.failures,
                   cpu["burn"] / wall["burn"], cpu["flood"] / wall["flood"],
                   rss_before, rss_kib(worker), json.loads(out))  # fmt: skip


# ---------------------------------------------------------------------------- the command


def run(floods: Sequence[Flood], log_dir: Path, progress: Callable[[str], None]) -> list[Figures]:
    """Start one server (1 worker, 8 threads, on 127.0.0.1) and measure each flood in turn."""
    port = free_port()
    argv = [sys.executable, "-m", "muxwsgi", "serve", "benchmarks.app:app",
            "--bind", f"127.0.0.1:{port}", "--workers", "1", "--threads", "8"]  # fmt: skip
    probe = b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    server: ServerProcess = start_server("muxwsgi-hostile", argv, log_dir=log_dir, probe=probe,
                                         port=port)  # fmt: skip
    try:
        results = []
        for flood in floods:
            (_, worker) = server.processes()
            progress(f"{flood.id}: {flood.what}")
            results.append(alternate(("127.0.0.1", port), worker.pid, flood, progress))
        return results
    finally:
        server.stop()


def markdown(results: Sequence[Figures]) -> str:
    """One row per flood: kept (median and range), the rates, worker CPU and RSS growth, and
    whether the target is met."""
    head = ["flood", "attack time", "control (req/s)", "under attack (req/s)",
            "kept: median [range]", f"target ≥ {TARGET:.0%}", "worker CPU control / attack",
            "worker RSS growth", "closed by the server (with ENHANCE_YOUR_CALM)"]  # fmt: skip
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for f in results:
        kept = f.kept
        met = "met" if f.kept_median >= TARGET and not f.problems() else "**missed**"
        calm = f.flooder["goaways"].get("ENHANCE_YOUR_CALM", 0)
        row = [
            FLOODS[f.flood].what if f.flood in FLOODS else f.flood,
            f"{f.flooder['seconds']:.0f} s",
            f"{statistics.median(f.control):,.0f}",
            f"{statistics.median(f.attack):,.0f}",
            f"{f.kept_median:.0%} [{min(kept):.0%}-{max(kept):.0%}]",
            met,
            f"{f.cpu_control:.2f} / {f.cpu_attack:.2f} core",
            f"{round((f.rss_after_kib - f.rss_before_kib) / 1024, 1) + 0.0:.1f} MB",  # no -0.0
            f"{f.flooder['closed']} ({calm})",
        ]
        out.append("| " + " | ".join(row) + " |")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------- starvation

#: The most a healthy request may be delayed while stalled uploads hold the worker, seconds.
STARVATION_TARGET = 0.1
#: Healthy requests measured per scenario, one after another.
STARVATION_SAMPLES = 30


@dataclass(frozen=True)
class Starvation:
    """One row: ``peers`` requests that promise a 1000-byte body, send 10 bytes and stall,
    over ``protocol`` (mux: all on one connection)."""

    protocol: str
    peers: int

    @property
    def id(self) -> str:
        return f"{self.protocol}-{self.peers}"

    @property
    def what(self) -> str:
        where = "streams on one mux connection" if self.protocol == "mux" else "connections"
        name = {"http": "HTTP/1.1", "uwsgi": "classic uwsgi"}.get(self.protocol, "")
        return f"{self.peers} stalled {name} {where}".replace("  ", " ")


STARVATION = [Starvation(p, n) for p in ("mux", "http", "uwsgi") for n in (8, 64)]


@dataclass
class Starved:
    scenario: str
    delays: list[float]  # seconds, each healthy request
    failures: list[str]

    @property
    def p50(self) -> float:
        return statistics.median(self.delays) if self.delays else float("inf")

    @property
    def max(self) -> float:
        return max(self.delays, default=float("inf"))

    @property
    def met(self) -> bool:
        return not self.failures and self.max < STARVATION_TARGET

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "p50": self.p50, "max": self.max, "met": self.met}


def healthy_delay(address: tuple[str, int], timeout: float = 60.0) -> float:
    """GET /hello on a fresh HTTP/1.1 connection: seconds from connect to the last byte.
    Raises for anything but a 200 "Hello, World!"."""
    started = time.perf_counter()
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        reply = b"".join(iter(lambda: sock.recv(65536), b""))
    elapsed = time.perf_counter() - started
    if not (reply.startswith(b"HTTP/1.1 200 ") and reply.endswith(b"Hello, World!")):
        raise ValueError(f"healthy request answered {reply[:80]!r}")
    return elapsed


def _worker_connections(stats: Path) -> int:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(str(stats))
        sock.sendall(b"GET / HTTP/1.1\r\nHost: stats\r\n\r\n")
        reply = b"".join(iter(lambda: sock.recv(65536), b""))
    (worker,) = json.loads(reply.partition(b"\r\n\r\n")[2])["workers"]
    return int(worker["connections"])


def _until(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


def starve(address: tuple[str, int], stats: Path, scenario: Starvation) -> Starved:
    """Measure one scenario against the server at ``address`` (its stats socket ``stats``)."""
    result = Starved(scenario.id, [], [])
    _until(lambda: _worker_connections(stats) == 0, "the previous scenario's peers closed")
    try:
        with stall(address, scenario.protocol, scenario.peers, 1000, 10, "/echo") as stalled:
            if scenario.protocol != "mux":  # mux: stall() waited for the server's PING ACK
                _until(
                    lambda: _worker_connections(stats) >= scenario.peers, "stalled peers accepted"
                )
            for _ in range(STARVATION_SAMPLES):
                result.delays.append(healthy_delay(address))
            if not stalled.untouched():
                result.failures.append("a stalled peer was answered, reset or closed")
    except Exception as exc:  # reported in the table
        result.failures.append(f"{type(exc).__name__}: {exc}")
    return result


def run_starvation(
    scenarios: Sequence[Starvation], log_dir: Path, progress: Callable[[str], None]
) -> list[Starved]:
    """Start one server (1 worker, 8 threads, body timeout 300 s, on 127.0.0.1) and measure
    each scenario in turn."""
    port = free_port()
    stats = log_dir / "stats.sock"
    argv = [sys.executable, "-m", "muxwsgi", "serve", "benchmarks.app:app",
            "--bind", f"127.0.0.1:{port}", "--workers", "1", "--threads", "8",
            "--body-timeout", "300", "--stats", f"unix:{stats}"]  # fmt: skip
    probe = b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    server = start_server("muxwsgi-starvation", argv, log_dir=log_dir, probe=probe, port=port)
    try:
        results = []
        for scenario in scenarios:
            result = starve(("127.0.0.1", port), stats, scenario)
            progress(
                f"{scenario.what}: healthy p50 {result.p50 * 1000:.1f} ms,"
                f" max {result.max * 1000:.1f} ms {' '.join(result.failures)}"
            )
            results.append(result)
        return results
    finally:
        server.stop()


def starvation_markdown(results: Sequence[Starved]) -> str:
    """One row per scenario: the healthy request's delay (p50 and max) and the target."""
    names = {s.id: s.what for s in STARVATION}
    head = ["stalled uploads (--threads 8)", "healthy requests", "delay p50", "delay max",
            f"target < {STARVATION_TARGET * 1000:.0f} ms"]  # fmt: skip
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        row = [
            names.get(r.scenario, r.scenario),
            str(len(r.delays)),
            f"{r.p50 * 1000:.1f} ms",
            f"{r.max * 1000:.1f} ms",
            "met" if r.met else "**missed**" + "".join(f" ({f})" for f in r.failures),
        ]
        out.append("| " + " | ".join(row) + " |")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------- the command


def main(names: Sequence[str], long: bool, json_path: Path | None, starvation: bool = False) -> int:
    """Run the floods named (all if none) and print their table, then (unless floods were
    named) the starvation table; with ``starvation``, that table alone. 1 if a row missed its
    target or had a problem (a failed healthy request, a flooder not stopped), else 0."""

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    floods = [] if starvation else [FLOODS[n] for n in names or FLOODS]
    if long:
        floods = [f.longer() for f in floods]
    if floods and len(_CPUS) < 2:
        progress("warning: one CPU: the flooder shares it with the worker")
    load = os.getloadavg()[0]
    if load > 0.5 * len(_CPUS):
        progress(f"warning: the machine is busy (load average {load:.1f}): figures will be noisy")
    with tempfile.TemporaryDirectory(prefix="muxwsgi-hostile-") as tmp:
        results = run(floods, Path(tmp), progress) if floods else []
        starved = run_starvation(STARVATION, Path(tmp), progress) if not names else []
    if results:
        print(markdown(results))
    if starved:
        print(starvation_markdown(starved))
    if json_path is not None:
        rows = [r.as_dict() for r in results] + [r.as_dict() for r in starved]
        json_path.write_text(json.dumps(rows, indent=2) + "\n")
        progress(f"wrote {json_path}")
    problems = [f"{r.flood}: {p}" for r in results for p in r.problems()]
    problems += [f"{r.scenario}: {f}" for r in starved for f in r.failures]
    for line in problems:
        progress(line)
    missed = any(r.kept_median < TARGET for r in results) or not all(r.met for r in starved)
    return 1 if problems or missed else 0
