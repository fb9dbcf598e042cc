"""Fixtures for the client tests: our real server, the real uWSGI for classic interop, and a
server made of the core and one socket (to see what the client puts on the wire)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from muxwsgi import (
    MAX_WINDOW,
    Connection,
    ConnectionConfig,
    RequestReceived,
    Role,
    Settings,
)

from ..servers import ROOT, ServerProcess, start, wait_listening


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start("tests.server.apps:app", "--threads", "16", "--max-concurrent-streams", "256",
                log_dir=tmp_path_factory.mktemp("client-server"))  # fmt: skip
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def mux_url(server: ServerProcess) -> str:
    host, port = server.address
    return f"mux://{host}:{port}"


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server of the test's own (to reload, kill or limit)."""
    srv = start("tests.server.apps:app", "--threads", "16", log_dir=tmp_path)
    yield srv
    srv.stop()


def uwsgi_binary() -> str:
    found = shutil.which("uwsgi") or str(Path(sys.executable).with_name("uwsgi"))
    if not os.path.exists(found):
        raise RuntimeError("the real uWSGI is needed: pip install uwsgi (the test extra has it)")
    return found


@pytest.fixture(scope="session")
def uwsgi_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """The real uWSGI serving tests/server/apps.py over classic uwsgi on 127.0.0.1."""
    log = tmp_path_factory.mktemp("uwsgi") / "uwsgi.log"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [uwsgi_binary(), "--socket", f"127.0.0.1:{port}", "--wsgi-file",
             str(ROOT / "tests" / "server" / "apps.py"), "--callable", "app", "--master",
             "--processes", "1", "--threads", "4", "--die-on-term", "--pythonpath", str(ROOT)],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        wait_listening(port, proc, 20, lambda: "uWSGI did not start:\n" + log.read_text())
        yield "127.0.0.1", port
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)


@dataclass
class CoreServer:
    """One connection served by the sans-IO core over a blocking socket, in a thread.

    At the first request it records the client's windows as the core saw them arrive
    (``seen``); then it answers ``200 ok``, or, when ``stall``, stops reading until the test
    ends (a peer that takes no more bytes). It gives up after ``PATIENCE`` seconds either way.
    Its own windows are the largest, so that only the socket holds a client's writes back.
    """

    PATIENCE = 20.0

    stall: bool
    listener: socket.socket = field(default_factory=lambda: socket.create_server(("127.0.0.1", 0)))
    seen: dict[str, int] = field(default_factory=dict)
    released: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"mux://127.0.0.1:{self.listener.getsockname()[1]}"

    def serve(self) -> None:
        self.listener.settimeout(self.PATIENCE)
        try:
            conn, _ = self.listener.accept()
            with conn:
                conn.settimeout(self.PATIENCE)
                self._serve(conn)
        except OSError:
            pass  # the client left, or PATIENCE ran out

    def _serve(self, conn: socket.socket) -> None:
        config = ConnectionConfig(
            settings=Settings(initial_window_size=MAX_WINDOW), connection_window_size=MAX_WINDOW
        )
        core = Connection(Role.SERVER, config)
        while data := conn.recv(1 << 16):
            for event in core.receive_data(data):
                if type(event) is RequestReceived:
                    self.seen.setdefault("stream_window", core.remote_settings.initial_window_size)
                    self.seen.setdefault("connection_window", core.outbound_connection_window)
                    if self.stall:
                        self.released.wait(self.PATIENCE)
                        return
                    core.send_response(event.stream_id, 200, [("Content-Length", "2")],
                                       body=b"ok", end_stream=True)  # fmt: skip
            conn.sendall(core.data_to_send())


def _core_server(stall: bool) -> Iterator[CoreServer]:
    server = CoreServer(stall)
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.released.set()
        server.listener.close()
        thread.join(CoreServer.PATIENCE)


@pytest.fixture
def core_server() -> Iterator[CoreServer]:
    """A CoreServer that answers every request ``200 ok``."""
    yield from _core_server(stall=False)


@pytest.fixture
def stalled_server() -> Iterator[CoreServer]:
    """A CoreServer that stops reading at the first request."""
    yield from _core_server(stall=True)
