"""The fleet scenario's servers: N muxwsgi backends on 127.0.0.2, 127.0.0.3, ... (one port,
as the pods behind a Kubernetes headless Service), each in its own process group, the last one
10x slower (its /fleet waits 100 ms, the others' 10 ms). The load generator's client reaches
them through one host name whose resolver answers their addresses, so what is measured is the
client's balancing: p50/p99 and the share of the requests per backend."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .procs import ServerProcess
from .run import Options
from .targets import APP, HTTP_PROBE, ROOT

__all__ = ("FAST_SECONDS", "SLOW_SECONDS", "running_fleet")

FAST_SECONDS = 0.010
SLOW_SECONDS = FAST_SECONDS * 10


def _common_port(addresses: list[str]) -> int:
    """A port nobody listens on at any of ``addresses``."""
    for _ in range(20):
        with socket.socket() as probe:
            probe.bind((addresses[0], 0))
            port = int(probe.getsockname()[1])
        try:
            for address in addresses[1:]:
                with socket.socket() as other:
                    other.bind((address, port))
            return port
        except OSError:
            continue
    raise RuntimeError(f"no port free on all of {', '.join(addresses)}")


def _backend(
    address: str, port: int, seconds: float, options: Options, run_dir: Path
) -> ServerProcess:
    """Start one backend; return once it answers an HTTP probe (30 s at most)."""
    log_path = run_dir / f"fleet-{address}.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "muxwsgi", "serve", APP, "--bind", f"{address}:{port}",
             "--workers", "1", "--threads", str(options.threads), "--log-level", "warning"],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "BENCH_FLEET_SECONDS": str(seconds)},
        )  # fmt: skip
    server = ServerProcess(f"fleet-{address}", proc, log_path)
    deadline = time.monotonic() + 30
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            with socket.create_connection((address, port), timeout=1) as sock:
                sock.sendall(HTTP_PROBE)
                if sock.recv(16).startswith(b"HTTP/1.1 "):
                    return server
        except OSError:
            time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"fleet backend {address}:{port} did not start:\n{server.log_tail()}")


@contextmanager
def running_fleet(
    count: int, options: Options, run_dir: Path
) -> Iterator[tuple[list[ServerProcess], str, list[str]]]:
    """Start ``count`` backends; yield them, the URL the client uses ("fleet.bench" resolves
    to them through the load generator's resolver) and their addresses; stop them all."""
    addresses = [f"127.0.0.{2 + i}" for i in range(count)]
    port = _common_port(addresses)
    started: list[ServerProcess] = []
    try:
        for index, address in enumerate(addresses):
            slow = index == count - 1
            seconds = SLOW_SECONDS if slow else FAST_SECONDS
            started.append(_backend(address, port, seconds, options, run_dir))
        yield started, f"mux://fleet.bench:{port}", addresses
    finally:
        for server in started:
            server.stop()
