"""Servers for the conformance cases, and the ``connect`` fixture every case uses.

Each case opens its own connections through ``connect``; when the case ends, every frame those
connections received must have passed the sender checks of :mod:`.peer`, and a fresh
connection must be served by the same worker process (the server survived the case, h2spec's
shape).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ..servers import ServerProcess, start
from .peer import Peer

APP = "tests.conformance.app:app"
#: The shared server: defaults as shipped, except a low MAX_CONCURRENT_STREAMS (cheap to reach)
#: and threads to spare for the cases that hold some.
SERVER_ARGS = ("--threads", "24", "--max-concurrent-streams", "16")
#: The server for the timeout cases: every timeout short (the checks run about once a second).
SLOW_SERVER_ARGS = (
    "--threads", "8", "--header-timeout", "1", "--body-timeout", "1", "--idle-timeout", "1",
    "--stuck-window-timeout", "1",
)  # fmt: skip


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


class Connector:
    """Opens connections to one server for a case, and checks them when the case ends."""

    def __init__(self, srv: ServerProcess) -> None:
        self.srv = srv
        self.peers: list[Peer] = []
        self.workers = srv.worker_pids()

    def __call__(
        self, settings: dict[int, int] | None = None, *, answer: bool = True, preface: bool = True
    ) -> Peer:
        address = self.srv.address
        peer = Peer.connect(address, settings, answer=answer) if preface else Peer(address)
        return self.adopt(peer)

    def adopt(self, peer: Peer) -> Peer:
        """Check ``peer`` (opened elsewhere) with this case's connections."""
        self.peers.append(peer)
        return peer

    def finish(self) -> None:
        for peer in self.peers:
            peer.close()
        violations = [v for peer in self.peers for v in peer.violations]
        assert violations == [], f"the server broke a sender's rule: {violations}"
        served(self.srv, self.workers)


@pytest.fixture
def connect(server: ServerProcess) -> Iterator[Connector]:
    """``connect(settings=None, answer=True, preface=True)``: a new connection to the shared
    server; with ``preface``, our PREFACE is sent and the server's read (and ACKed if
    ``answer``)."""
    connector = Connector(server)
    yield connector
    connector.finish()


@pytest.fixture
def connect_slow(slow_server: ServerProcess) -> Iterator[Connector]:
    """``connect`` to the server with short timeouts."""
    connector = Connector(slow_server)
    yield connector
    connector.finish()


@pytest.fixture
def peer(connect: Connector) -> Peer:
    """A connection after the handshake with default settings."""
    return connect()
