"""Servers for the conformance cases, and the ``connect`` fixture every case uses.

Each case opens its own connections through ``connect``; when the case ends, every frame those
connections received must have passed the sender checks of :mod:`.peer`, and a fresh
connection must be served by the same worker process (the server survived the case, h2spec's
shape).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from ..servers import ServerProcess, start
from .peer import Peer

APP = "tests.conformance.app:app"
#: The shared server: defaults as shipped, except a low MAX_CONCURRENT_STREAMS (cheap to reach)
#: and threads to spare for the cases that hold some.
SERVER_ARGS = ("--threads", "24", "--max-concurrent-streams", "16")
#: The server for the timeout cases: every timeout short (the checks run about once a second).
TIMEOUTS = 1.0
SLOW_SERVER_ARGS = (
    "--threads", "8", "--header-timeout", "1", "--body-timeout", "1", "--idle-timeout", "1",
    "--stuck-window-timeout", "1",
)  # fmt: skip

Connect = Callable[..., Peer]


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start(APP, *SERVER_ARGS, log_dir=tmp_path_factory.mktemp("conformance"))
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def slow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start(APP, *SLOW_SERVER_ARGS, log_dir=tmp_path_factory.mktemp("conformance-slow"))
    yield srv
    srv.stop()


def served(srv: ServerProcess, workers: list[int]) -> None:
    """A fresh connection gets an answer, from the same worker as before the case."""
    peer = Peer.connect(srv.address)
    try:
        reply = peer.request(1, "/hello")
        assert (reply.status, reply.body) == (200, b"Hello, conformance!")
        assert peer.violations == []
    finally:
        peer.close()
    assert srv.worker_pids() == workers, "the worker was replaced: it crashed during the case"


def _connector(request: pytest.FixtureRequest, srv: ServerProcess) -> Iterator[Connect]:
    peers: list[Peer] = []
    workers = srv.worker_pids()

    def connect(
        settings: dict[int, int] | None = None, *, answer: bool = True, preface: bool = True
    ) -> Peer:
        peer = Peer.connect(srv.address, settings, answer=answer) if preface else Peer(srv.address)
        peers.append(peer)
        return peer

    yield connect
    for peer in peers:
        peer.close()
    violations = [v for peer in peers for v in peer.violations]
    assert violations == [], f"the server broke a sender's rule: {violations}"
    served(srv, workers)


@pytest.fixture
def connect(request: pytest.FixtureRequest, server: ServerProcess) -> Iterator[Connect]:
    """``connect(settings=None, answer=True, preface=True)``: a new connection to the shared
    server; with ``preface``, our PREFACE is sent and the server's read (and ACKed if
    ``answer``)."""
    yield from _connector(request, server)


@pytest.fixture
def connect_slow(request: pytest.FixtureRequest, slow_server: ServerProcess) -> Iterator[Connect]:
    """``connect`` to the server with short timeouts."""
    yield from _connector(request, slow_server)


@pytest.fixture
def peer(connect: Connect) -> Peer:
    """A connection after the handshake with default settings."""
    return connect()
