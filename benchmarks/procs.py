"""Server processes for the harness: each in its own process group on 127.0.0.1, bounded in
time, stopped by its own pid and process group (never by name); and what they cost, read from
their own rusage through psutil (the master and every worker, threads included)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

__all__ = (
    "HTTP_ANSWER",
    "GroupMeter",
    "ServerProcess",
    "free_port",
    "start_server",
    "tcp_active_opens",
    "tcp_socket_count",
    "time_wait_count",
)

ROOT = Path(__file__).resolve().parents[1]
#: What a server that is ready answers to the probe: an HTTP status line.
HTTP_ANSWER = re.compile(rb"HTTP/")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    stop_signal: int = signal.SIGTERM

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def processes(self) -> list[psutil.Process]:
        """The server's leader and all its descendants (master + workers)."""
        try:
            leader = psutil.Process(self.pid)
            return [leader, *leader.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the leader to stop; then kill the whole process group whatever happened."""
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(self.stop_signal)
                self.proc.wait(timeout)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass


def start_server(
    name: str,
    argv: Sequence[str],
    *,
    log_dir: Path,
    probe: bytes,
    port: int,
    answer: re.Pattern[bytes] = HTTP_ANSWER,
    env: dict[str, str] | None = None,
    timeout: float = 30.0,
    stop_signal: int = signal.SIGTERM,
) -> ServerProcess:
    """Start ``argv`` in a new session (its own process group) and wait until ``probe`` sent
    to 127.0.0.1:``port`` is answered with bytes that match ``answer``."""
    log_path = log_dir / f"{name}.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            list(argv),
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
    server = ServerProcess(name, proc, log_path, stop_signal)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited at once ({proc.returncode}):\n{server.log_tail()}")
        if _answers(port, probe, answer):
            return server
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"{name} not ready in {timeout}s:\n{server.log_tail()}")
        time.sleep(0.05)


def _answers(port: int, probe: bytes, answer: re.Pattern[bytes]) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.settimeout(2)
            sock.sendall(probe)
            return answer.match(sock.recv(16)) is not None
    except OSError:
        return False


@dataclass
class GroupMeter:
    """CPU seconds and peak RSS of a set of server process trees over a window.

    CPU is the sum of user + system time of every process (its threads included) between
    :meth:`start` and :meth:`stop`; RSS is the peak of the summed resident sizes, sampled every
    ``interval`` seconds by a thread.
    """

    servers: list[ServerProcess]
    interval: float = 0.2
    cpu: float = 0.0
    peak_rss: int = 0
    processes: int = 0  # how many were measured at the end of the window
    _start: dict[int, float] = field(default_factory=dict)
    _stop_event: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _sample_cpu(self) -> dict[int, float]:
        times: dict[int, float] = {}
        for server in self.servers:
            for proc in server.processes():
                try:
                    cpu = proc.cpu_times()
                    times[proc.pid] = cpu.user + cpu.system
                except psutil.Error:
                    pass
        return times

    def _sample_rss(self) -> None:
        total = 0
        for server in self.servers:
            for proc in server.processes():
                try:
                    total += proc.memory_info().rss
                except psutil.Error:
                    pass
        self.peak_rss = max(self.peak_rss, total)

    def _sampler(self) -> None:
        while not self._stop_event.wait(self.interval):
            self._sample_rss()

    def start(self) -> None:
        self._start = self._sample_cpu()
        self._sample_rss()
        self._thread = threading.Thread(target=self._sampler, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        end = self._sample_cpu()
        self._stop_event.set()
        if self._thread is not None:
            self._thread.join()
        self._sample_rss()
        # A process born inside the window (a respawned worker) counts from zero.
        self.cpu = sum(t - self._start.get(pid, 0.0) for pid, t in end.items())
        self.processes = len(end)


def tcp_active_opens() -> int:
    """The kernel's count of TCP connections opened by connect() so far (all processes)."""
    lines = Path("/proc/net/snmp").read_text().splitlines()
    tcp = [line.split() for line in lines if line.startswith("Tcp:")]
    return int(tcp[1][tcp[0].index("ActiveOpens")])


#: ss's name and /proc/net/tcp's code of the TCP states counted.
_TCP_STATES = {"time-wait": "06", "established": "01"}


def time_wait_count(ports: Sequence[int]) -> int:
    """TCP sockets in TIME_WAIT with either end on one of ``ports`` (loopback: both ends)."""
    return tcp_socket_count(ports, "time-wait")


def tcp_socket_count(ports: Sequence[int], state: str) -> int:
    """TCP sockets in ``state`` ("time-wait" or "established") with either end on one of
    ``ports`` (loopback: both ends)."""
    ss = shutil.which("ss")
    if ss is not None:
        # ss asks the kernel over netlink: with tens of thousands of sockets in TIME_WAIT,
        # reading /proc/net/tcp takes most of a second.
        terms = " or ".join(f"sport = :{p} or dport = :{p}" for p in ports)
        done = subprocess.run([ss, "-Htn", "state", state, f"( {terms} )"],
                              capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
        if done.returncode == 0:
            return sum(1 for line in done.stdout.splitlines() if line.strip())
    wanted = {f"{p:04X}" for p in ports}
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if parts[3] != _TCP_STATES[state]:
                continue
            local, remote = parts[1].rsplit(":", 1)[1], parts[2].rsplit(":", 1)[1]
            if local in wanted or remote in wanted:
                count += 1
    return count
