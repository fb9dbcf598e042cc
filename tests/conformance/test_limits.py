"""PROTOCOL.md §10: flood limits (the server's defaults) and timeouts (a server with short
ones: conftest.SLOW_SERVER_ARGS)."""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator

import pytest

from ..servers import ServerProcess
from .conftest import Connector
from .peer import Peer, spec
from .wire import (
    E,
    S,
    T,
    data,
    frame,
    get,
    headers,
    ping,
    preface,
    request_vars,
    reset,
    settings,
)

pytestmark = pytest.mark.slow


#: The default bursts of PROTOCOL.md §10, and a frame that spends each (n is the frame's index).
FLOODS: dict[str, tuple[int, Callable[[int], bytes]]] = {
    "reset": (1000, lambda n: reset(1, E.CANCEL)),
    "ping": (50, lambda n: ping(struct.pack("<Q", n))),
    "settings": (20, lambda n: settings()),
    "glitch-unknown-type": (1000, lambda n: frame(0x30)),
    "glitch-empty-data": (1000, lambda n: data(3, b"")),
    "glitch-unsolicited-ping-ack": (1000, lambda n: ping(struct.pack("<Q", n), ack=True)),
    "glitch-closed-stream": (1000, lambda n: data(1, b"late")),
    "glitch-stream-error": (1000, lambda n: headers(5 + 2 * n, [1])),
}


def flood_setup(peer: Peer) -> None:
    """Stream 1 served and closed; stream 3 open, its body still to come."""
    assert peer.request(1).status == 200
    peer.send(headers(3, request_vars("POST", "/echo"), end=False))
    peer.barrier()


@spec("L-1")
@pytest.mark.parametrize("kind", FLOODS)
def test_L1_more_than_twice_a_burst_ends_the_connection(peer: Peer, kind: str) -> None:
    burst, make = FLOODS[kind]
    flood_setup(peer)
    peer.send(*[make(n) for n in range(3 * burst)])
    peer.connection_error(E.ENHANCE_YOUR_CALM)


@spec("L-1")
@pytest.mark.parametrize("kind", FLOODS)
def test_L1_half_a_burst_is_fine(peer: Peer, kind: str) -> None:
    burst, make = FLOODS[kind]
    flood_setup(peer)
    peer.send(*[make(n) for n in range(burst // 2)])
    peer.barrier()
    peer.send(data(3, b"still here", end=True))
    assert peer.response(3).body == b"still here"


# ---------------------------------------------------------------- timeouts
#
# Every timeout case waits for the server's clock, so they all start at once, on connections
# to the server with short timeouts, before the first of them runs (``timed``); each case then
# checks its own connection.


def _stuck(peer: Peer) -> None:
    peer.send(get(1, "/big?n=1000"))


def _reopened(peer: Peer) -> None:
    peer.send(get(1, "/big?n=1000"))
    peer.expect(T.DATA, 1)
    peer.send(settings({S.INITIAL_WINDOW_SIZE: 5000}))


def _frame_begun(cut: slice) -> Callable[[Peer], None]:
    def begin(peer: Peer) -> None:
        assert peer.request(1).status == 200
        peer.send(headers(3, request_vars())[cut])

    return begin


def _idle(peer: Peer) -> None:
    assert peer.request(1).status == 200


#: name -> (our settings, connect with our PREFACE and ACK?, what the case sends first)
SCENARIOS: dict[str, tuple[dict[int, int] | None, str, Callable[[Peer], None]]] = {
    "nothing": (None, "raw", lambda peer: None),
    "partial-preface": (None, "raw", lambda peer: peer.send(preface()[:5])),
    "never-acked": (None, "no-ack", lambda peer: None),
    "frame-header": (None, "full", _frame_begun(slice(0, 5))),
    "frame-payload": (None, "full", _frame_begun(slice(0, -1))),
    "idle-body": (None, "full", lambda peer: peer.send(
        headers(1, request_vars("POST", "/echo", 10), end=False), data(1, b"12345"))),
    "idle": (None, "full", _idle),
    "busy": (None, "full", lambda peer: peer.send(get(1, "/stream?n=2&size=1&delay=3.5"))),
    "stuck": ({S.INITIAL_WINDOW_SIZE: 0}, "full", _stuck),
    "reopened": ({S.INITIAL_WINDOW_SIZE: 100}, "full", _reopened),
}  # fmt: skip


@pytest.fixture(scope="module")
def timed(slow_server: ServerProcess) -> Iterator[dict[str, Peer]]:
    peers: dict[str, Peer] = {}
    for name, (settings_, how, begin) in SCENARIOS.items():
        address = slow_server.address
        if how == "raw":
            peer = Peer(address)
        else:
            peer = Peer.connect(address, settings_, answer=how == "full")
        begin(peer)
        peers[name] = peer
    yield peers
    for peer in peers.values():
        peer.close()


@pytest.fixture
def scenario(timed: dict[str, Peer], connect_slow: Connector) -> Callable[[str], Peer]:
    return lambda name: connect_slow.adopt(timed[name])


@spec("L-3")
def test_L3_a_window_stuck_at_0_resets_the_stream(scenario: Callable[[str], Peer]) -> None:
    peer = scenario("stuck")
    assert peer.response(1).reset == E.CANCEL
    assert peer.streams[1].body == b""


@spec("L-3", "E-7", "W-2")
def test_L3_a_stream_with_an_open_window_is_not_reset(scenario: Callable[[str], Peer]) -> None:
    peer = scenario("reopened")
    reply = peer.response(1)
    assert (reply.reset, len(reply.body)) == (None, 1000)


@spec("L-4")
def test_L4_nothing_sent_is_closed(scenario: Callable[[str], Peer]) -> None:
    assert scenario("nothing").read_raw() == b""


@spec("L-4")
def test_L4_a_preface_that_does_not_complete_is_closed(scenario: Callable[[str], Peer]) -> None:
    frames = scenario("partial-preface").closed()
    assert [f.type for f in frames][:1] == [T.PREFACE]  # then, at most a GOAWAY
    assert {f.type for f in frames[1:]} <= {T.WINDOW_UPDATE, T.GOAWAY}


@spec("E-9", "L-4")
def test_E9_a_preface_never_acknowledged(scenario: Callable[[str], Peer]) -> None:
    assert scenario("never-acked").connection_error(E.SETTINGS_TIMEOUT) == 0


@spec("L-4")
@pytest.mark.parametrize("begun", ["frame-header", "frame-payload"])
def test_L4_a_frame_that_does_not_complete(scenario: Callable[[str], Peer], begun: str) -> None:
    assert scenario(begun).connection_error(E.PROTOCOL_ERROR) == 1


@spec("L-4")
def test_L4_an_idle_body_ends_its_stream(scenario: Callable[[str], Peer]) -> None:
    reply = scenario("idle-body").response(1)
    assert reply.status != 200 or reply.reset is not None


@spec("L-4")
def test_L4_an_idle_connection_gets_goaway(scenario: Callable[[str], Peer]) -> None:
    assert scenario("idle").connection_error(E.NO_ERROR) == 1


@spec("L-4")
def test_L4_a_connection_with_a_stream_open_is_not_idle(scenario: Callable[[str], Peer]) -> None:
    assert scenario("busy").response(1).body == b"ab"  # it took longer than the idle timeout
