"""Accepting: max-connections, and a connection accepted before a graceful stop that sends its
request only after the stop began."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import pytest

from muxwsgi import classic

from ..servers import ServerProcess, connect, start, until

pytestmark = pytest.mark.slow

HELLO = classic.encode_request(
    {"REQUEST_METHOD": "GET", "PATH_INFO": "/hello", "SERVER_PROTOCOL": "HTTP/1.1"}
)


def answer(sock: socket.socket) -> bytes:
    return b"".join(iter(lambda: sock.recv(65536), b""))


def settled(srv: ServerProcess) -> bool:
    """The readiness probe's connection is gone (it counts too): a figure published after
    its request was served shows no connection."""
    worker = srv.worker()
    return worker["requests"] >= 1 and worker["connections"] == 0


def refused(address: tuple[str, int]) -> bool:
    try:
        connect(address).close()
    except ConnectionRefusedError:
        return True
    return False


def test_max_connections_refuses_past_the_limit_and_gives_slots_back(tmp_path: Path) -> None:
    srv = start("tests.server.apps:app", "--workers", "1", "--max-connections", "2",
                "--stats", f"unix:{tmp_path}/stats.sock", log_dir=tmp_path)  # fmt: skip
    try:
        until(lambda: settled(srv))
        silent = [socket.create_connection(srv.address, timeout=10) for _ in range(2)]
        until(lambda: srv.worker()["connections"] == 2, what="both accepted")
        for sock in silent:
            sock.setblocking(False)
            with pytest.raises(BlockingIOError):  # still open: no bytes, no EOF
                sock.recv(1)
        with socket.create_connection(srv.address, timeout=10) as third:
            third.sendall(HELLO)
            try:
                refused = answer(third)
            except ConnectionResetError:  # closed with the request unread
                refused = b""
            assert refused == b""
        assert "max-connections (2) reached" in srv.log()
        for sock in silent:
            sock.close()
        until(lambda: srv.worker()["connections"] == 0, what="both slots given back")
        # One after the other (served by the thread that writes the response, with the
        # worker idle): each gives its slot back.
        for _ in range(5):
            with socket.create_connection(srv.address, timeout=10) as sock:
                sock.sendall(HELLO)
                assert answer(sock).endswith(b"\r\n\r\nHello, World!")
    finally:
        srv.stop()


def test_connection_waiting_for_its_first_bytes_is_served_through_a_graceful_stop(
    tmp_path: Path,
) -> None:
    srv = start("tests.server.apps:app", "--workers", "1",
                "--stats", f"unix:{tmp_path}/stats.sock", log_dir=tmp_path)  # fmt: skip
    try:
        until(lambda: settled(srv))
        with socket.create_connection(srv.address, timeout=10) as sock:
            until(lambda: srv.worker()["connections"] == 1, what="accepted")  # nothing sent yet
            srv.signal(signal.SIGTERM)
            # The stop began in the worker once it closed its listening socket (the master
            # closes its own at once). Stats publish the worker's status about a second
            # later, which is as long as an idle connection's drain grace lasts.
            until(lambda: refused(srv.address), what="the listening socket closed")
            sock.sendall(HELLO)  # within the drain grace: still owed an answer
            assert answer(sock).endswith(b"\r\n\r\nHello, World!")
        assert srv.wait(15) == 0
    finally:
        srv.stop()


KEEP_ALIVE = b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"


def served_once(sock: socket.socket) -> bytes:
    """Read one keep-alive response to /hello (its body ends the reply), leaving the
    connection open."""
    reply = b""
    while not reply.endswith(b"Hello, World!"):
        chunk = sock.recv(65536)
        assert chunk, f"closed after {reply!r}"
        reply += chunk
    return reply


def test_long_lived_connections_spread_evenly_across_workers(tmp_path: Path) -> None:
    """Connections opened in a burst, as a proxy's keep-alive pool opens them, and held
    open: no worker is left with less than a third of them (without balancing, the worker
    that wakes first takes the whole burst off the shared socket)."""
    srv = start("tests.server.apps:app", "--workers", "2", "--threads", "2",
                "--keepalive-timeout", "120",
                "--stats", f"unix:{tmp_path}/stats.sock", log_dir=tmp_path)  # fmt: skip
    held: list[socket.socket] = []

    def per_worker() -> list[int]:
        workers = srv.stats()["workers"]
        return [w["connections"] for w in workers if w["status"] == "ready"]

    try:
        until(lambda: len(per_worker()) == 2, what="2 workers ready")
        until(lambda: sum(per_worker()) == 0, what="the readiness probe's connection gone")
        held = [socket.create_connection(srv.address, timeout=10) for _ in range(16)]
        for sock in held:
            sock.sendall(KEEP_ALIVE)
        for sock in held:
            assert served_once(sock).startswith(b"HTTP/1.1 200")
        spread = until(lambda: sum(c := per_worker()) == 16 and c, what="16 connections held")
        assert min(spread) >= 16 / 3, spread
    finally:
        for sock in held:
            sock.close()
        srv.stop()
