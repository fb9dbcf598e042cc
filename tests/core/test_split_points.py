"""The same byte stream, however it is cut into reads, yields the same events ([F-6])."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from muxwsgi import Connection, Event, FrameType, Role

from .helpers import SIMPLE_VARS, data, frame, headers, preface, reset, spec, window_update

POST = {**SIMPLE_VARS, "REQUEST_METHOD": "POST", "CONTENT_LENGTH": "11"}

# A client's side of a busy connection: preface, GETs, a POST with a body in two frames, a
# ping, a reset, a window update, an unknown frame, an empty DATA.
WIRE = (
    preface({1: 50, 2: 100000})
    + frame(FrameType.SETTINGS, 1, 0)
    + headers(1, SIMPLE_VARS)
    + headers(3, POST, end=False)
    + data(3, b"hello ")
    + frame(FrameType.PING, 0, 0, b"pingpong")
    + headers(5, SIMPLE_VARS, end=False)
    + data(3, b"world", end=True)
    + reset(5, 8)
    + window_update(0, 1000)
    + frame(0x70, 0, 0, b"extension")
    + headers(7, {**SIMPLE_VARS, "REQUEST_METHOD": "PUT"}, end=False)
    + data(7, b"")
    + data(7, b"", end=True)
)


def feed(chunks: list[bytes]) -> tuple[list[Event], bytes]:
    server = Connection(Role.SERVER)
    events: list[Event] = []
    for chunk in chunks:
        events += server.receive_data(chunk)
    return events, server.data_to_send()


WHOLE = feed([WIRE])


@spec("F-6")
def test_every_single_split_point() -> None:
    assert len(WHOLE[0]) > 10
    for cut in range(len(WIRE) + 1):
        assert feed([WIRE[:cut], WIRE[cut:]]) == WHOLE, f"split at byte {cut}"


@spec("F-6")
def test_byte_by_byte() -> None:
    assert feed([WIRE[i : i + 1] for i in range(len(WIRE))]) == WHOLE


@spec("F-6")
@given(st.lists(st.integers(0, len(WIRE)), max_size=12))
def test_any_set_of_split_points(cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(WIRE)]
    chunks = [WIRE[a:b] for a, b in itertools.pairwise(bounds)]
    assert feed(chunks) == WHOLE
