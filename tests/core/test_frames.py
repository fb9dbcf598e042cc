"""Byte-exact frame vectors (h11's SIMPLE_CASES style) and codec round trips."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from muxwsgi import ErrorCode, FrameType, SettingCode
from muxwsgi._frames import (
    FRAME_HEADER,
    MAGIC,
    Frame,
    encode_frame,
    encode_goaway,
    encode_reset,
    encode_settings,
    encode_window_update,
    split_frames,
)

from .helpers import spec

# (what, encoded by the library, the bytes PROTOCOL.md §3 says they must be)
VECTORS = [
    (
        "PREFACE, two settings",
        encode_frame(
            FrameType.PREFACE,
            0,
            0,
            MAGIC
            + encode_settings(
                [(SettingCode.MAX_CONCURRENT_STREAMS, 128), (SettingCode.INITIAL_WINDOW_SIZE, 1)]
            ),
        ),
        b"\x24\x15\x00\x00\x00\x00\x00\x00muxwsgi/1"
        b"\x01\x00\x80\x00\x00\x00"
        b"\x02\x00\x01\x00\x00\x00",
    ),
    (
        "HEADERS with END_STREAM on stream 1",
        encode_frame(FrameType.HEADERS, 1, 1, b"\x92\xa1A\xa1B"),
        b"\x25\x05\x00\x01\x01\x00\x00\x00\x92\xa1A\xa1B",
    ),
    (
        "DATA on stream 3",
        encode_frame(FrameType.DATA, 0, 3, b"hello"),
        b"\x26\x05\x00\x00\x03\x00\x00\x00hello",
    ),
    (
        "DATA, empty, END_STREAM, stream 2^31-1",
        encode_frame(FrameType.DATA, 1, 0x7FFFFFFF, b""),
        b"\x26\x00\x00\x01\xff\xff\xff\x7f",
    ),
    (
        "RESET CANCEL on stream 5",
        encode_reset(5, ErrorCode.CANCEL),
        b"\x27\x04\x00\x00\x05\x00\x00\x00\x08\x00\x00\x00",
    ),
    (
        "SETTINGS with MAX_FRAME_SIZE 65535",
        encode_frame(
            FrameType.SETTINGS, 0, 0, encode_settings([(SettingCode.MAX_FRAME_SIZE, 65535)])
        ),
        b"\x28\x06\x00\x00\x00\x00\x00\x00\x03\x00\xff\xff\x00\x00",
    ),
    (
        "SETTINGS ACK",
        encode_frame(FrameType.SETTINGS, 1, 0),
        b"\x28\x00\x00\x01\x00\x00\x00\x00",
    ),
    (
        "PING",
        encode_frame(FrameType.PING, 0, 0, b"12345678"),
        b"\x29\x08\x00\x00\x00\x00\x00\x0012345678",
    ),
    (
        "PING ACK",
        encode_frame(FrameType.PING, 1, 0, b"12345678"),
        b"\x29\x08\x00\x01\x00\x00\x00\x0012345678",
    ),
    (
        "GOAWAY last 7, ENHANCE_YOUR_CALM, debug",
        encode_goaway(7, ErrorCode.ENHANCE_YOUR_CALM, b"calm"),
        b"\x2a\x0c\x00\x00\x00\x00\x00\x00\x07\x00\x00\x00\x0b\x00\x00\x00calm",
    ),
    (
        "WINDOW_UPDATE connection +65536",
        encode_window_update(0, 65536),
        b"\x2b\x04\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00",
    ),
]


@spec("G-1", "F-1")
@pytest.mark.parametrize(("what", "encoded", "expected"), VECTORS, ids=[v[0] for v in VECTORS])
def test_frame_vectors(what: str, encoded: bytes, expected: bytes) -> None:
    assert encoded == expected
    frames, rest = split_frames(expected)
    assert rest == b""
    assert len(frames) == 1
    header = FRAME_HEADER.unpack_from(expected)
    assert frames[0] == Frame(header[0], header[2], header[3], expected[8:])
    assert header[1] == len(expected) - 8  # length counts the payload only


def test_every_frame_type_has_a_vector() -> None:
    covered = {v[2][0] for v in VECTORS}
    assert covered == {int(t) for t in FrameType}


@spec("D-1")
def test_frame_types_are_free_uwsgi_modifiers_and_not_letters_or_zero() -> None:
    # The modifier1 values no uWSGI plugin uses (reference/protocol.md §1.5).
    free = {4, 12, 13, 16, 20, 21, 29, 34, *range(36, 48), *range(49, 72), *range(75, 95)}
    for ftype in FrameType:
        assert ftype in free
        assert ftype != 0
        assert not 65 <= ftype <= 90


frame_strategy = st.builds(
    Frame,
    type=st.integers(0, 255),
    flags=st.integers(0, 255),
    stream_id=st.integers(0, 2**32 - 1),
    payload=st.binary(max_size=300),
)


@spec("F-1", "F-2")
@given(st.lists(frame_strategy, max_size=8), st.binary(max_size=7))
def test_frames_round_trip(frames: list[Frame], tail: bytes) -> None:
    wire = b"".join(encode_frame(f.type, f.flags, f.stream_id, f.payload) for f in frames)
    # A tail shorter than a header never decodes into a frame.
    decoded, rest = split_frames(wire + tail)
    assert decoded == frames
    assert rest == tail


@given(st.binary(max_size=0xFFFF + 100))
def test_payload_length_is_the_u16_field(payload: bytes) -> None:
    if len(payload) > 0xFFFF:
        with pytest.raises(struct.error):
            encode_frame(FrameType.DATA, 0, 1, payload)
    else:
        assert len(encode_frame(FrameType.DATA, 0, 1, payload)) == 8 + len(payload)


@given(st.lists(st.tuples(st.integers(0, 0xFFFF), st.integers(0, 2**32 - 1)), max_size=40))
def test_settings_list_round_trip(pairs: list[tuple[int, int]]) -> None:
    from muxwsgi._frames import iter_settings

    payload = encode_settings(pairs)
    assert len(payload) == 6 * len(pairs)
    assert iter_settings(payload) == pairs
