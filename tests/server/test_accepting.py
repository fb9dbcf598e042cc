"""Accepting: max-connections, a connection accepted before a graceful stop that sends its
request only after the stop began, and how the workers share long-lived connections."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from pathlib import Path
from typing import cast

import pytest

from muxwsgi import classic
from muxwsgi.server.scoreboard import Scoreboard
from muxwsgi.server.sockets import Acceptor
from muxwsgi.server.worker import new_event_loop

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


def hold(address: tuple[str, int], count: int) -> list[socket.socket]:
    """``count`` keep-alive connections opened at once, each served one request and held."""
    held = [socket.socket() for _ in range(count)]
    for sock in held:  # connected in a tight loop: a burst, as a proxy opens them
        sock.settimeout(20)
        sock.connect(address)
    for sock in held:
        sock.sendall(KEEP_ALIVE)
    for sock in held:
        assert served_once(sock).startswith(b"HTTP/1.1 200")
    return held


def connections(srv: ServerProcess) -> dict[int, int]:
    """Connections per ready worker (by pid), as the stats endpoint last heard."""
    return {w["pid"]: w["connections"] for w in srv.stats()["workers"] if w["status"] == "ready"}


def holding(srv: ServerProcess, total: int) -> dict[int, int]:
    """Wait until the ready workers' figures add up to ``total``; return them."""
    return until(lambda: sum((c := connections(srv)).values()) == total and c,
                 what=f"{total} connections held")  # fmt: skip


def start_two(tmp_path: Path, *args: str) -> ServerProcess:
    srv = start("tests.server.apps:app", "--workers", "2", "--threads", "2",
                "--keepalive-timeout", "120", *args,
                "--stats", f"unix:{tmp_path}/stats.sock", log_dir=tmp_path)  # fmt: skip
    until(lambda: len(connections(srv)) == 2, what="2 workers ready")
    holding(srv, 0)  # the readiness probe's connection gone
    return srv


def test_long_lived_connections_spread_evenly_across_workers(tmp_path: Path) -> None:
    """Connections opened in a burst, as a proxy's keep-alive pool opens them, and held
    open: no worker is left with less than a third of them (without balancing, the worker
    that wakes first takes the whole burst off the shared socket)."""
    srv = start_two(tmp_path)
    held: list[socket.socket] = []
    try:
        held = hold(srv.address, 16)
        spread = sorted(holding(srv, 16).values())
        assert spread[0] >= 16 / 3, spread
    finally:
        for sock in held:
            sock.close()
        srv.stop()


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_one_worker_keeps_serving_after_it_accepted(tmp_path: Path, loop_name: str) -> None:
    """The worker accepts, then finds no other connection waiting: its event loop goes on
    (it must not wait in accept() for the next one) and answers on the connection."""
    srv = start("tests.server.apps:app", "--workers", "1", "--loop", loop_name,
                log_dir=tmp_path)  # fmt: skip
    try:
        with connect(srv.address, timeout=20) as sock:
            for _ in range(2):
                sock.sendall(KEEP_ALIVE)
                assert served_once(sock).startswith(b"HTTP/1.1 200")
    finally:
        srv.stop()


def test_a_worker_over_its_share_still_accepts_when_the_other_is_stuck(tmp_path: Path) -> None:
    """The least loaded worker's event loop is stopped: the other, over its share, leaves
    each new connection to it for a moment, then takes the connection itself."""
    srv = start_two(tmp_path, "--heartbeat-timeout", "300")
    held: list[socket.socket] = []
    stuck = 0
    try:
        held = hold(srv.address, 4)
        figures = holding(srv, 4)
        stuck = min(figures, key=lambda pid: figures[pid])
        os.kill(stuck, signal.SIGSTOP)
        # Served by the other worker, at least two of them over its share.
        held += hold(srv.address, 3)
    finally:
        if stuck:
            os.kill(stuck, signal.SIGCONT)
        for sock in held:
            sock.close()
        srv.stop()


def test_balance_figures() -> None:
    board = Scoreboard(4)
    first, second = board.balance(0), board.balance(1)
    assert not first.over_share(0)  # alone
    assert not second.over_share(0)
    assert first.over_share(1)  # one more than the least loaded
    assert not second.over_share(1)  # now even
    assert not first.over_share(1)
    second.withdraw()  # draining: it no longer holds the others back
    assert not first.over_share(5)
    third = board.balance(2)
    assert not third.over_share(0)  # a new worker, empty
    assert first.over_share(5)  # the old one now leaves new connections to it
    board.clear(2)  # its process is gone
    assert not first.over_share(5)


class Answer(asyncio.Protocol):
    """Answers "ok" to the first bytes and closes: a connection per request."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.transport.write(b"ok")
        self.transport.close()


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_acceptor_leaves_churning_connections_to_the_loop_and_takes_them_back(
    loop_name: str,
) -> None:
    """More connections accepted in a second than held: the loop's own server accepts
    (and counts them); a quiet second: the acceptor again. Every request is answered
    throughout, and closing refuses new connections."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    address = listener.getsockname()

    async def request() -> bytes:
        reader, writer = await asyncio.open_connection(*address)
        writer.write(b"?")
        answer = await reader.read()
        writer.close()
        return answer

    async def main() -> None:
        loop = asyncio.get_running_loop()
        acceptor = Acceptor(loop, listener, Answer, Scoreboard(2).balance(0), lambda: 0,
                            backlog=16)  # fmt: skip
        acceptor.start()
        assert [await request() for _ in range(3)] == [b"ok"] * 3
        acceptor.tick()
        assert acceptor.direct
        assert [await request() for _ in range(3)] == [b"ok"] * 3
        acceptor.tick()  # the loop's server counted them: still churning
        assert acceptor.direct
        acceptor.tick()  # a quiet second
        assert not acceptor.direct
        assert await request() == b"ok"
        acceptor.close()
        with pytest.raises(ConnectionRefusedError):
            await request()

    loop = new_event_loop(loop_name)
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
