"""PROTOCOL.md §8 and §9: error codes and flow control."""

from __future__ import annotations

import pytest

from .conftest import Connector
from .peer import Peer, spec
from .wire import (
    CONNECTION_WINDOW,
    MAX_WINDOW,
    E,
    S,
    T,
    data,
    get,
    headers,
    request_vars,
    reset,
    u32,
    window_update,
)

pytestmark = pytest.mark.slow


def receive_window(peer: Peer) -> int:
    """The server's connection receive window: 65535 plus its WINDOW_UPDATEs on stream 0."""
    peer.barrier()
    updates = [f for f in peer.log if f.type == T.WINDOW_UPDATE and f.stream_id == 0]
    return CONNECTION_WINDOW + sum(u32(f.payload) for f in updates)


def upload(stream_id: int, size: int, frame_size: int, end: bool = False) -> list[bytes]:
    """``size`` body bytes on a stream, in frames of at most ``frame_size``."""
    frames = []
    for offset in range(0, size, frame_size):
        chunk = min(frame_size, size - offset)
        frames.append(data(stream_id, b"u" * chunk, end=end and offset + chunk == size))
    return frames


# ---------------------------------------------------------------- §8


@spec("X-1")
def test_X1_a_reset_with_an_unknown_code_resets_the_stream(peer: Peer) -> None:
    peer.send(headers(1, request_vars("POST", "/echo"), end=False), reset(1, 0xDEAD))
    peer.send(data(1, b"late"))  # the stream is closed now: a late frame, ignored
    assert [f for f in peer.barrier() if f.stream_id == 1] == []
    assert peer.request(3).status == 200


@spec("X-4", "X-3")
def test_X4_a_stream_error_leaves_the_other_streams_alone(peer: Peer) -> None:
    peer.send(
        get(1, "/sleep?s=0.3"),
        headers(3, request_vars("POST", "/echo"), end=False),
        headers(5, [1, 2, 3]),
        data(3, b"three", end=True),
        get(7),
    )
    peer.stream_error(5, E.PROTOCOL_ERROR)
    assert peer.response(1).body == b"slept"
    assert peer.response(3).body == b"three"
    assert peer.response(7).status == 200


# ---------------------------------------------------------------- §9


@spec("W-1", "W-2")
def test_W1_the_connection_window_starts_at_65535(connect: Connector) -> None:
    peer = connect({S.INITIAL_WINDOW_SIZE: MAX_WINDOW})
    peer.send(get(1, "/big?n=100000"))
    peer.blocked_at(1, CONNECTION_WINDOW)  # whatever INITIAL_WINDOW_SIZE says
    peer.send(window_update(0, 100000 - CONNECTION_WINDOW))
    assert len(peer.response(1).body) == 100000


@spec("W-2")
def test_W2_end_stream_goes_out_on_a_closed_window(connect: Connector) -> None:
    peer = connect({S.INITIAL_WINDOW_SIZE: 10})
    reply = peer.request(1, "/stream?n=1&size=10")  # the window is 0 when the body ends
    assert (reply.body, reply.window) == (b"a" * 10, 0)


@spec("W-3", "X-3")
def test_W3_data_beyond_the_stream_window(peer: Peer) -> None:
    window = peer.server_settings[S.INITIAL_WINDOW_SIZE]
    frame_size = peer.server_settings[S.MAX_FRAME_SIZE]
    # An application that does not read: its window only closes.
    peer.send(headers(1, request_vars("POST", "/sleep?s=3"), end=False))
    peer.send(*upload(1, window + 1, frame_size))
    peer.stream_error(1, E.FLOW_CONTROL_ERROR)


@spec("W-3", "X-2")
def test_W3_data_beyond_the_connection_window(peer: Peer) -> None:
    window = receive_window(peer)
    per_stream = peer.server_settings[S.INITIAL_WINDOW_SIZE]
    frame_size = peer.server_settings[S.MAX_FRAME_SIZE]
    frames: list[bytes] = []
    sid = 1
    left = window
    while left:  # fill the connection window, no stream beyond its own
        size = min(left, per_stream)
        frames += [headers(sid, request_vars("POST", "/sleep?s=5"), end=False)]
        frames += upload(sid, size, frame_size)
        left -= size
        sid += 2
    peer.send(*frames)
    peer.send(headers(sid, request_vars("POST", "/sleep?s=5"), end=False), data(sid, b"1"))
    assert peer.connection_error(E.FLOW_CONTROL_ERROR) < sid  # never handed to the application


@spec("W-4", "X-3")
def test_W4_a_window_update_of_0_on_a_stream(peer: Peer) -> None:
    peer.send(get(1, "/sleep?s=0.3"), window_update(1, 0))
    peer.stream_error(1, E.PROTOCOL_ERROR)


@spec("W-4", "X-2")
def test_W4_a_window_update_of_0_on_the_connection(peer: Peer) -> None:
    peer.send(window_update(0, 0))
    peer.connection_error(E.PROTOCOL_ERROR)


@spec("W-5", "W-4", "X-3")
@pytest.mark.parametrize("increment", [MAX_WINDOW - 65535 + 1, 2**31, 2**32 - 1])
def test_W5_a_stream_window_above_the_maximum(peer: Peer, increment: int) -> None:
    peer.send(get(1, "/sleep?s=0.3"), window_update(1, increment))
    peer.stream_error(1, E.FLOW_CONTROL_ERROR)


@spec("W-5", "X-2")
def test_W5_the_connection_window_above_the_maximum(peer: Peer) -> None:
    peer.send(window_update(0, MAX_WINDOW - CONNECTION_WINDOW))  # exactly the maximum: fine
    peer.barrier()
    peer.send(window_update(0, 1))
    peer.connection_error(E.FLOW_CONTROL_ERROR)


@spec("W-5", "W-4")
def test_W5_an_increment_with_the_top_bit_set(peer: Peer) -> None:
    peer.send(window_update(0, 2**31))  # no reserved bit: not an increment of 0
    peer.connection_error(E.FLOW_CONTROL_ERROR)


@spec("W-6", "W-7", "R-3")
def test_W6_data_on_a_closed_stream_counts_and_its_credit_comes_back(peer: Peer) -> None:
    window = receive_window(peer)
    frame_size = peer.server_settings[S.MAX_FRAME_SIZE]
    assert peer.request(1).status == 200
    peer.send(*upload(1, window, frame_size))  # the whole connection window, on a closed stream
    returned = 0
    while not returned:
        f = peer.expect(T.WINDOW_UPDATE)
        returned += u32(f.payload) if f.stream_id == 0 else 0
    assert returned >= window // 2  # [W-7]: in large increments
    # Spend the credit that came back: without it, this would overrun the window.
    size = min(returned, peer.server_settings[S.INITIAL_WINDOW_SIZE])
    peer.send(headers(3, request_vars("POST", "/sleep?s=0", size), end=False))
    peer.send(*upload(3, size, frame_size, end=True))
    peer.barrier()
    assert peer.response(3).body == b"slept"


@spec("W-7")
def test_W7_credit_comes_back_once_the_application_reads(connect: Connector) -> None:
    peer = connect()
    window = peer.server_settings[S.INITIAL_WINDOW_SIZE]
    frame_size = peer.server_settings[S.MAX_FRAME_SIZE]
    size = window // 2 + frame_size
    # Not read by the application: no credit for the stream.
    peer.send(headers(1, request_vars("POST", "/sleep?s=0.5"), end=False))
    peer.send(*upload(1, size, frame_size))
    assert [f for f in peer.barrier() if f.type == T.WINDOW_UPDATE and f.stream_id == 1] == []
    # Read: credit for the stream. The server reads a body of up to its body_buffer_size
    # before it calls the application, and at most a stream window of it, so only a whole
    # window of this body (of unknown length) starts the application; that window is then
    # exhausted, and [W-7] lets the credit come back in an increment under half of it.
    peer.send(headers(3, request_vars("POST", "/echo"), end=False))
    peer.send(*upload(3, window, frame_size))
    update = peer.expect(T.WINDOW_UPDATE, 3)
    assert u32(update.payload) >= min(1024, window // 4)


@spec("W-8")
def test_W8_the_connection_window_update_follows_the_preface(peer: Peer) -> None:
    first, second = peer.log[:2]
    assert first.type == T.PREFACE
    assert second.type == T.WINDOW_UPDATE and second.stream_id == 0
