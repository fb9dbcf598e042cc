"""The Connection state machine against PROTOCOL.md, one table row or test per requirement."""

from __future__ import annotations

import struct

import msgpack
import pytest

from muxwsgi import (
    MAX_STREAM_ID,
    Connection,
    ConnectionConfig,
    ConnectionState,
    ConnectionTerminated,
    DataReceived,
    ErrorCode,
    FloodError,
    FloodLimits,
    FrameType,
    LocalProtocolError,
    PingAcknowledged,
    PingReceived,
    PrefaceError,
    RemoteProtocolError,
    RequestReceived,
    ResponseReceived,
    Role,
    SettingCode,
    Settings,
    SettingsAcknowledged,
    SettingsChanged,
    StreamEnded,
    StreamReset,
    TooManyStreamsError,
    VarsBlock,
    WindowUpdated,
)
from muxwsgi._frames import MAGIC, encode_settings

from .helpers import (
    SIMPLE_VARS,
    ConnectionPair,
    client_after_preface,
    data,
    frame,
    frames_of,
    goaway,
    headers,
    preface,
    reset,
    server_after_preface,
    small_settings,
    spec,
    window_update,
)

GET = {**SIMPLE_VARS}
POST5 = {**SIMPLE_VARS, "REQUEST_METHOD": "POST", "CONTENT_LENGTH": "5"}


def settings_frame(pairs: list[tuple[int, int]], flags: int = 0) -> bytes:
    return frame(FrameType.SETTINGS, flags, 0, encode_settings(pairs))


# ---------------------------------------------------------------- connection errors

# (requirement ids, what, bytes fed to a server that already has the client PREFACE,
#  the exception class, the GOAWAY error code)
CONNECTION_ERRORS: list[tuple[str, str, bytes, type[Exception], ErrorCode]] = [
    ("P-3", "second PREFACE", preface(), RemoteProtocolError, ErrorCode.PROTOCOL_ERROR),
    ("F-7", "SETTINGS on stream 1", frame(FrameType.SETTINGS, 0, 1), RemoteProtocolError,
     ErrorCode.PROTOCOL_ERROR),
    ("F-7", "PING on stream 3", frame(FrameType.PING, 0, 3, b"x" * 8), RemoteProtocolError,
     ErrorCode.PROTOCOL_ERROR),
    ("F-7", "GOAWAY on stream 1", frame(FrameType.GOAWAY, 0, 1, b"\0" * 8), RemoteProtocolError,
     ErrorCode.PROTOCOL_ERROR),
    ("F-7", "HEADERS on stream 0", headers(0, GET), RemoteProtocolError, ErrorCode.PROTOCOL_ERROR),
    ("F-7", "DATA on stream 0", data(0, b"x"), RemoteProtocolError, ErrorCode.PROTOCOL_ERROR),
    ("F-7", "RESET on stream 0", reset(0, 8), RemoteProtocolError, ErrorCode.PROTOCOL_ERROR),
    ("F-8", "RESET of 3 bytes", frame(FrameType.RESET, 0, 1, b"\0\0\0"), RemoteProtocolError,
     ErrorCode.FRAME_SIZE_ERROR),
    ("F-8", "WINDOW_UPDATE of 5 bytes", frame(FrameType.WINDOW_UPDATE, 0, 0, b"\1\0\0\0\0"),
     RemoteProtocolError, ErrorCode.FRAME_SIZE_ERROR),
    ("F-8", "PING of 7 bytes", frame(FrameType.PING, 0, 0, b"x" * 7), RemoteProtocolError,
     ErrorCode.FRAME_SIZE_ERROR),
    ("F-8", "GOAWAY of 4 bytes", frame(FrameType.GOAWAY, 0, 0, b"\0" * 4), RemoteProtocolError,
     ErrorCode.FRAME_SIZE_ERROR),
    ("F-3", "DATA above MAX_FRAME_SIZE", headers(1, POST5, end=False) + data(1, b"x" * 16385),
     RemoteProtocolError, ErrorCode.FRAME_SIZE_ERROR),
    ("I-3", "even stream id", headers(2, GET), RemoteProtocolError, ErrorCode.PROTOCOL_ERROR),
    ("I-3", "decreasing stream id", headers(5, GET) + headers(3, GET), RemoteProtocolError,
     ErrorCode.PROTOCOL_ERROR),
    ("G-2", "stream id above 2^31-1", headers(2**31 + 1, GET), RemoteProtocolError,
     ErrorCode.PROTOCOL_ERROR),
    ("I-4", "DATA on an idle stream", data(7, b"x"), RemoteProtocolError,
     ErrorCode.PROTOCOL_ERROR),
    ("I-4", "RESET on an idle stream", reset(7, 8), RemoteProtocolError, ErrorCode.PROTOCOL_ERROR),
    ("I-4", "WINDOW_UPDATE on an idle stream", window_update(7, 10), RemoteProtocolError,
     ErrorCode.PROTOCOL_ERROR),
    ("E-1", "settings list of 5 bytes", frame(FrameType.SETTINGS, 0, 0, b"\1\0\1\0\0"),
     RemoteProtocolError, ErrorCode.FRAME_SIZE_ERROR),
    ("E-2", "MAX_FRAME_SIZE below 16384", settings_frame([(SettingCode.MAX_FRAME_SIZE, 100)]),
     RemoteProtocolError, ErrorCode.PROTOCOL_ERROR),
    ("E-2", "INITIAL_WINDOW_SIZE of 2^31",
     settings_frame([(SettingCode.INITIAL_WINDOW_SIZE, 2**31)]), RemoteProtocolError,
     ErrorCode.FLOW_CONTROL_ERROR),
    ("E-4", "SETTINGS ACK with a payload", settings_frame([(1, 1)], flags=1), RemoteProtocolError,
     ErrorCode.FRAME_SIZE_ERROR),
    ("E-6", "unexpected SETTINGS ACK", settings_frame([], flags=1) + settings_frame([], flags=1),
     RemoteProtocolError, ErrorCode.PROTOCOL_ERROR),
    ("E-8", "33 settings in one frame", settings_frame([(0x99, 1)] * 33), FloodError,
     ErrorCode.ENHANCE_YOUR_CALM),
    ("W-4", "WINDOW_UPDATE of 0 on stream 0", window_update(0, 0), RemoteProtocolError,
     ErrorCode.PROTOCOL_ERROR),
    ("W-5", "connection window above 2^31-1", window_update(0, 2**31 - 1), RemoteProtocolError,
     ErrorCode.FLOW_CONTROL_ERROR),
    ("W-3", "connection window overrun",
     headers(1, {**GET, "CONTENT_LENGTH": ""}, end=False)
     + headers(3, {**GET, "CONTENT_LENGTH": ""}, end=False)
     + data(1, b"x" * 16384) * 3 + data(3, b"x" * 16384) * 2,
     RemoteProtocolError, ErrorCode.FLOW_CONTROL_ERROR),
    ("E-7", "INITIAL_WINDOW_SIZE raise overflows an open stream's send window",
     headers(1, GET) + window_update(1, 2**31 - 1 - 65535)
     + settings_frame([(SettingCode.INITIAL_WINDOW_SIZE, 65536)]),
     RemoteProtocolError, ErrorCode.FLOW_CONTROL_ERROR),
]  # fmt: skip


@pytest.mark.parametrize(
    ("ids", "what", "wire", "exc_type", "code"),
    CONNECTION_ERRORS,
    ids=[c[1] for c in CONNECTION_ERRORS],
)
def test_connection_errors(
    ids: str, what: str, wire: bytes, exc_type: type[Exception], code: ErrorCode
) -> None:
    server = server_after_preface()
    server.receive_data(settings_frame([], flags=1))  # the client ACKs our preface
    server.data_to_send()
    with pytest.raises(exc_type) as info:
        server.receive_data(wire)
    assert isinstance(info.value, RemoteProtocolError)
    assert info.value.error_code == code
    assert server.state is ConnectionState.CLOSED
    out = frames_of(server.data_to_send())
    assert out[-1].type == FrameType.GOAWAY
    assert struct.unpack_from("<I", out[-1].payload, 4)[0] == code
    # Once closed, nothing more is processed.
    assert server.receive_data(headers(101, GET)) == []


test_connection_errors = spec(*sorted({c[0] for c in CONNECTION_ERRORS}), "X-2", "S-6")(
    test_connection_errors
)


@spec("D-3", "P-1")
@pytest.mark.parametrize(
    "first",
    [headers(1, GET), b"GET / HTTP/1.1\r\n\r\n", b"\x00\x10\x00\x00", settings_frame([])],
    ids=["HEADERS", "HTTP", "classic uwsgi", "SETTINGS"],
)
def test_first_frame_must_be_preface(first: bytes) -> None:
    server = Connection(Role.SERVER)
    with pytest.raises(PrefaceError):
        server.receive_data(first)
    assert frames_of(server.data_to_send())[-1].type == FrameType.GOAWAY


@spec("P-2")
def test_preface_magic_must_match() -> None:
    server = Connection(Role.SERVER)
    with pytest.raises(PrefaceError, match="magic"):
        server.receive_data(frame(FrameType.PREFACE, 0, 0, b"muxwsgi/2"))


def test_client_explains_an_http_peer() -> None:
    client = Connection(Role.CLIENT)
    with pytest.raises(PrefaceError, match="HTTP server"):
        client.receive_data(b"HTTP/1.1 400 Bad Request\r\n\r\n")


@spec("S-6")
def test_goaway_after_connection_error_covers_only_reported_streams() -> None:
    server = server_after_preface()
    assert [type(e) for e in server.receive_data(headers(1, GET))] == [
        RequestReceived,
        StreamEnded,
    ]
    server.data_to_send()
    with pytest.raises(RemoteProtocolError):
        # stream 3 is valid, but it arrives with an error in the same read: never handed over.
        server.receive_data(headers(3, GET) + data(9, b"x"))
    goaway_frame = frames_of(server.data_to_send())[-1]
    assert struct.unpack("<II", goaway_frame.payload[:8]) == (1, ErrorCode.PROTOCOL_ERROR)


def last_goaway(connection: Connection) -> tuple[int, int]:
    """(last stream id, error code) of the last frame queued, which must be a GOAWAY."""
    out = frames_of(connection.data_to_send())[-1]
    assert out.type == FrameType.GOAWAY
    last_stream_id, code = struct.unpack("<II", out.payload[:8])
    return last_stream_id, code


@spec("S-6")
@pytest.mark.parametrize("ending", ["connection error", "graceful"])
@pytest.mark.parametrize(
    ("concurrency", "head", "code"),
    [(100, ["", "x"], ErrorCode.PROTOCOL_ERROR), (1, GET, ErrorCode.REFUSED_STREAM)],
    ids=["malformed", "refused"],
)
def test_goaway_never_covers_streams_reset_before_the_application(
    ending: str, concurrency: int, head: dict[str, str] | list[str], code: ErrorCode
) -> None:
    """Stream 1 reaches the application; streams 3 and 5 are reset and never reported. Whether
    the connection then fails or shuts down gracefully, the GOAWAY's last stream id is 1, not
    the highest id received."""
    server = server_after_preface(small_settings(max_concurrent_streams=concurrency))
    server.receive_data(settings_frame([], flags=1))  # the limit applies from the ACK on
    assert type(server.receive_data(headers(1, GET, end=False))[0]) is RequestReceived
    events = server.receive_data(headers(3, head) + headers(5, head))
    assert events == [StreamReset(3, code, False), StreamReset(5, code, False)]
    server.data_to_send()
    if ending == "graceful":
        server.send_goaway()
        assert last_goaway(server) == (1, ErrorCode.NO_ERROR)
    else:
        with pytest.raises(RemoteProtocolError):
            server.receive_data(data(9, b"x"))  # DATA on an idle stream
        assert last_goaway(server) == (1, ErrorCode.PROTOCOL_ERROR)


@spec("S-6", "L-1")
def test_malformed_headers_flood_goaway_covers_no_stream() -> None:
    """Every head is malformed: each stream is reset, none reaches the application, and the
    GOAWAY that ends the flood covers no stream at all."""
    server, _ = flood_server(glitch_burst=50, glitch_rate=0.0)
    events = server.receive_data(b"".join(headers(2 * i + 1, ["", "x"]) for i in range(50)))
    assert {type(e) for e in events} == {StreamReset}
    with pytest.raises(FloodError):
        server.receive_data(headers(101, ["", "x"]))
    assert last_goaway(server) == (0, ErrorCode.ENHANCE_YOUR_CALM)


# ---------------------------------------------------------------- stream errors


def _body(sid: int, payload: bytes, end: bool = True) -> bytes:
    return data(sid, payload, end)


# (ids, what, bytes fed after the client PREFACE+ACK, stream that must be reset, code)
STREAM_ERRORS: list[tuple[str, str, bytes, int, ErrorCode]] = [
    ("H-1", "request head not msgpack", frame(FrameType.HEADERS, 1, 1, b"\xc1"), 1,
     ErrorCode.PROTOCOL_ERROR),
    ("H-1", "request head a map", frame(FrameType.HEADERS, 1, 1, msgpack.packb({"A": "b"})), 1,
     ErrorCode.PROTOCOL_ERROR),
    ("H-2", "duplicate CONTENT_LENGTH",
     headers(1, ["CONTENT_LENGTH", "0", "CONTENT_LENGTH", "5"]), 1, ErrorCode.PROTOCOL_ERROR),
    ("H-3", "CRLF in a value", headers(1, ["HTTP_X", "a\r\nb"]), 1, ErrorCode.PROTOCOL_ERROR),
    ("H-3", "empty name", headers(1, ["", "a"]), 1, ErrorCode.PROTOCOL_ERROR),
    ("H-5", "second HEADERS on an open stream",
     headers(1, POST5, end=False) + headers(1, GET), 1, ErrorCode.PROTOCOL_ERROR),
    ("H-6", "CONTENT_LENGTH '+5'", headers(1, {**GET, "CONTENT_LENGTH": "+5"}, end=False), 1,
     ErrorCode.PROTOCOL_ERROR),
    ("H-8", "more body than CONTENT_LENGTH",
     headers(1, POST5, end=False) + _body(1, b"123456"), 1, ErrorCode.PROTOCOL_ERROR),
    ("H-7", "END_STREAM before CONTENT_LENGTH",
     headers(1, POST5, end=False) + _body(1, b"1234"), 1, ErrorCode.PROTOCOL_ERROR),
    ("H-7", "CONTENT_LENGTH with END_STREAM on HEADERS", headers(1, POST5, end=True), 1,
     ErrorCode.PROTOCOL_ERROR),
    ("R-2", "DATA after END_STREAM", headers(1, GET, end=True) + _body(1, b"x"), 1,
     ErrorCode.STREAM_CLOSED),
    ("R-2", "HEADERS after END_STREAM", headers(1, GET, end=True) + headers(1, GET), 1,
     ErrorCode.STREAM_CLOSED),
    ("W-3", "stream window overrun",
     headers(1, {**GET, "CONTENT_LENGTH": ""}, end=False) + data(1, b"x" * 16384) * 4, 1,
     ErrorCode.FLOW_CONTROL_ERROR),
    ("W-4", "WINDOW_UPDATE of 0 on a stream", headers(1, GET) + window_update(1, 0), 1,
     ErrorCode.PROTOCOL_ERROR),
    ("W-5", "stream window above 2^31-1", headers(1, GET) + window_update(1, 2**31 - 1), 1,
     ErrorCode.FLOW_CONTROL_ERROR),
    ("T-1", "deadline '1.5'", headers(1, {**GET, "MUXWSGI_TIMEOUT_MS": "1.5"}), 1,
     ErrorCode.PROTOCOL_ERROR),
    ("T-1", "empty deadline", headers(1, {**GET, "MUXWSGI_TIMEOUT_MS": ""}), 1,
     ErrorCode.PROTOCOL_ERROR),
    ("T-1", "deadline in Arabic-Indic digits",
     headers(1, {**GET, "MUXWSGI_TIMEOUT_MS": "\u0661\u0665"}), 1, ErrorCode.PROTOCOL_ERROR),
]  # fmt: skip


@pytest.mark.parametrize(
    ("ids", "what", "wire", "stream_id", "code"),
    STREAM_ERRORS,
    ids=[c[1] for c in STREAM_ERRORS],
)
def test_stream_errors(ids: str, what: str, wire: bytes, stream_id: int, code: ErrorCode) -> None:
    # A connection window larger than a stream's, as real servers have, so that a stream
    # overrun is not first a connection overrun.
    server = server_after_preface(ConnectionConfig(connection_window_size=1 << 20))
    server.receive_data(settings_frame([], flags=1))
    server.data_to_send()
    events = server.receive_data(wire)
    assert StreamReset(stream_id, code, False) in events
    out = frames_of(server.data_to_send())
    assert (FrameType.RESET, stream_id, struct.pack("<I", code)) in [
        (f.type, f.stream_id, f.payload) for f in out
    ]
    assert not server.is_open(stream_id)
    # the connection and other streams go on.
    assert server.state is ConnectionState.OPEN
    events = server.receive_data(headers(101, GET))
    assert events[0] == RequestReceived(101, GET, True, None, None)


test_stream_errors = spec(*sorted({c[0] for c in STREAM_ERRORS}), "X-3", "X-4")(test_stream_errors)


@spec("H-4")
def test_headers_too_large_by_size_and_count() -> None:
    pair = ConnectionPair(
        server_config=ConnectionConfig(settings=Settings(max_headers_size=600, max_headers_count=3))
    )
    server = pair.server
    big = {**GET, "HTTP_COOKIE": "x" * 700}
    events = server.receive_data(headers(1, big))
    assert events == [StreamReset(1, ErrorCode.HEADERS_TOO_LARGE, False)]
    events = server.receive_data(headers(3, {"A": "1", "B": "2", "C": "3", "D": "4"}))
    assert events == [StreamReset(3, ErrorCode.HEADERS_TOO_LARGE, False)]
    # The client knows the limits from the PREFACE and refuses locally.
    with pytest.raises(LocalProtocolError) as info:
        pair.client.send_request(big, end_stream=True)
    assert info.value.error_code == ErrorCode.HEADERS_TOO_LARGE


@spec("C-2", "X-4")
def test_excess_stream_is_refused_alone() -> None:
    pair = ConnectionPair(
        server_config=ConnectionConfig(settings=Settings(max_concurrent_streams=2))
    )
    server = pair.server
    events = server.receive_data(headers(1, GET) + headers(3, GET) + headers(5, GET))
    assert StreamReset(5, ErrorCode.REFUSED_STREAM, False) in events
    assert server.is_open(1) and server.is_open(3) and not server.is_open(5)
    assert server.counters.streams_refused == 1
    server.send_response(1, 200, [], end_stream=True)
    events = server.receive_data(headers(7, GET))
    assert events[0].stream_id == 7 and type(events[0]) is RequestReceived


# ---------------------------------------------------------------- normal operation


@spec("P-1", "D-2", "P-4", "E-4")
def test_handshake() -> None:
    client = Connection(Role.CLIENT)
    server = Connection(Role.SERVER)
    first = client.data_to_send()
    assert first.startswith(b"\x24") and MAGIC in first[:17]
    assert frames_of(server.data_to_send())[0].type == FrameType.PREFACE
    events = server.receive_data(first)
    assert type(events[0]) is SettingsChanged
    assert frames_of(server.data_to_send()) == [(FrameType.SETTINGS, 1, 0, b"")]


@spec("P-5")
def test_requests_before_the_server_preface() -> None:
    client = Connection(Role.CLIENT)
    sid = client.send_request(GET, end_stream=True)
    server = Connection(Role.SERVER)
    events = server.receive_data(client.data_to_send())
    assert [type(e) for e in events] == [SettingsChanged, RequestReceived, StreamEnded]
    assert events[1].stream_id == sid
    assert client.remote_settings == Settings()  # defaults until the server's PREFACE


@spec("I-1", "I-2")
def test_client_stream_ids_are_odd_and_increasing() -> None:
    pair = ConnectionPair()
    ids = [pair.client.send_request(GET, end_stream=True) for _ in range(4)]
    assert ids == [1, 3, 5, 7]


@spec("I-5")
def test_stream_ids_run_out() -> None:
    client = client_after_preface()
    client._next_stream_id = MAX_STREAM_ID
    assert client.send_request(GET, end_stream=True) == MAX_STREAM_ID
    with pytest.raises(TooManyStreamsError, match="exhausted"):
        client.send_request(GET, end_stream=True)


@spec("I-3")
def test_reusing_a_closed_stream_id_is_a_connection_error() -> None:
    server = server_after_preface()
    server.receive_data(headers(1, GET))
    server.send_response(1, 204, [], end_stream=True)
    assert not server.is_open(1)
    with pytest.raises(RemoteProtocolError):
        server.receive_data(headers(1, GET))


def test_request_with_a_vars_block() -> None:
    # The block's vars arrive with the request's own; its CONTENT_LENGTH binds the body; its
    # vars count against the peer's limit.
    pair = ConnectionPair(
        server_config=ConnectionConfig(settings=Settings(max_headers_count=len(GET) + 2))
    )
    block = VarsBlock(msgpack.packb, {"HTTP_X_A": "1", "CONTENT_LENGTH": "5"})
    method = {**GET, "REQUEST_METHOD": "POST"}
    sid = pair.client.send_request(method, body=b"hello", end_stream=True, block=block)
    events = pair.to_server()
    assert events[0] == RequestReceived(
        sid, {**method, "HTTP_X_A": "1", "CONTENT_LENGTH": "5"}, False, 5, None
    )
    with pytest.raises(LocalProtocolError, match="more body than CONTENT_LENGTH"):
        pair.client.send_request(method, body=b"hello!", end_stream=True, block=block)
    assert pair.client.data_to_send() == b""  # checked before the head was queued
    with pytest.raises(LocalProtocolError) as info:
        pair.client.send_request(
            {**method, "HTTP_Y": "2"}, body=b"hello", end_stream=True, block=block
        )
    assert info.value.error_code == ErrorCode.HEADERS_TOO_LARGE


def test_full_exchange_with_body_both_ways() -> None:
    pair = ConnectionPair()
    sid = pair.client.send_request(POST5, body=b"hello", end_stream=True)
    events = pair.to_server()
    assert events == [
        RequestReceived(sid, POST5, False, 5, None),
        DataReceived(sid, b"hello", 5, True),
        StreamEnded(sid),
    ]
    pair.server.send_response(sid, 201, [("X-A", "1")], body=b"done", end_stream=True)
    events = pair.to_client()
    assert events == [
        ResponseReceived(sid, 201, "Created", [("X-A", "1")], False),
        DataReceived(sid, b"done", 4, True),
        StreamEnded(sid),
    ]
    assert pair.client.open_streams == pair.server.open_streams == 0


@spec("T-1")
def test_deadline_var_is_parsed() -> None:
    server = server_after_preface()
    events = server.receive_data(headers(1, {**GET, "MUXWSGI_TIMEOUT_MS": "250"}))
    assert events[0].timeout_ms == 250


@spec("F-4")
def test_unknown_frame_types_are_ignored() -> None:
    server = server_after_preface()
    events = server.receive_data(frame(0x50, 0xFF, 12345, b"whatever") + headers(1, GET))
    assert [type(e) for e in events] == [RequestReceived, StreamEnded]
    assert server.counters.glitches == 1


@spec("F-5")
def test_unknown_flags_are_ignored() -> None:
    server = server_after_preface()
    events = server.receive_data(frame(FrameType.HEADERS, 0xFE, 1, msgpack.packb(["A", "b"])))
    assert events == [RequestReceived(1, {"A": "b"}, False, None, None)]
    events = server.receive_data(frame(FrameType.DATA, 0xFF, 1, b"x"))
    assert events == [DataReceived(1, b"x", 1, True), StreamEnded(1)]


@spec("K-1")
def test_ping_is_acknowledged_and_acks_are_not() -> None:
    pair = ConnectionPair()
    pair.client.ping(b"abcdefgh")
    assert pair.to_server() == [PingReceived(b"abcdefgh")]
    assert frames_of(pair.server.data_to_send()) == [(FrameType.PING, 1, 0, b"abcdefgh")]
    pair.client.receive_data(frame(FrameType.PING, 1, 0, b"abcdefgh"))
    assert pair.client.data_to_send() == b""


def test_ping_round_trip() -> None:
    pair = ConnectionPair()
    pair.client.ping(b"12345678")
    pair.to_server()
    assert pair.to_client() == [PingAcknowledged(b"12345678")]
    assert pair.client.counters.glitches == 0


@spec("E-3", "E-4")
def test_unknown_settings_are_ignored_and_acked() -> None:
    server = server_after_preface()
    events = server.receive_data(settings_frame([(0x77, 5), (SettingCode.MAX_FRAME_SIZE, 20000)]))
    assert events == [SettingsChanged({SettingCode.MAX_FRAME_SIZE: 20000})]
    assert server.remote_settings.max_frame_size == 20000
    assert frames_of(server.data_to_send()) == [(FrameType.SETTINGS, 1, 0, b"")]


@spec("E-5")
def test_local_settings_apply_when_acknowledged() -> None:
    server = Connection(Role.SERVER, ConnectionConfig(settings=Settings(max_concurrent_streams=1)))
    # Before the client ACKs, the client may rightly assume the default of 100.
    events = server.receive_data(preface() + headers(1, GET) + headers(3, GET))
    assert [type(e) for e in events].count(RequestReceived) == 2
    events = server.receive_data(settings_frame([], flags=1))
    assert events == [SettingsAcknowledged(dict(server.local_settings.items()))]
    events = server.receive_data(headers(5, GET))
    assert events == [StreamReset(5, ErrorCode.REFUSED_STREAM, False)]


@spec("E-7", "W-1")
def test_initial_window_change_shifts_open_streams() -> None:
    pair = ConnectionPair()
    sid = pair.client.send_request(POST5 | {"CONTENT_LENGTH": ""})
    pair.to_server()
    assert pair.client.outbound_window(sid) == 65535
    pair.server.update_settings({SettingCode.INITIAL_WINDOW_SIZE: 1000})
    pair.exchange()
    assert pair.client.outbound_window(sid) == 1000
    pair.server.update_settings({SettingCode.INITIAL_WINDOW_SIZE: 0})
    pair.exchange()
    assert pair.client.outbound_window(sid) == 0


@spec("E-7", "W-2")
def test_initial_window_raise_wakes_streams_waiting_to_send() -> None:
    """A response blocked on a small stream window resumes when the client raises
    INITIAL_WINDOW_SIZE: the server learns it from WindowUpdated, as from a WINDOW_UPDATE."""
    pair = ConnectionPair(client_config=small_settings(initial_window_size=100))
    server = pair.server
    waiting = pair.client.send_request(GET, end_stream=True)
    answered = pair.client.send_request({**GET, "REQUEST_METHOD": "POST"})  # still uploading
    pair.to_server()
    server.send_response(waiting, 200, [], body=b"x" * 100)
    server.send_response(answered, 200, [], end_stream=True)  # nothing left to send
    assert server.outbound_window(waiting) == 0
    pair.to_client()
    pair.client.update_settings({SettingCode.INITIAL_WINDOW_SIZE: 5000})
    assert pair.to_server() == [
        SettingsChanged({SettingCode.INITIAL_WINDOW_SIZE: 5000}),
        WindowUpdated(waiting, 4900),
    ]
    assert server.outbound_window(waiting) == 4900
    server.send_data(waiting, b"x" * 900, end_stream=True)
    assert pair.to_client()[-2:] == [
        DataReceived(waiting, b"x" * 900, 900, True),
        StreamEnded(waiting),
    ]
    # A decrease opens nothing: no event beyond the settings.
    pair.client.update_settings({SettingCode.INITIAL_WINDOW_SIZE: 50})
    assert pair.to_server() == [SettingsChanged({SettingCode.INITIAL_WINDOW_SIZE: 50})]


@spec("W-2", "W-4", "W-7")
def test_flow_control_and_backpressure() -> None:
    pair = ConnectionPair()
    client, server = pair.client, pair.server
    sid = client.send_request({**GET, "REQUEST_METHOD": "POST"})
    pair.to_server()
    window = client.outbound_window(sid)
    assert window == 65535
    client.send_data(sid, b"x" * window)
    with pytest.raises(LocalProtocolError) as info:
        client.send_data(sid, b"x")
    assert info.value.error_code == ErrorCode.FLOW_CONTROL_ERROR
    events = pair.to_server()
    assert sum(e.flow_controlled_length for e in events if type(e) is DataReceived) == window
    # No credit comes back until the application consumes the bytes.
    assert pair.to_client() == []
    server.acknowledge_received_data(sid, 1000)  # below half the window: no update yet
    assert pair.to_client() == []
    server.acknowledge_received_data(sid, window - 1000)
    events = pair.to_client()
    assert WindowUpdated(sid, window) in events and WindowUpdated(0, window) in events
    assert client.outbound_window(sid) == window


@spec("W-8")
def test_connection_window_raised_after_preface() -> None:
    client = Connection(Role.CLIENT, ConnectionConfig(connection_window_size=1 << 20))
    out = frames_of(client.data_to_send())
    assert out[0].type == FrameType.PREFACE
    assert out[1] == (FrameType.WINDOW_UPDATE, 0, 0, struct.pack("<I", (1 << 20) - 65535))


@spec("W-6", "R-3")
def test_data_on_a_reset_stream_still_returns_connection_credit() -> None:
    pair = ConnectionPair()
    sid = pair.client.send_request({**GET, "REQUEST_METHOD": "POST"})
    pair.to_server()
    pair.client.send_data(sid, b"x" * 40000)  # in flight when the server gives up
    pair.server.reset_stream(sid, ErrorCode.CANCEL)
    # The DATA was in flight: it is ignored, and its connection credit goes back.
    events = pair.to_server()
    assert events == []
    out = frames_of(pair.server.data_to_send())
    returned = sum(
        struct.unpack("<I", f.payload)[0]
        for f in out
        if f.type == FrameType.WINDOW_UPDATE and f.stream_id == 0
    )
    assert returned == 32768  # updates go in half-window steps ([W-7])
    # Nothing is lost: the window plus the credit not yet returned is the whole window.
    flow = pair.server._flow
    assert flow.recv_window + flow.recv_processed == 65535
    assert flow.recv_processed == 40000 - 32768


@spec("R-3", "R-4")
def test_frames_on_closed_streams_are_ignored() -> None:
    pair = ConnectionPair()
    sid = pair.client.send_request(GET, end_stream=True)
    pair.to_server()
    pair.server.send_response(sid, 200, [], end_stream=True)
    pair.to_client()
    assert pair.server.receive_data(reset(sid, 8) + window_update(sid, 5)) == []
    assert pair.server.data_to_send() == b""  # never RESET in answer to a RESET


@spec("R-1")
def test_illegal_sends_raise_local_errors() -> None:
    pair = ConnectionPair()
    sid = pair.client.send_request(GET, end_stream=True)
    with pytest.raises(LocalProtocolError):
        pair.client.send_data(sid, b"x")  # after END_STREAM
    pair.to_server()
    pair.server.send_response(sid, 200, [])
    with pytest.raises(LocalProtocolError):
        pair.server.send_response(sid, 200, [])  # a second head
    with pytest.raises(LocalProtocolError):
        pair.server.send_request(GET)  # servers do not open streams
    with pytest.raises(LocalProtocolError):
        pair.client.send_response(sid, 200, [])
    with pytest.raises(LocalProtocolError):
        pair.client.reset_stream(99)  # never opened
    with pytest.raises(LocalProtocolError, match="CONTENT_LENGTH"):
        sid2 = pair.client.send_request(POST5)
        pair.client.send_data(sid2, b"123456")


def test_reset_is_idempotent_and_reported() -> None:
    pair = ConnectionPair()
    sid = pair.client.send_request(GET, end_stream=True)
    pair.to_server()
    pair.client.reset_stream(sid)
    pair.client.reset_stream(sid)  # already closed: no second RESET
    assert [f.type for f in frames_of(pair.client.data_to_send())] == [FrameType.RESET]
    pair.client.reset_stream(sid)
    pair.client.receive_data(b"")
    pair2 = ConnectionPair()
    sid = pair2.client.send_request(GET, end_stream=True)
    pair2.to_server()
    pair2.client.reset_stream(sid, ErrorCode.CANCEL)
    assert pair2.to_server() == [StreamReset(sid, ErrorCode.CANCEL, True)]


@spec("X-1")
def test_unknown_error_code_means_internal_error() -> None:
    server = server_after_preface()
    server.receive_data(headers(1, GET))
    assert server.receive_data(reset(1, 0xDEAD)) == [StreamReset(1, ErrorCode.INTERNAL_ERROR)]


@spec("C-1")
def test_client_respects_max_concurrent_streams() -> None:
    pair = ConnectionPair(
        server_config=ConnectionConfig(settings=Settings(max_concurrent_streams=2))
    )
    pair.client.send_request(GET, end_stream=True)
    pair.client.send_request(GET, end_stream=True)
    assert not pair.client.can_open_stream
    with pytest.raises(TooManyStreamsError):
        pair.client.send_request(GET, end_stream=True)


# ---------------------------------------------------------------- GOAWAY


@spec("S-1")
def test_server_refuses_streams_after_its_goaway() -> None:
    server = server_after_preface()
    server.receive_data(headers(1, GET))
    server.send_goaway()
    assert server.state is ConnectionState.CLOSING
    assert frames_of(server.data_to_send()) == [(FrameType.GOAWAY, 0, 0, struct.pack("<II", 1, 0))]
    assert server.receive_data(headers(3, GET)) == []
    assert frames_of(server.data_to_send()) == [
        (FrameType.RESET, 0, 3, struct.pack("<I", ErrorCode.REFUSED_STREAM))
    ]
    # stream 1 still completes
    server.send_response(1, 200, [], body=b"ok", end_stream=True)


@spec("S-2", "S-3", "X-5")
def test_client_goaway_refuses_streams_above_last_id() -> None:
    pair = ConnectionPair()
    ids = [pair.client.send_request(GET, end_stream=True) for _ in range(3)]
    pair.to_server()
    events = pair.client.receive_data(goaway(ids[0], ErrorCode.NO_ERROR, b"reload"))
    assert events == [
        StreamReset(ids[1], ErrorCode.REFUSED_STREAM, True),
        StreamReset(ids[2], ErrorCode.REFUSED_STREAM, True),
        ConnectionTerminated(ErrorCode.NO_ERROR, ids[0], b"reload"),
    ]
    assert pair.client.is_open(ids[0])
    with pytest.raises(TooManyStreamsError, match="going away"):
        pair.client.send_request(GET, end_stream=True)


@spec("S-4")
def test_goaway_last_id_must_not_increase() -> None:
    client = client_after_preface()
    client.receive_data(goaway(5, 0))
    with pytest.raises(RemoteProtocolError):
        client.receive_data(goaway(7, 0))
    server = server_after_preface()
    server.send_goaway(last_stream_id=MAX_STREAM_ID)
    server.send_goaway(last_stream_id=0)
    with pytest.raises(LocalProtocolError):
        server.send_goaway(last_stream_id=1)


@spec("S-5")
def test_two_step_graceful_goaway() -> None:
    pair = ConnectionPair()
    first = pair.client.send_request(GET, end_stream=True)
    pair.to_server()
    pair.server.send_goaway(last_stream_id=MAX_STREAM_ID)
    in_flight = pair.client.send_request(GET, end_stream=True)  # sent before GOAWAY arrived
    pair.to_client()
    assert next(type(e) for e in pair.to_server()) is RequestReceived  # still accepted
    pair.server.send_goaway()  # now the real last id
    events = pair.to_client()
    assert events == [ConnectionTerminated(ErrorCode.NO_ERROR, in_flight, b"")]
    assert pair.client.is_open(first) and pair.client.is_open(in_flight)


def test_goaway_with_error_closes() -> None:
    server = server_after_preface()
    server.send_goaway(ErrorCode.INTERNAL_ERROR)
    assert server.state is ConnectionState.CLOSED
    with pytest.raises(LocalProtocolError):
        server.ping(b"12345678")


# ---------------------------------------------------------------- floods


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def flood_server(**limits: int | float) -> tuple[Connection, FakeClock]:
    clock = FakeClock()
    server = server_after_preface(ConnectionConfig(flood=FloodLimits(**limits), clock=clock))  # type: ignore[arg-type]
    return server, clock


@spec("L-1")
def test_reset_flood() -> None:
    server, clock = flood_server(reset_burst=10, reset_rate=1.0)
    wire = b"".join(headers(2 * i + 1, GET) + reset(2 * i + 1, 8) for i in range(10))
    server.receive_data(wire)  # 10 resets: the burst
    clock.now += 1.0  # one token back
    server.receive_data(headers(21, GET) + reset(21, 8))
    with pytest.raises(FloodError) as info:
        server.receive_data(headers(23, GET) + reset(23, 8))
    assert info.value.error_code == ErrorCode.ENHANCE_YOUR_CALM


@spec("L-1")
@pytest.mark.parametrize(
    ("limits", "unit"),
    [
        ({"ping_burst": 5, "ping_rate": 0.0}, frame(FrameType.PING, 0, 0, b"p" * 8)),
        ({"settings_burst": 5, "settings_rate": 0.0}, settings_frame([])),
        ({"glitch_burst": 5, "glitch_rate": 0.0}, frame(0x60)),  # unknown type
        ({"glitch_burst": 5, "glitch_rate": 0.0}, frame(FrameType.PING, 1, 0, b"u" * 8)),
    ],
    ids=["ping", "settings", "unknown frames", "unsolicited ping acks"],
)
def test_control_floods(limits: dict[str, float], unit: bytes) -> None:
    server, _ = flood_server(**limits)
    server.receive_data(unit * 5)
    with pytest.raises(FloodError):
        server.receive_data(unit)


@spec("L-1")
def test_empty_data_frames_are_glitches() -> None:
    server, _ = flood_server(glitch_burst=3, glitch_rate=0.0)
    server.receive_data(headers(1, {**GET, "REQUEST_METHOD": "POST"}, end=False))
    server.receive_data(data(1, b"") * 3)
    assert server.counters.empty_frames == 3
    with pytest.raises(FloodError):
        server.receive_data(data(1, b""))


@spec("L-1")
def test_invalid_requests_are_glitches() -> None:
    server, _ = flood_server(glitch_burst=3, glitch_rate=0.0)
    bad = [headers(2 * i + 1, ["", "x"]) for i in range(4)]
    server.receive_data(b"".join(bad[:3]))
    with pytest.raises(FloodError):
        server.receive_data(bad[3])


@spec("L-2")
def test_queued_control_replies_are_bounded() -> None:
    server, _ = flood_server(max_queued_control=10, ping_burst=1000)
    ping = frame(FrameType.PING, 0, 0, b"p" * 8)
    server.receive_data(ping * 10)
    with pytest.raises(FloodError, match="does not read"):
        server.receive_data(ping)
    # Draining the output between reads is what a well-behaved server does.
    server2, _ = flood_server(max_queued_control=10, ping_burst=1000)
    for _ in range(5):
        server2.receive_data(ping * 10)
        server2.data_to_send()


def test_counters_move() -> None:
    pair = ConnectionPair()
    sid = pair.client.send_request(GET, end_stream=True)
    pair.client.ping(b"12345678")
    pair.to_server()
    pair.client.reset_stream(sid)
    pair.to_server()
    c = pair.server.counters
    assert (c.streams_opened, c.resets_received, c.pings_received) == (1, 1, 1)


@spec("K-2")
def test_ping_ack_jumps_queued_data_but_settings_ack_does_not() -> None:
    pair = ConnectionPair()
    sid = pair.client.send_request(GET, end_stream=True)
    pair.to_server()
    pair.server.send_response(sid, 200, [], body=b"x" * 1000)
    pair.server.receive_data(frame(FrameType.PING, 0, 0, b"rttprobe") + settings_frame([]))
    out = [f.type for f in frames_of(pair.server.data_to_send())]
    assert out == [FrameType.PING, FrameType.HEADERS, FrameType.DATA, FrameType.SETTINGS]


@spec("E-7")
def test_end_stream_passes_a_negative_window() -> None:
    """Found by test_stateful: a window shrunk below zero must not block an empty END_STREAM."""
    pair = ConnectionPair()
    sid = pair.client.send_request({**GET, "REQUEST_METHOD": "POST"})
    pair.client.send_data(sid, b"x")
    pair.to_server()
    pair.server.update_settings({SettingCode.INITIAL_WINDOW_SIZE: 0})
    pair.exchange()
    assert pair.client._streams[sid].send_window == -1
    assert pair.client.outbound_window(sid) == 0
    pair.client.end_stream(sid)
    assert StreamEnded(sid) in pair.to_server()


@spec("K-2", "P-1")
def test_ping_ack_never_jumps_ahead_of_the_preface() -> None:
    """Found by the server tests: the first frame must stay the PREFACE."""
    server = Connection(Role.SERVER)
    server.receive_data(preface() + frame(FrameType.PING, 0, 0, b"early!!!"))
    out = frames_of(server.data_to_send())
    assert [f.type for f in out] == [FrameType.PREFACE, FrameType.PING, FrameType.SETTINGS]
