"""PROTOCOL.md §6: stream ids, stream states and concurrency."""

from __future__ import annotations

import time

import pytest

from .peer import TIMEOUT, Peer, spec
from .wire import E, S, T, data, get, headers, request_vars, reset, window_update

pytestmark = pytest.mark.slow


def post(stream_id: int, path: str = "/echo", length: int | None = None) -> bytes:
    """A request head whose body is still to come (the stream stays open)."""
    return headers(stream_id, request_vars("POST", path, length), end=False)


# ---------------------------------------------------------------- §6.1


@spec("I-1", "I-3", "X-2")
def test_I1_an_even_stream_id(peer: Peer) -> None:
    peer.send(get(2))
    assert peer.connection_error(E.PROTOCOL_ERROR) == 0


@spec("I-3", "X-2")
def test_I3_a_reused_stream_id(peer: Peer) -> None:
    assert peer.request(1).status == 200
    peer.send(get(1))  # stream 1 is closed: HEADERS on it are never late ([R-3])
    assert peer.connection_error(E.PROTOCOL_ERROR) == 1


@spec("I-3")
def test_I3_a_decreasing_stream_id(peer: Peer) -> None:
    peer.send(post(5))
    peer.barrier()
    peer.send(get(3))
    assert peer.connection_error(E.PROTOCOL_ERROR) == 5


@spec("I-2", "I-4", "R-3")
def test_I2_skipped_ids_are_closed_not_idle(peer: Peer) -> None:
    peer.send(get(1), get(7))
    assert peer.response(1).status == 200
    assert peer.response(7).status == 200
    # 3 and 5 were never used, and are closed: frames on them are late frames, ignored.
    peer.send(data(3, b"late"), reset(5, E.CANCEL), window_update(3, 10))
    assert [f for f in peer.barrier() if f.stream_id in (3, 5)] == []
    assert peer.request(9).status == 200


@spec("I-4", "X-2")
@pytest.mark.parametrize(
    "frame",
    [data(1, b"x"), reset(1, E.CANCEL), window_update(1, 10), data(2, b"x"), reset(4, 0),
     window_update(6, 1)],
    ids=["DATA", "RESET", "WINDOW_UPDATE", "DATA-even", "RESET-even", "WINDOW_UPDATE-even"],
)  # fmt: skip
def test_I4_a_frame_on_an_idle_stream(peer: Peer, frame: bytes) -> None:
    peer.send(frame)
    assert peer.connection_error(E.PROTOCOL_ERROR) == 0


@spec("I-4")
def test_I4_a_frame_above_the_highest_stream(peer: Peer) -> None:
    assert peer.request(1).status == 200
    peer.send(data(3, b"x"))
    assert peer.connection_error(E.PROTOCOL_ERROR) == 1


# ---------------------------------------------------------------- §6.2


@spec("R-1", "H-5")
def test_R1_the_server_follows_the_state_table(peer: Peer) -> None:
    """Every frame the server sends is checked against the table (peer.py): one HEADERS
    first, DATA until END_STREAM, nothing after END_STREAM or RESET."""
    peer.send(get(1, "/stream?n=4&size=100"), get(3, "/hello"), get(5, "/nope"))
    assert peer.response(1).body == b"a" * 100 + b"b" * 100 + b"c" * 100 + b"d" * 100
    assert peer.response(3).status == 200
    assert peer.response(5).status == 404
    peer.barrier()
    assert peer.violations == []


@spec("R-2", "X-3")
def test_R2_headers_after_end_stream(peer: Peer) -> None:
    peer.send(get(1, "/sleep?s=0.5"), get(1, "/hello"))  # the stream is open: no response yet
    peer.stream_error(1, E.STREAM_CLOSED)


@spec("R-2", "X-3")
def test_R2_data_after_end_stream(peer: Peer) -> None:
    peer.send(get(1, "/sleep?s=0.5"), data(1, b"more"))
    peer.stream_error(1, E.STREAM_CLOSED)


@spec("R-3", "W-4", "W-6")
def test_R3_late_frames_on_a_closed_stream_are_ignored(peer: Peer) -> None:
    assert peer.request(1).status == 200
    peer.send(data(1, b"late", end=True), reset(1, E.CANCEL), window_update(1, 0))
    assert [f for f in peer.barrier() if f.stream_id == 1] == []
    assert peer.request(3).status == 200


@spec("R-3")
def test_R3_frames_after_a_reset_are_ignored(peer: Peer) -> None:
    peer.send(post(1, "/sleep?s=0.3"), reset(1, E.CANCEL))
    peer.send(data(1, b"in flight"), window_update(1, 100), reset(1, E.CANCEL))
    assert [f for f in peer.barrier() if f.stream_id == 1] == []


@spec("R-4")
def test_R4_a_reset_is_not_answered(peer: Peer) -> None:
    peer.send(get(1, "/sleep?s=0.3"), post(3, "/sleep?s=0.3"))
    peer.barrier()
    peer.send(reset(1, E.CANCEL), reset(3, E.NO_ERROR), reset(1, E.CANCEL))
    assert [f for f in peer.barrier() if f.type == T.RESET] == []
    peer.ping_pong()
    assert [f for f in peer.log if f.type == T.RESET] == []


# ---------------------------------------------------------------- §6.3


@spec("C-2", "X-3", "X-4")
def test_C2_a_stream_beyond_max_concurrent_streams_is_refused(peer: Peer) -> None:
    limit = peer.server_settings[S.MAX_CONCURRENT_STREAMS]
    held = [2 * i + 1 for i in range(limit)]
    peer.send(*[post(sid) for sid in held])
    refused = 2 * limit + 1
    peer.send(post(refused), data(refused, b"in flight", end=True))  # DATA: late, ignored
    peer.stream_error(refused, E.REFUSED_STREAM)
    peer.send(data(held[0], b"still served", end=True))  # the others carry on
    assert peer.response(held[0]).body == b"still served"
    peer.send(*[reset(sid, E.CANCEL) for sid in held[1:]])
    assert peer.request(refused + 2).status == 200


@spec("C-3")
def test_C3_handlers_still_running_after_a_reset_count(peer: Peer) -> None:
    """Rapid reset: streams reset while their handlers run free the protocol's slots, not the
    server's; a new stream is refused until the handlers finish."""
    limit = peer.server_settings[S.MAX_CONCURRENT_STREAMS]
    running = [2 * i + 1 for i in range(limit)]
    peer.send(*[get(sid, "/stream?n=2&size=1&delay=3") for sid in running])
    for sid in running:  # each handler has started: it sent its first chunk
        while not peer.streams[sid].body:
            peer.next_frame()
    after = 2 * limit + 1
    peer.send(*[reset(sid, E.CANCEL) for sid in running], get(after))
    peer.stream_error(after, E.REFUSED_STREAM)
    deadline = time.monotonic() + TIMEOUT
    sid = after + 2
    while peer.request(sid).status != 200:  # served once the handlers have finished
        assert time.monotonic() < deadline, "the server never took a new stream again"
        assert peer.streams[sid].reset == E.REFUSED_STREAM
        sid += 2
        time.sleep(0.05)  # a polling interval
