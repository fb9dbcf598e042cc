"""PROTOCOL.md §7: settings, their bounds, acknowledgement and timing."""

from __future__ import annotations

import pytest

from .conftest import Connector
from .peer import Peer, spec
from .wire import (
    E,
    S,
    T,
    frame,
    get,
    headers,
    preface,
    request_vars,
    settings,
    settings_ack,
    settings_list,
    window_update,
)

pytestmark = pytest.mark.slow


@spec("E-1", "X-2")
def test_E1_a_settings_list_not_a_multiple_of_6(peer: Peer) -> None:
    peer.send(frame(T.SETTINGS, 0, 0, settings_list({S.MAX_FRAME_SIZE: 20000}) + b"\0"))
    peer.connection_error(E.FRAME_SIZE_ERROR)


@spec("E-1", "P-4")
def test_E1_a_preface_settings_list_not_a_multiple_of_6(connect: Connector) -> None:
    peer = connect(preface=False)
    peer.send(frame(T.PREFACE, 0, 0, b"muxwsgi/1" + b"\0" * 5))
    assert peer.next_frame().type == T.PREFACE
    peer.connection_error(E.FRAME_SIZE_ERROR)


OUT_OF_BOUNDS = [
    (S.MAX_CONCURRENT_STREAMS, 2**31, E.PROTOCOL_ERROR),
    (S.INITIAL_WINDOW_SIZE, 2**31, E.FLOW_CONTROL_ERROR),
    (S.INITIAL_WINDOW_SIZE, 2**32 - 1, E.FLOW_CONTROL_ERROR),
    (S.MAX_FRAME_SIZE, 16383, E.PROTOCOL_ERROR),
    (S.MAX_FRAME_SIZE, 65536, E.PROTOCOL_ERROR),
    (S.MAX_HEADERS_SIZE, 511, E.PROTOCOL_ERROR),
    (S.MAX_HEADERS_SIZE, 65536, E.PROTOCOL_ERROR),
    (S.MAX_HEADERS_COUNT, 0, E.PROTOCOL_ERROR),
    (S.MAX_HEADERS_COUNT, 65536, E.PROTOCOL_ERROR),
]


@spec("E-2", "X-2")
@pytest.mark.parametrize(
    ("code", "value", "error"), OUT_OF_BOUNDS, ids=[f"{c.name}={v}" for c, v, _ in OUT_OF_BOUNDS]
)
def test_E2_a_value_out_of_bounds(peer: Peer, code: int, value: int, error: int) -> None:
    peer.send(settings({code: value}))
    peer.connection_error(error)


IN_BOUNDS = [
    (S.MAX_CONCURRENT_STREAMS, 0),
    (S.MAX_CONCURRENT_STREAMS, 2**31 - 1),
    (S.INITIAL_WINDOW_SIZE, 0),
    (S.INITIAL_WINDOW_SIZE, 2**31 - 1),
    (S.MAX_FRAME_SIZE, 16384),
    (S.MAX_FRAME_SIZE, 65535),
    (S.MAX_HEADERS_SIZE, 512),
    (S.MAX_HEADERS_COUNT, 1),
]


@spec("E-2")
@pytest.mark.parametrize(("code", "value"), IN_BOUNDS, ids=[f"{c.name}={v}" for c, v in IN_BOUNDS])
def test_E2_values_at_the_bounds(peer: Peer, code: int, value: int) -> None:
    peer.send(settings({code: value}))
    peer.barrier()


@spec("E-3")
def test_E3_unknown_setting_ids_are_ignored(peer: Peer) -> None:
    peer.send(settings([(0x0, 7), (0x6, 2**32 - 1), (0x99, 0), (0xFFFF, 1)]), get(1))
    assert peer.response(1).status == 200
    peer.barrier()


@spec("E-4")
def test_E4_an_empty_settings_frame_is_acknowledged(peer: Peer) -> None:
    peer.barrier()
    before = peer.acked
    peer.send(settings())
    ack = peer.expect(T.SETTINGS)
    assert (ack.flags, ack.payload, peer.acked) == (1, b"", before + 1)


@spec("E-4", "G-1")
def test_E4_values_apply_in_order(peer: Peer) -> None:
    """INITIAL_WINDOW_SIZE listed twice: the last value (300) holds."""
    peer.send(settings([(S.INITIAL_WINDOW_SIZE, 10), (S.INITIAL_WINDOW_SIZE, 300)]))
    peer.barrier()
    peer.send(get(1, "/big?n=1000"))
    peer.blocked_at(1, 300)
    peer.send(window_update(1, 700))
    assert len(peer.response(1).body) == 1000


@spec("E-4", "X-2")
def test_E4_a_settings_ack_with_a_payload(connect: Connector) -> None:
    peer = connect(answer=False)  # the server's PREFACE waits for our ACK
    peer.send(frame(T.SETTINGS, 1, 0, settings_list({S.MAX_FRAME_SIZE: 16384})))
    peer.connection_error(E.FRAME_SIZE_ERROR)


@spec("E-5", "F-9")
def test_E5_a_settings_ack_does_not_overtake_earlier_replies(peer: Peer) -> None:
    peer.barrier()
    peer.send(headers(1, [1, 2]), settings())
    frames = [peer.next_frame() for _ in range(2)]
    assert [f.type for f in frames] == [T.RESET, T.SETTINGS]


@spec("E-6", "X-2")
def test_E6_an_unexpected_settings_ack(peer: Peer) -> None:
    peer.send(settings_ack())  # the PREFACE's was sent by connect()
    peer.connection_error(E.PROTOCOL_ERROR)


def blocked_echo(peer: Peer) -> None:
    """Stream 1: a 1000-byte response blocked after 100 bytes on our INITIAL_WINDOW_SIZE."""
    peer.send(settings({S.INITIAL_WINDOW_SIZE: 100}))
    peer.send(get(1, "/big?n=1000"))
    peer.blocked_at(1, 100)
    assert peer.streams[1].window == 0


@spec("E-7")
def test_E7_a_new_initial_window_size_shifts_open_streams(peer: Peer) -> None:
    blocked_echo(peer)
    peer.send(settings({S.INITIAL_WINDOW_SIZE: 5000}), window_update(1, 1))
    assert len(peer.response(1).body) == 1000  # +4900 from the shift, +1 to wake the stream


@spec("E-7", "W-2")
def test_E7_raising_initial_window_size_wakes_a_blocked_stream(peer: Peer) -> None:
    blocked_echo(peer)
    peer.send(settings({S.INITIAL_WINDOW_SIZE: 5000}))
    assert len(peer.response(1, timeout=5).body) == 1000


@spec("E-7", "W-2")
def test_E7_a_window_may_go_negative(peer: Peer) -> None:
    peer.send(settings({S.INITIAL_WINDOW_SIZE: 1000}))
    peer.send(get(1, "/big?n=3000"))
    peer.blocked_at(1, 1000)
    peer.send(settings({S.INITIAL_WINDOW_SIZE: 0}))  # the window: 0 - 1000
    peer.send(window_update(1, 1000))  # back to 0: still nothing to send
    peer.blocked_at(1, 1000)
    peer.send(window_update(1, 2000))
    assert len(peer.response(1).body) == 3000


@spec("E-7", "X-2")
def test_E7_a_shift_above_the_maximum_window(peer: Peer) -> None:
    peer.send(headers(1, request_vars("POST", "/echo"), end=False))  # open, body still to come
    peer.send(window_update(1, 2**31 - 1 - 65535))  # its send window: 2^31-1
    peer.barrier()
    peer.send(settings({S.INITIAL_WINDOW_SIZE: 65536}))
    peer.connection_error(E.FLOW_CONTROL_ERROR)


@spec("E-8", "L-1")
def test_E8_more_than_32_settings(peer: Peer) -> None:
    peer.send(settings([(0x99, 1)] * 32))
    peer.barrier()
    peer.send(settings([(0x99, 1)] * 33))
    peer.connection_error(E.ENHANCE_YOUR_CALM)


@spec("E-8", "P-4")
def test_E8_more_than_32_settings_in_a_preface(connect: Connector) -> None:
    peer = connect(preface=False)
    peer.send(preface([(0x99, 1)] * 33))
    assert peer.next_frame().type == T.PREFACE
    peer.connection_error(E.ENHANCE_YOUR_CALM)
