"""systemd socket activation (LISTEN_FDS, LISTEN_PID) with real processes: the server takes
the socket it is passed instead of binding, serves on it, leaves it open (and its file in place)
when it stops, so a connection made while it restarts is served by the next one (issue 18).

The test plays systemd: it binds the socket, keeps it open across restarts, and starts each
server through a launcher that puts the socket at descriptor 3 and sets LISTEN_PID to its own
pid before it execs ``muxwsgi serve`` (as systemd does between fork and exec).
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from muxwsgi.client import Client
from muxwsgi.server.sockets import LISTEN_FDS_START, activated

from ..servers import ServerProcess, connect, start

pytestmark = pytest.mark.slow

LAUNCHER = """
import os, sys
fd = int(sys.argv[1])
if fd != 3:
    os.dup2(fd, 3)
    os.close(fd)
os.environ["LISTEN_PID"] = str(os.getpid())
os.environ["LISTEN_FDS"] = "1"
os.execv(sys.argv[2], sys.argv[2:])
"""


def activated_server(sock: socket.socket | int, tmp_path: Path, **kw: object) -> ServerProcess:
    """``muxwsgi serve`` passed ``sock`` the way systemd passes it. Its --bind names a unix
    socket that must never be created."""
    fd = sock if isinstance(sock, int) else sock.fileno()
    return start(  # type: ignore[misc]
        "tests.server.apps:app",
        log_dir=tmp_path,
        bind=f"unix:{tmp_path / 'not-bound.sock'}",
        launcher=(sys.executable, "-c", LAUNCHER, str(fd)),
        pass_fds=(fd,),
        **kw,
    )


@pytest.fixture(params=["tcp", "unix"])
def systemd_socket(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[socket.socket]:
    """A listening socket, as a .socket unit's ListenStream= makes it."""
    if request.param == "tcp":
        sock = socket.create_server(("127.0.0.1", 0))
    else:
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(tmp_path / "app.sock"))
        sock.listen(64)
    with sock:
        yield sock


def hello(where: tuple[str, int] | str) -> str:
    url = f"mux+unix://{where}" if isinstance(where, str) else f"mux://{where[0]}:{where[1]}"
    with Client(url) as client:
        return client.get("/hello", timeout=10).text


def test_the_passed_socket_is_served_and_outlives_a_restart(
    systemd_socket: socket.socket, tmp_path: Path
) -> None:
    where: tuple[str, int] | str = systemd_socket.getsockname()
    if isinstance(where, tuple):
        where = (where[0], where[1])
    shown = f"unix:{where}" if isinstance(where, str) else f"{where[0]}:{where[1]}"

    first = activated_server(systemd_socket, tmp_path)
    try:
        assert first.addresses == [shown], first.log()
        assert "socket activation: 1 socket(s)" in first.log()
        assert not (tmp_path / "not-bound.sock").exists()
        assert hello(where) == "Hello, World!"
    finally:
        assert first.stop() == 0
    if isinstance(where, str):
        assert os.path.exists(where), "the unix socket's file belongs to systemd: kept"

    # Between the two servers: the socket still accepts (the kernel queues the connection).
    waiting = connect(where, timeout=30)
    waiting.sendall(b"GET /hello HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n")
    second = activated_server(systemd_socket, tmp_path)
    try:
        reply = b"".join(iter(lambda: waiting.recv(65536), b""))
        assert reply.startswith(b"HTTP/1.1 200 ") and reply.endswith(b"Hello, World!"), reply
        assert hello(where) == "Hello, World!"
    finally:
        waiting.close()
        second.stop()


def test_a_descriptor_that_is_not_a_listening_socket_is_a_clear_error(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    try:
        server = activated_server(read_end, tmp_path, ready=False)
        assert server.wait(20) == 1
        assert (
            "muxwsgi: descriptor 3 passed by the service manager (LISTEN_FDS) is not a socket"
            in server.log()
        )
    finally:
        os.close(read_end)
        os.close(write_end)
    with socket.socket() as unbound:
        server = activated_server(unbound, tmp_path, ready=False)
        assert server.wait(20) == 1
        assert "is not a listening TCP or unix stream socket" in server.log()
    assert not (tmp_path / "not-bound.sock").exists()


def test_listen_fds_for_another_process_are_left_alone() -> None:
    """LISTEN_PID names the process the sockets are for: a child that inherited the variables
    (our workers' subprocesses, say) must not take them; the variables stay for that one."""
    environ = {"LISTEN_PID": str(os.getppid()), "LISTEN_FDS": "1"}
    assert activated(environ) == []
    assert environ == {"LISTEN_PID": str(os.getppid()), "LISTEN_FDS": "1"}
    mine = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "0", "LISTEN_FDNAMES": "", "PATH": "/"}
    assert activated(mine) == []
    assert mine == {"PATH": "/"}  # read once, then removed: workers do not inherit them
    assert LISTEN_FDS_START == 3


def test_without_socket_activation_the_server_binds(tmp_path: Path) -> None:
    """The launcher with LISTEN_PID of another process: --bind is used."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        other = LAUNCHER.replace("str(os.getpid())", "str(os.getppid())")
        server = start(
            "tests.server.apps:app",
            log_dir=tmp_path,
            launcher=(sys.executable, "-c", other, str(sock.fileno())),
            pass_fds=(sock.fileno(),),
        )
        try:
            assert "socket activation" not in server.log()
            assert server.address[1] != sock.getsockname()[1]
            assert hello(server.address) == "Hello, World!"
            server.signal(signal.SIGTERM)
            assert server.wait(20) == 0
        finally:
            server.stop()
