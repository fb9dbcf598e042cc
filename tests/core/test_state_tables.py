"""Every (state, input) pair of the half-stream table either transitions or is refused (h2's
test_state_machines, applied to the send side and the receive side)."""

from __future__ import annotations

import itertools

import pytest

from muxwsgi import ErrorCode, LocalProtocolError, StreamReset
from muxwsgi._state import (
    CONNECTION_TRANSITIONS,
    HALF_STREAM_TRANSITIONS,
    INVALID_RECEIVE_CODE,
    ConnectionInput,
    ConnectionState,
    HalfState,
    Input,
)

from .helpers import ConnectionPair, spec

VARS = {"REQUEST_METHOD": "POST", "PATH_INFO": "/"}


def test_table_only_moves_forward() -> None:
    order = {HalfState.IDLE: 0, HalfState.OPEN: 1, HalfState.CLOSED: 2}
    for (state, _), next_state in HALF_STREAM_TRANSITIONS.items():
        assert order[next_state] >= order[state]
    assert set(INVALID_RECEIVE_CODE) == set(HalfState)


def test_connection_table_is_complete_and_never_reopens() -> None:
    order = {ConnectionState.OPEN: 0, ConnectionState.CLOSING: 1, ConnectionState.CLOSED: 2}
    for state in ConnectionState:
        for what in ConnectionInput:
            assert order[CONNECTION_TRANSITIONS[state, what]] > 0
            assert order[CONNECTION_TRANSITIONS[state, what]] >= order[state]
    assert CONNECTION_TRANSITIONS[ConnectionState.CLOSING, ConnectionInput.GOAWAY] is (
        ConnectionState.CLOSING
    )


@spec("R-1")
@pytest.mark.parametrize(
    ("state", "inp"),
    list(itertools.product([HalfState.IDLE, HalfState.OPEN, HalfState.CLOSED], list(Input))),
)
def test_server_send_half(state: HalfState, inp: Input) -> None:
    """Drive the server's send half into ``state``, then try ``inp``."""
    pair = ConnectionPair()
    sid = pair.client.send_request(VARS, end_stream=True)
    pair.to_server()
    server = pair.server
    if state is HalfState.OPEN:
        server.send_response(sid, 200, [])
    elif state is HalfState.CLOSED:
        server.send_response(sid, 200, [], end_stream=True)
    expected = HALF_STREAM_TRANSITIONS.get((state, inp))

    def act() -> None:
        if inp in (Input.HEADERS, Input.HEADERS_END):
            server.send_response(sid, 200, [], end_stream=inp is Input.HEADERS_END)
        else:
            server.send_data(sid, b"x", end_stream=inp is Input.DATA_END)

    if expected is None:
        with pytest.raises(LocalProtocolError):
            act()
    else:
        act()
        events = pair.to_client()
        assert not any(type(e) is StreamReset for e in events)
        assert server.is_open(sid) is (expected is not HalfState.CLOSED)


@spec("R-2", "H-5")
@pytest.mark.parametrize(
    ("state", "inp"),
    list(itertools.product([HalfState.OPEN, HalfState.CLOSED], list(Input))),
)
def test_server_receive_half(state: HalfState, inp: Input) -> None:
    """The client's upload half is ``state`` on the server; raw frames try ``inp``."""
    from .helpers import data, headers

    pair = ConnectionPair()
    sid = pair.client.send_request(VARS, end_stream=state is HalfState.CLOSED)
    pair.to_server()
    if inp in (Input.HEADERS, Input.HEADERS_END):
        wire = headers(sid, VARS, end=inp is Input.HEADERS_END)
    else:
        wire = data(sid, b"x", end=inp is Input.DATA_END)
    events = pair.server.receive_data(wire)
    expected = HALF_STREAM_TRANSITIONS.get((state, inp))
    if expected is None:
        assert events == [StreamReset(sid, INVALID_RECEIVE_CODE[state], False)]
    else:
        assert not any(type(e) is StreamReset for e in events)
    assert INVALID_RECEIVE_CODE[HalfState.CLOSED] == ErrorCode.STREAM_CLOSED
