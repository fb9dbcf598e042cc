"""PROTOCOL.md §1-§4: integers, telling protocols apart, the frame layout, the preface, GOAWAY
and PING, against a live server."""

from __future__ import annotations

import socket
import struct

import pytest

from .conftest import Connector
from .peer import Peer, app_saw, spec
from .wire import (
    ACK,
    END_STREAM,
    MAGIC,
    MAX_STREAM_ID,
    E,
    S,
    T,
    data,
    frame,
    get,
    goaway,
    headers,
    ping,
    preface,
    request_vars,
    reset,
    settings,
    settings_list,
    uwsgi_request,
    window_update,
)

pytestmark = pytest.mark.slow


# ---------------------------------------------------------------- §1


@spec("G-1", "P-4", "W-1")
def test_G1_integers_are_little_endian(connect: Connector) -> None:
    """INITIAL_WINDOW_SIZE 0x0000012C read little-endian is 300; read big-endian it would be
    vastly more, and the whole 1000-byte body would come at once."""
    peer = connect({S.INITIAL_WINDOW_SIZE: 300})
    peer.send(get(1, "/big?n=1000"))
    peer.blocked_at(1, 300)
    peer.send(window_update(1, 700))
    assert peer.response(1).body == b"x" * 1000


@spec("G-2", "X-2")
def test_G2_stream_id_above_max_is_a_connection_error(peer: Peer) -> None:
    peer.send(get(MAX_STREAM_ID + 2))
    assert peer.connection_error(E.PROTOCOL_ERROR) == 0


# ---------------------------------------------------------------- §2


@spec("D-1")
def test_D1_first_byte_chooses_the_protocol(connect: Connector) -> None:
    http = connect(preface=False)
    http.sock.sendall(b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    reply = http.read_raw()
    assert reply.startswith(b"HTTP/1.1 200 ") and reply.endswith(b"Hello, conformance!")
    classic = connect(preface=False)
    classic.sock.sendall(uwsgi_request("/hello"))
    reply = classic.read_raw()
    assert reply.startswith(b"HTTP/1.1 200 ") and reply.endswith(b"Hello, conformance!")
    mux = connect()  # 0x24: the PREFACE
    assert mux.request(1).status == 200


@spec("D-3", "D-1")
@pytest.mark.parametrize(
    "first",
    [get(1, X_Case="d3-headers"), settings(), ping(), b"\x01\x02\x03\x04", b"\x7f" * 8, b"a"],
    ids=["HEADERS", "SETTINGS", "PING", "byte-1", "byte-7f", "lowercase"],
)
def test_D3_a_first_frame_other_than_preface_is_closed_without_reply(
    connect: Connector, first: bytes
) -> None:
    peer = connect(preface=False)
    peer.sock.sendall(first)
    assert peer.read_raw() == b""
    assert not app_saw(peer.address, "d3-headers")


# ---------------------------------------------------------------- §3


@spec("F-1")
def test_F1_length_counts_the_payload_only(peer: Peer) -> None:
    """Frames back to back: a length that counted the header would misread the second."""
    peer.send(ping(b"first..."), ping(b"second.."), get(1))
    pongs = [peer.expect(T.PING).payload for _ in range(2)]
    assert sorted(pongs) == [b"first...", b"second.."]
    assert peer.response(1).status == 200


@spec("F-3", "E-5", "X-2")
def test_F3_data_above_the_enforced_max_frame_size(connect: Connector) -> None:
    """Until our ACK arrives, the server enforces the default MAX_FRAME_SIZE, 16384 ([E-5])."""
    peer = connect(answer=False)
    assert peer.server_settings[S.MAX_FRAME_SIZE] > 16384  # advertised, not yet enforced
    peer.send(headers(1, request_vars("POST", "/echo"), end=False), data(1, b"x" * 16385))
    peer.connection_error(E.FRAME_SIZE_ERROR)


@spec("F-3", "E-5")
def test_F3_data_up_to_the_advertised_max_frame_size_once_acknowledged(connect: Connector) -> None:
    peer = connect({S.INITIAL_WINDOW_SIZE: 1 << 20})
    size = peer.server_settings[S.MAX_FRAME_SIZE]
    peer.send(headers(1, request_vars("POST", "/echo", size), end=False))
    peer.send(data(1, b"y" * size, end=True))
    reply = peer.response(1)
    assert (reply.status, len(reply.body)) == (200, size)


@spec("F-4", "G-2")
def test_F4_unknown_frame_types_are_ignored(peer: Peer) -> None:
    unknown = [
        frame(0x30, 0, 0, b""),
        frame(0x23, 0xFF, 1, b"z" * 100),  # on a stream never opened
        frame(0xFF, 0x1, MAX_STREAM_ID + 2, b"z" * 65535),  # above 2^31-1, longest payload
        frame(0x2C, 0, 2**32 - 1, b"\0" * 3),
    ]
    peer.send(*unknown, get(1))
    assert peer.response(1).status == 200
    peer.send(get(3), *unknown)
    assert peer.response(3).status == 200
    peer.barrier()


@spec("F-5")
def test_F5_undefined_flag_bits_are_ignored(peer: Peer) -> None:
    odd = 0xFE  # every bit but END_STREAM / ACK
    peer.send(headers(1, request_vars(), end=True, flags=odd))
    assert peer.response(1).status == 200
    peer.send(
        headers(3, request_vars("POST", "/echo"), end=False, flags=odd),
        frame(T.DATA, odd | END_STREAM, 3, b"body"),
        frame(T.WINDOW_UPDATE, 0xFF, 0, struct.pack("<I", 10)),
    )
    assert peer.response(3).body == b"body"
    peer.send(frame(T.PING, odd, 0, b"flagsodd"))  # not an ACK: answered
    pong = peer.expect(T.PING)
    assert (pong.flags & ACK, pong.payload) == (ACK, b"flagsodd")
    peer.send(frame(T.SETTINGS, odd, 0, b""))  # not an ACK: acknowledged
    peer.barrier()


@spec("F-6")
def test_F6_bytes_split_anywhere_give_the_same_result(connect: Connector) -> None:
    peer = connect(preface=False)
    script = (
        preface()
        + get(1)
        + headers(3, request_vars("POST", "/echo", 6), end=False)
        + data(3, b"abc")
        + data(3, b"def", end=True)
    )
    peer.send_bytewise(script)
    assert peer.response(1).status == 200
    assert peer.response(3).body == b"abcdef"


@spec("F-7", "X-2")
@pytest.mark.parametrize(
    ("ftype", "stream_id", "payload"),
    [
        (T.SETTINGS, 1, b""),
        (T.PING, 1, b"\0" * 8),
        (T.GOAWAY, 1, b"\0" * 8),
        (T.PREFACE, 1, MAGIC),
        (T.HEADERS, 0, b"\x90"),
        (T.DATA, 0, b"x"),
        (T.RESET, 0, b"\0" * 4),
    ],
    ids=lambda v: v.name if isinstance(v, T) else None,
)
def test_F7_a_frame_on_the_wrong_kind_of_stream(
    peer: Peer, ftype: int, stream_id: int, payload: bytes
) -> None:
    peer.send(frame(ftype, 0, stream_id, payload))
    peer.connection_error(E.PROTOCOL_ERROR)


@spec("F-8", "X-2")
@pytest.mark.parametrize(
    ("ftype", "length"),
    [(T.RESET, 3), (T.RESET, 5), (T.WINDOW_UPDATE, 3), (T.WINDOW_UPDATE, 5), (T.PING, 7),
     (T.PING, 9), (T.GOAWAY, 0), (T.GOAWAY, 7)],
)  # fmt: skip
def test_F8_a_payload_of_the_wrong_length(peer: Peer, ftype: int, length: int) -> None:
    assert peer.request(1).status == 200
    stream_id = 1 if ftype in (T.RESET, T.WINDOW_UPDATE) else 0
    peer.send(frame(ftype, 0, stream_id, b"\1" * length))
    assert peer.connection_error(E.FRAME_SIZE_ERROR) == 1


@spec("F-8", "P-2")
def test_F8_a_preface_shorter_than_the_magic(connect: Connector) -> None:
    peer = connect(preface=False)
    peer.send(frame(T.PREFACE, 0, 0, b"muxws"))
    assert peer.next_frame().type == T.PREFACE  # the server's own, first
    peer.connection_error(E.FRAME_SIZE_ERROR)


@spec("F-9")
def test_F9_the_kind_of_stream_is_checked_before_the_length(peer: Peer) -> None:
    peer.send(frame(T.PING, 0, 1, b"\0" * 7))
    peer.connection_error(E.PROTOCOL_ERROR)


@spec("F-9", "F-3")
def test_F9_the_length_is_checked_before_the_stream(connect: Connector) -> None:
    peer = connect(answer=False)  # MAX_FRAME_SIZE 16384 enforced
    peer.send(data(2, b"x" * 16385))  # oversized, and on an idle (even) stream
    peer.connection_error(E.FRAME_SIZE_ERROR)


@spec("F-9", "H-4")
def test_F9_the_size_of_a_head_is_checked_before_its_payload(peer: Peer) -> None:
    peer.send(headers(1, b"\xc1" * 40000))  # too large, and not msgpack
    peer.stream_error(1, E.HEADERS_TOO_LARGE)


@spec("F-9", "H-5")
def test_F9_headers_on_an_open_stream_is_a_stream_error_not_a_reused_id(peer: Peer) -> None:
    peer.send(headers(1, request_vars("POST", "/echo"), end=False), get(3))
    assert peer.response(3).status == 200
    peer.send(headers(1, request_vars()))  # below the highest id, but stream 1 is open
    peer.stream_error(1, E.PROTOCOL_ERROR)


@spec("F-9", "C-2")
def test_F9_concurrency_is_checked_before_the_payload(peer: Peer) -> None:
    limit = peer.server_settings[S.MAX_CONCURRENT_STREAMS]
    held = [2 * i + 1 for i in range(limit)]
    peer.send(*[headers(sid, request_vars("POST", "/echo"), end=False) for sid in held])
    extra = 2 * limit + 1
    peer.send(headers(extra, [1, 2, 3]))  # one too many, and malformed
    peer.stream_error(extra, E.REFUSED_STREAM)
    peer.send(*[reset(sid, E.CANCEL) for sid in held])
    peer.barrier()


# ---------------------------------------------------------------- §4.1


@spec("P-1")
def test_P1_the_server_preface_comes_first(connect: Connector) -> None:
    peer = connect(preface=False)
    peer.send(preface(), ping(b"1st ping"), get(1))
    first = peer.next_frame()
    assert first.type == T.PREFACE and first.payload.startswith(MAGIC)
    assert peer.response(1).status == 200


@spec("P-2", "X-2")
@pytest.mark.parametrize(
    "magic",
    [b"muxwsgi/2", b"MUXWSGI/1", b"muxwsgi/0" + settings_list({1: 5}), b"GET / HTTP/1.1\r\n\r\n"],
    ids=["version-2", "uppercase", "version-0", "http"],
)
def test_P2_a_wrong_magic_gets_a_preface_then_goaway(connect: Connector, magic: bytes) -> None:
    peer = connect(preface=False)
    peer.send(frame(T.PREFACE, 0, 0, magic))
    assert peer.next_frame().type == T.PREFACE
    assert peer.connection_error(E.PROTOCOL_ERROR) == 0


@spec("P-2", "E-1")
def test_P2_muxwsgi_10_is_version_1_with_a_bad_settings_list(connect: Connector) -> None:
    peer = connect(preface=False)
    peer.send(frame(T.PREFACE, 0, 0, b"muxwsgi/10"))
    assert peer.next_frame().type == T.PREFACE
    peer.connection_error(E.FRAME_SIZE_ERROR)


@spec("P-3", "X-2")
def test_P3_a_second_preface(peer: Peer) -> None:
    peer.send(preface())
    peer.connection_error(E.PROTOCOL_ERROR)


@spec("P-4", "E-2")
def test_P4_preface_settings_are_checked_like_settings(connect: Connector) -> None:
    peer = connect(preface=False)
    peer.send(preface({S.MAX_FRAME_SIZE: 100}))
    assert peer.next_frame().type == T.PREFACE
    peer.connection_error(E.PROTOCOL_ERROR)


@spec("P-4", "E-4")
def test_P4_preface_settings_are_acknowledged(connect: Connector) -> None:
    for settings_ in (None, {S.INITIAL_WINDOW_SIZE: 1000}):
        peer = connect(settings_)
        peer.barrier()
        assert peer.acked == 2  # the PREFACE's list, and the barrier's


@spec("P-5")
def test_P5_requests_may_follow_the_preface_at_once(connect: Connector) -> None:
    peer = connect(preface=False)
    peer.send(preface(), get(1), get(3, "/echo"))
    assert peer.response(1).status == 200
    assert peer.response(3).status == 200


# ---------------------------------------------------------------- §4.2


@spec("S-4", "X-2")
def test_S4_a_rising_goaway_last_stream_id(peer: Peer) -> None:
    peer.send(goaway(0, E.NO_ERROR), goaway(1, E.NO_ERROR))
    peer.connection_error(E.PROTOCOL_ERROR)


@spec("S-6", "S-4")
def test_S6_goaway_is_the_last_frame_of_a_connection_error(peer: Peer) -> None:
    assert peer.request(1).status == 200
    peer.send(frame(T.HEADERS, 0, 0, b"\x90"))
    assert peer.connection_error(E.PROTOCOL_ERROR) == 1  # connection_error: nothing after it


@spec("S-6")
def test_S6_goaway_last_stream_is_last_handed_to_app(peer: Peer) -> None:
    assert peer.request(1).status == 200
    peer.send(headers(3, [1, 2]))  # malformed: reset, never handed to the application
    peer.stream_error(3, E.PROTOCOL_ERROR)
    peer.send(frame(T.HEADERS, 0, 0, b"\x90"))
    assert peer.connection_error(E.PROTOCOL_ERROR) == 1


@spec("S-6", "L-1")
def test_S6_goaway_after_a_flood_of_malformed_heads_covers_no_stream(peer: Peer) -> None:
    peer.send(*[headers(sid, [1]) for sid in range(1, 6001, 2)])
    assert peer.connection_error(E.ENHANCE_YOUR_CALM) == 0


@spec("S-6", "C-2")
def test_S6_goaway_does_not_cover_a_refused_stream(peer: Peer) -> None:
    limit = peer.server_settings[S.MAX_CONCURRENT_STREAMS]
    held = [2 * i + 1 for i in range(limit)]
    peer.send(*[headers(sid, request_vars("POST", "/echo"), end=False) for sid in held])
    refused = 2 * limit + 1
    peer.send(get(refused))
    peer.stream_error(refused, E.REFUSED_STREAM)
    peer.send(frame(T.HEADERS, 0, 0, b"\x90"))
    assert peer.connection_error(E.PROTOCOL_ERROR) == held[-1]


@spec("S-7", "X-1")
@pytest.mark.parametrize(
    "code", [E.NO_ERROR, E.INTERNAL_ERROR, 0xDEAD], ids=["NO_ERROR", "INTERNAL_ERROR", "unknown"]
)
def test_S7_a_client_goaway_lets_open_streams_finish_then_closes(peer: Peer, code: int) -> None:
    peer.send(get(1, "/sleep?s=0.3"), goaway(0, code, b"\xff\xfe not UTF-8"))
    reply = peer.response(1)
    assert (reply.status, reply.body) == (200, b"slept")
    peer.closed()


@spec("S-8")
def test_S8_a_half_closed_client_gets_its_responses(peer: Peer) -> None:
    peer.send(get(1, "/sleep?s=0.3"), get(3))
    peer.sock.shutdown(socket.SHUT_WR)
    assert peer.response(1).body == b"slept"
    assert peer.response(3).status == 200
    peer.closed()


# ---------------------------------------------------------------- §4.3


@spec("K-1")
def test_K1_ping_is_answered_with_the_same_bytes(peer: Peer) -> None:
    payloads = [bytes([i]) * 8 for i in range(5)]
    peer.send(*[ping(p) for p in payloads])
    pongs = [peer.expect(T.PING) for _ in payloads]
    assert all(p.flags & ACK for p in pongs)
    assert sorted(p.payload for p in pongs) == payloads


@spec("K-1", "L-1")
def test_K1_a_ping_ack_is_not_answered(peer: Peer) -> None:
    peer.send(ping(b"unasked!", ack=True))
    assert [f for f in peer.barrier() if f.type == T.PING] == []


@spec("K-2")
def test_K2_ping_ack_goes_before_queued_data(connect: Connector) -> None:
    peer = connect({S.INITIAL_WINDOW_SIZE: 0})
    peer.send(get(1, "/big?n=50000"))
    peer.expect(T.HEADERS, 1)
    peer.send(window_update(1, 50000), ping(b"rtt-ping"))
    assert len(peer.response(1).body) == 50000
    order = [f.type for f in peer.log if f.type in (T.PING, T.DATA)]
    assert order[0] == T.PING, peer.log
