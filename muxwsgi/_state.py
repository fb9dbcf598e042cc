"""Every rule about which frame may appear where, written as data.

Rule 1 (borrowed from h11): everything that decides whether a frame or a send is legal lives in
this file, as tables; ``_connection.py`` only looks things up here and does the bookkeeping.
PROTOCOL.md §4 and §6 are these tables in prose.

A stream is two independent half-streams, one per direction. Each half goes
IDLE -> OPEN -> CLOSED on HEADERS, DATA and END_STREAM; a RESET closes both halves at once.
The stream is forgotten once both halves are CLOSED.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ._errors import ErrorCode
from ._frames import MAGIC, PING_LENGTH, FrameType

__all__ = (
    "FRAME_RULES",
    "HALF_STREAM_TRANSITIONS",
    "INVALID_RECEIVE_CODE",
    "FrameRule",
    "HalfState",
    "Input",
    "StreamPlace",
)


# IntEnum, not Enum: Enum.__hash__ is Python code and these are hashed for every frame.
class HalfState(enum.IntEnum):
    IDLE = 0  # nothing sent in this direction yet
    OPEN = 1  # HEADERS sent, more may follow
    CLOSED = 2  # END_STREAM sent (or the stream was reset)


class Input(enum.IntEnum):
    HEADERS = 0
    HEADERS_END = 1  # HEADERS with END_STREAM
    DATA = 2
    DATA_END = 3  # DATA with END_STREAM


#: (state of one direction, what travels in that direction) -> next state.
#: Anything not in this table is illegal: a LocalProtocolError when sending, a stream error
#: with INVALID_RECEIVE_CODE[state] when receiving.
HALF_STREAM_TRANSITIONS: dict[tuple[HalfState, Input], HalfState] = {
    (HalfState.IDLE, Input.HEADERS): HalfState.OPEN,
    (HalfState.IDLE, Input.HEADERS_END): HalfState.CLOSED,
    (HalfState.OPEN, Input.DATA): HalfState.OPEN,
    (HalfState.OPEN, Input.DATA_END): HalfState.CLOSED,
}

#: Why a received frame is illegal on a live stream, by the state of its direction.
INVALID_RECEIVE_CODE: dict[HalfState, ErrorCode] = {
    HalfState.IDLE: ErrorCode.PROTOCOL_ERROR,  # DATA before HEADERS
    HalfState.OPEN: ErrorCode.PROTOCOL_ERROR,  # a second HEADERS
    HalfState.CLOSED: ErrorCode.STREAM_CLOSED,  # anything after END_STREAM
}


class StreamPlace(enum.Enum):
    """Where a frame's stream id stands, which decides how a frame on it is treated."""

    CONNECTION = "connection"  # stream id 0
    LIVE = "live"  # an open stream
    CLOSED = "closed"  # opened once, now forgotten: late frames are ignored (a "glitch")
    IDLE = "idle"  # never opened: a connection PROTOCOL_ERROR, except HEADERS that open it


@dataclass(frozen=True)
class FrameRule:
    #: True: the frame belongs to stream 0 only; False: never on stream 0; None: either.
    connection_level: bool | None
    #: Exact payload length required (FRAME_SIZE_ERROR otherwise), or None.
    length: int | None = None
    #: Minimum payload length (FRAME_SIZE_ERROR below it).
    min_length: int = 0


#: Stream-id and length rules per frame type (PROTOCOL.md §4). Unknown types are not here:
#: they are ignored whatever their stream id or length. Breaking any of these is a connection
#: error (PROTOCOL_ERROR for the stream id, FRAME_SIZE_ERROR for the length).
FRAME_RULES: dict[int, FrameRule] = {
    FrameType.PREFACE: FrameRule(connection_level=True, min_length=len(MAGIC)),
    FrameType.HEADERS: FrameRule(connection_level=False),
    FrameType.DATA: FrameRule(connection_level=False),
    FrameType.RESET: FrameRule(connection_level=False, length=4),
    FrameType.SETTINGS: FrameRule(connection_level=True),
    FrameType.PING: FrameRule(connection_level=True, length=PING_LENGTH),
    FrameType.GOAWAY: FrameRule(connection_level=True, min_length=8),
    FrameType.WINDOW_UPDATE: FrameRule(connection_level=None, length=4),
}
