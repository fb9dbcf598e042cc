"""Start real `muxwsgi serve` processes for tests: 127.0.0.1 or unix sockets only, their own
process group, bounded in time, stopped by their own pid. And :func:`until`, the one way a
test waits for a state: polling it, never a fixed sleep."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[1]
_LISTENING = re.compile(r"listening on (\S+)")
_STATS = re.compile(r"stats on (\S+)")
T = TypeVar("T")


def until(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.05,
    *,
    what: str = "",
    ignore: tuple[type[Exception], ...] = (),
) -> T:
    """Call ``predicate`` every ``interval`` seconds until it returns something true, and
    return that. An exception listed in ``ignore`` counts as not yet; any other propagates at
    once (a predicate raises to give up early, e.g. when the process it waits for exited).

    Raises TimeoutError, naming ``what`` and the last value (or exception), once ``timeout``
    passes: a bound for a test that would otherwise hang, never a measurement."""
    deadline = time.monotonic() + timeout
    while True:
        last: object
        try:
            last = predicate()
            if last:
                return last
        except ignore as exc:
            last = exc
        if time.monotonic() > deadline:
            raise TimeoutError(f"not {what or 'true'} after {timeout:g} s; last: {last!r}")
        time.sleep(interval)


def connect(address: tuple[str, int] | str, timeout: float = 2.0) -> socket.socket:
    """A connected socket: TCP to (host, port), or a unix socket at a path."""
    if isinstance(address, tuple):
        return socket.create_connection(address, timeout=timeout)
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(timeout)
    try:
        sock.connect(address)
    except OSError:
        sock.close()
        raise
    return sock


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

    @property
    def stats_address(self) -> tuple[str, int] | str:
        """Where ``--stats`` listens, as the log says: (host, port), or a unix socket's path."""
        found = _STATS.search(self.log())
        assert found, "started without --stats"
        where = found[1]
        host, _, port = where.rpartition(":")
        return where[5:] if where.startswith("unix:") else (host.strip("[]"), int(port))

    def stats(self) -> dict[str, Any]:
        """The stats endpoint's JSON document (server/stats.py); the server must have been
        started with ``--stats``. The workers' figures in it are published about once a
        second: wait for a value (:func:`until`), never for a change that may predate it."""
        with connect(self.stats_address, timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: stats\r\n\r\n")
            reply = b"".join(iter(lambda: sock.recv(65536), b""))
        doc: dict[str, Any] = json.loads(reply.partition(b"\r\n\r\n")[2])
        return doc

    def worker(self) -> dict[str, Any]:
        """The stats of the only worker (a server started with ``--workers 1``)."""
        worker: dict[str, Any]
        (worker,) = self.stats()["workers"]
        return worker

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

    def accepts() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(logs())
        connect(("127.0.0.1", port), timeout=1).close()
        return True

    try:
        until(accepts, timeout, ignore=(OSError,))
    except TimeoutError:
        raise RuntimeError(logs()) from None


def wait_ready(address: tuple[str, int] | str, timeout: float = 20.0) -> None:
    """Until an HTTP request to /hello is answered (a worker is accepting)."""

    def answers() -> bool:
        with connect(address) as sock:
            sock.sendall(b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            return sock.recv(64).startswith(b"HTTP/1.1 ")

    until(answers, timeout, what="answered", ignore=(OSError,))


def start(
    app: str = "tests.server.apps:app",
    *args: str,
    log_dir: Path,
    bind: str | None = "127.0.0.1:0",
    ready: bool = True,
    timeout: float = 20.0,
    watch: Path | None = None,
    launcher: Sequence[str] = (),
    pass_fds: Sequence[int] = (),
) -> ServerProcess:
    """Start a server and wait until it listens (its log, or ``watch``, says where).
    ``bind`` None: the addresses are in ``args``. ``launcher`` runs first and is given the
    server's command line to exec, with the descriptors ``pass_fds`` (socket activation)."""
    log_path = log_dir / f"server-{time.monotonic_ns()}.log"
    bind_args = ("--bind", bind) if bind is not None else ()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*launcher, sys.executable, "-m", "muxwsgi", "serve", app, *bind_args, *args],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped with killpg, never by name
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            pass_fds=pass_fds,
        )
    server = ServerProcess(proc, log_path)

    def listening() -> bool:
        text = server.log() if watch is None or not watch.exists() else watch.read_text()
        server.addresses = _LISTENING.findall(text)
        return bool(server.addresses) or proc.poll() is not None

    try:
        until(listening, timeout, 0.02)
    except TimeoutError:
        pass
    if not server.addresses:
        if ready:
            server.stop()
            raise RuntimeError(f"server did not start:\n{server.log()}")
        return server
    if ready:
        first = server.addresses[0]
        target = first[5:] if first.startswith("unix:") else server.address
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
