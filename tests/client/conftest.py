"""Fixtures for the client tests: our real server, and the real uWSGI for classic interop."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

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
