"""Arbitrary input never raises anything but a ProtocolError subclass (nor hangs, nor grows)."""

from __future__ import annotations

import struct

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from muxwsgi import Connection, ConnectionState, FrameType, ProtocolError, Role
from muxwsgi._frames import FRAME_HEADER, encode_settings

from .helpers import SIMPLE_VARS, headers, preface

u32 = st.one_of(
    st.sampled_from([0, 1, 7, 8, 1000, 65535, 65536, 2**31 - 1, 2**31, 2**32 - 1]),
    st.integers(0, 2**32 - 1),
)
stream_ids = st.one_of(st.sampled_from([0, 1, 3, 5, 7, 2, 2**31 - 1]), st.integers(0, 2**32 - 1))
request_heads = st.one_of(
    st.just(msgpack.packb([x for kv in SIMPLE_VARS.items() for x in kv])),
    st.builds(
        lambda cl: msgpack.packb(["REQUEST_METHOD", "POST", "CONTENT_LENGTH", cl]),
        st.sampled_from(["", "0", "3", "10", "x", "-1"]),
    ),
    st.builds(msgpack.packb, st.lists(st.text(max_size=5), max_size=6)),
)
response_heads = st.one_of(
    st.just(msgpack.packb([200, "OK", "Content-Type", "text/plain"])),
    st.builds(
        msgpack.packb,
        st.lists(st.one_of(st.integers(-(2**63), 2**64 - 1), st.text(max_size=5)), max_size=5),
    ),
)
settings_lists = st.builds(encode_settings, st.lists(st.tuples(st.integers(0, 8), u32), max_size=6))


def frames(heads: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    by_type = {
        FrameType.HEADERS: st.one_of(heads, st.binary(max_size=20)),
        FrameType.DATA: st.binary(max_size=40),
        FrameType.RESET: st.builds(lambda n: struct.pack("<I", n), u32),
        FrameType.SETTINGS: st.one_of(settings_lists, st.binary(max_size=13)),
        FrameType.PING: st.binary(min_size=8, max_size=8),
        FrameType.GOAWAY: st.builds(lambda a, b: struct.pack("<II", a, b), u32, u32),
        FrameType.WINDOW_UPDATE: st.builds(lambda n: struct.pack("<I", n), u32),
        FrameType.PREFACE: st.binary(max_size=20),
    }
    typed = st.sampled_from(sorted(by_type)).flatmap(
        lambda t: st.tuples(st.just(int(t)), by_type[t])
    )
    untyped = st.tuples(st.integers(0, 255), st.binary(max_size=30))
    return st.builds(
        lambda tp, flags, sid: FRAME_HEADER.pack(tp[0], len(tp[1]), flags, sid) + tp[1],
        st.one_of(typed, typed, typed, untyped),
        st.sampled_from([0, 1, 0xFF]),
        stream_ids,
    )


def feed(conn: Connection, chunks: list[bytes]) -> None:
    for chunk in chunks:
        try:
            conn.receive_data(chunk)
        except ProtocolError:
            assert conn.state is ConnectionState.CLOSED
            assert conn.data_to_send()  # a GOAWAY was queued
            return
        conn.data_to_send()
        assert len(conn._buffer) < 65536 + 8  # never more than one partial frame


def chunked(wire: bytes, size: int) -> list[bytes]:
    return [wire[i : i + size] for i in range(0, len(wire), size)]


@pytest.mark.parametrize("role", [Role.SERVER, Role.CLIENT])
@given(st.lists(st.binary(max_size=200), max_size=6))
def test_random_bytes(role: Role, chunks: list[bytes]) -> None:
    feed(Connection(role), chunks)


@given(st.lists(frames(request_heads), max_size=30), st.integers(1, 64))
def test_server_random_frames(body: list[bytes], size: int) -> None:
    # Streams 1 (ended) and 3 (uploading) are open, so frames on them go deep.
    start = preface() + headers(1, SIMPLE_VARS) + headers(3, SIMPLE_VARS, end=False)
    feed(Connection(Role.SERVER), chunked(start + b"".join(body), size))


@given(st.lists(frames(response_heads), max_size=30), st.integers(1, 64))
def test_client_random_frames(body: list[bytes], size: int) -> None:
    client = Connection(Role.CLIENT)
    for end in (True, False, False, True):  # streams 1-7 are open, so frames on them go deep
        client.send_request({**SIMPLE_VARS, "CONTENT_LENGTH": ""}, end_stream=end)
    client.data_to_send()
    feed(client, chunked(preface() + b"".join(body), size))
