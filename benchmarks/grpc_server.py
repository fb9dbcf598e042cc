"""The gRPC peer: grpcio's sync server doing what ``benchmarks/app.py`` does, as unary calls.

    python -m benchmarks.grpc_server --port 50051 --workers 2 --threads 8

``workers`` processes, each a ``grpc.server`` on a ``ThreadPoolExecutor(max_workers=threads)``,
all listening on the same port (grpcio sets SO_REUSEPORT, and the kernel spreads connections
over them): the workers x threads of every other server. A channel is one HTTP/2 connection,
so one channel is served by one process and its threads, as one mux connection is served by
one muxwsgi worker.

The methods of the generic service ``bench`` take and return bytes, with no serializer (no
protobuf, no generated code): ``/bench/hello``, ``/bench/sleep``, ``/bench/echo`` and
``/bench/slow``, named after the application's paths.

The first process only starts the workers and waits: grpcio must not be imported before a
fork, so each worker imports it after its own.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from typing import Any

from .app import HELLO, SLEEP_SECONDS, SLOW_SECONDS

__all__ = ("SERVICE", "main")

SERVICE = "bench"
#: Streams one connection may have open: the 256-in-flight cell fits on the one channel, as
#: it does on muxwsgi's one connection (--max-concurrent-streams 1024).
MAX_CONCURRENT_STREAMS = 1024


def _hello(request: bytes, _context: Any) -> bytes:
    return HELLO


def _sleep(request: bytes, _context: Any) -> bytes:
    time.sleep(SLEEP_SECONDS)
    return HELLO


def _echo(request: bytes, _context: Any) -> bytes:
    return request


def _slow(request: bytes, _context: Any) -> bytes:
    time.sleep(SLOW_SECONDS)
    return HELLO


def _serve(port: int, threads: int) -> None:
    """One worker: a sync server with ``threads`` threads, until it is signalled."""
    from concurrent.futures import ThreadPoolExecutor

    import grpc

    methods = {"hello": _hello, "sleep": _sleep, "echo": _echo, "slow": _slow}
    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {name: grpc.unary_unary_rpc_method_handler(fn) for name, fn in methods.items()},
    )
    server = grpc.server(
        ThreadPoolExecutor(max_workers=threads),
        handlers=(handler,),
        options=(("grpc.max_concurrent_streams", MAX_CONCURRENT_STREAMS),),
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.grpc_server")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=8)
    args = ap.parse_args(argv)
    children: list[int] = []
    for _ in range(args.workers):
        pid = os.fork()
        if pid == 0:
            try:
                _serve(args.port, args.threads)
            finally:
                os._exit(1)
        children.append(pid)

    def stop(signum: int, frame: Any) -> None:
        _terminate(children)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # A worker that dies takes the others with it: a server short of workers would measure
    # something else.
    os.wait()
    _terminate(children)
    return 1


def _terminate(children: list[int]) -> None:
    for child in children:
        try:
            os.kill(child, signal.SIGTERM)
        except ProcessLookupError:
            pass


if __name__ == "__main__":
    sys.exit(main())
