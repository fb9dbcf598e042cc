"""Start real `muxwsgi serve` processes for tests: 127.0.0.1 or unix sockets only, their own
process group, bounded in time, stopped by their own pid."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_LISTENING = re.compile(r"listening on (\S+)")


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    log_path: Path
    addresses: list[str] = field(default_factory=list)

    @property
    def address(self) -> tuple[str, int]:
        host, _, port = self.addresses[0].rpartition(":")
        return host.strip("[]"), int(port)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        os.kill(self.proc.pid, signum)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 15.0) -> int | None:
        """TERM the master, wait; then kill the whole process group whatever happened."""
        code = None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait(5)
        return code if code is not None else self.proc.returncode

    def worker_pids(self) -> list[int]:
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        try:
            return [int(p) for p in children.read_text().split()]
        except OSError:
            return []


def wait_listening(
    port: int, proc: subprocess.Popen[bytes], timeout: float, logs: Callable[[], str]
) -> None:
    """Until something accepts on 127.0.0.1:``port``. Raises RuntimeError with ``logs()`` if
    ``proc`` exits or ``timeout`` passes first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(logs()) from None
            time.sleep(0.05)


def wait_ready(address: tuple[str, int] | str, timeout: float = 20.0) -> None:
    """Until an HTTP request to /hello is answered (a worker is accepting)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if isinstance(address, str):
                sock = socket.socket(socket.AF_UNIX)
                sock.connect(address)
            else:
                sock = socket.create_connection(address, timeout=2)
            with sock:
                sock.settimeout(2)
                sock.sendall(b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                if sock.recv(64).startswith(b"HTTP/1.1 "):
                    return
        except OSError as exc:
            last = exc
        time.sleep(0.05)
    raise TimeoutError(f"server not ready in {timeout}s: {last}")


def start(
    app: str = "tests.server.apps:app",
    *args: str,
    log_dir: Path,
    bind: str = "127.0.0.1:0",
    ready: bool = True,
    timeout: float = 20.0,
    watch: Path | None = None,
) -> ServerProcess:
    """Start a server and wait until it listens (its log, or ``watch``, says where)."""
    log_path = log_dir / f"server-{time.monotonic_ns()}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "muxwsgi", "serve", app, "--bind", bind, *args],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped with killpg, never by name
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    server = ServerProcess(proc, log_path)
    deadline = time.monotonic() + timeout
    while not server.addresses:
        if proc.poll() is not None or time.monotonic() > deadline:
            if ready:
                server.stop()
                raise RuntimeError(f"server did not start:\n{server.log()}")
            return server
        text = server.log() if watch is None or not watch.exists() else watch.read_text()
        server.addresses = _LISTENING.findall(text)
        time.sleep(0.02)
    if ready:
        target = bind[5:] if bind.startswith("unix:") else server.address
        try:
            wait_ready(target, timeout)
        except TimeoutError:
            server.stop()
            raise RuntimeError(f"server not ready:\n{server.log()}") from None
    return server


@contextmanager
def running(
    app: str = "tests.server.apps:app", *args: str, log_dir: Path, **kw: object
) -> Iterator[ServerProcess]:
    server = start(app, *args, log_dir=log_dir, **kw)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.stop()
