"""PROTOCOL.md §4.2: graceful shutdown. Each case stops a server of its own (SIGTERM to its
master, by pid) and checks that it exits cleanly, instead of checking that it still serves."""

from __future__ import annotations

import signal
import struct
from collections.abc import Iterator

import pytest

from ..servers import ServerProcess, start
from .conftest import APP
from .peer import Peer, spec
from .wire import ACK, MAX_STREAM_ID, E, T, get, ping

pytestmark = pytest.mark.slow


@pytest.fixture
def stopping(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Peer]]:
    """A server of its own, a connection with stream 1 running (/sleep), and SIGTERM sent."""
    srv = start(APP, "--threads", "4", log_dir=tmp_path_factory.mktemp("conformance-stop"))
    peer = Peer.connect(srv.address)
    peer.answer = False  # the case answers the server's PING itself
    try:
        peer.send(get(1, "/sleep?s=1"))
        peer.ping_pong()  # stream 1 reached the server before the signal
        srv.signal(signal.SIGTERM)
        yield srv, peer
        assert peer.violations == []
        peer.close()  # no lingering for the server's close
        assert srv.wait(30) == 0, srv.log()
    finally:
        peer.close()
        srv.stop()


def goaway(peer: Peer) -> tuple[int, int]:
    f = peer.expect(T.GOAWAY)
    last, code = struct.unpack_from("<II", f.payload)
    return last, code


@spec("S-5", "S-4", "K-1")
def test_S5_graceful_shutdown_in_two_steps(stopping: tuple[ServerProcess, Peer]) -> None:
    _, peer = stopping
    assert goaway(peer) == (MAX_STREAM_ID, E.NO_ERROR)  # first: stop opening streams
    drain = peer.expect(T.PING)  # then a round trip
    peer.send(get(3))  # opened before the client saw the first GOAWAY: still served
    peer.send(ping(drain.payload, ack=True))
    last, code = goaway(peer)
    assert (last, code) == (3, E.NO_ERROR)
    assert peer.response(3).status == 200
    assert peer.response(1).body == b"slept"  # streams at or below it finish
    peer.closed()


@spec("S-1")
def test_S1_a_stream_above_the_last_stream_id_is_refused(
    stopping: tuple[ServerProcess, Peer],
) -> None:
    _, peer = stopping
    goaway(peer)
    drain = peer.expect(T.PING)
    assert not drain.flags & ACK
    peer.send(ping(drain.payload, ack=True))
    last, _ = goaway(peer)
    assert last == 1
    peer.send(get(3))
    assert peer.response(3).reset == E.REFUSED_STREAM
    assert peer.response(1).body == b"slept"
    peer.closed()
