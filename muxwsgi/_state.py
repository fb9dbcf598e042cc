"""Which frame or send is legal where, and which state follows, as tables and small functions.

Borrowed from h11: ``_connection.py`` looks up here whether a frame or a call may come in the
state it finds, and which state follows; it keeps the bookkeeping (streams, buffers, counters)
and raises the errors. PROTOCOL.md §4 and §6, and the CONTENT_LENGTH rule of §5, are these
rules in prose.

Some rules live elsewhere. Those about amounts rather than order have modules of their own: flow
control in ``_windows.py``, the bounds of each setting in ``_settings.py``, the syntax of vars in
``_vars.py``, the flood limits in ``_flood.py``. A rule that is one test of something only the
connection keeps stays in ``_connection.py``, where that thing is: the PREFACE first and only once
([P-1], [P-3]), a SETTINGS ACK only when one is due ([E-6]), open streams against
MAX_CONCURRENT_STREAMS ([C-2]), a payload against MAX_HEADERS_SIZE or MAX_FRAME_SIZE, a stream id
against the last GOAWAY's ([S-1], [S-3]).

A stream is two independent half-streams, one per direction. Each half goes
IDLE -> OPEN -> CLOSED on HEADERS, DATA and END_STREAM; a RESET closes both halves at once.
The stream is forgotten once both halves are CLOSED.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ._errors import ErrorCode
from ._frames import MAGIC, MAX_STREAM_ID, PING_LENGTH, FrameType

__all__ = (
    "CONNECTION_TRANSITIONS",
    "FRAME_RULES",
    "HALF_STREAM_TRANSITIONS",
    "INVALID_RECEIVE_CODE",
    "ConnectionInput",
    "ConnectionState",
    "FrameRule",
    "HalfState",
    "Input",
    "body_problem",
    "goaway_may_follow",
    "is_idle",
    "new_stream_problem",
)


# ---------------------------------------------------------------- the connection


class ConnectionState(enum.Enum):
    """Where the connection as a whole stands."""

    OPEN = "open"
    #: A GOAWAY was sent or received without an error: live streams finish, no new ones open.
    CLOSING = "closing"
    #: A connection error happened (either side); nothing more is processed.
    CLOSED = "closed"


class ConnectionInput(enum.Enum):
    """What moves the connection state."""

    #: A GOAWAY received (whatever its code: the peer closes), or one sent with NO_ERROR.
    GOAWAY = "goaway"
    #: A connection error found here, or a GOAWAY sent with an error code.
    ERROR = "error"


_OPEN, _CLOSING, _CLOSED = ConnectionState.OPEN, ConnectionState.CLOSING, ConnectionState.CLOSED

#: (connection state, input) -> next state. CLOSED is final: nothing is received or sent there.
CONNECTION_TRANSITIONS: dict[tuple[ConnectionState, ConnectionInput], ConnectionState] = {
    (_OPEN, ConnectionInput.GOAWAY): _CLOSING,
    (_CLOSING, ConnectionInput.GOAWAY): _CLOSING,
    (_CLOSED, ConnectionInput.GOAWAY): _CLOSED,
    (_OPEN, ConnectionInput.ERROR): _CLOSED,
    (_CLOSING, ConnectionInput.ERROR): _CLOSED,
    (_CLOSED, ConnectionInput.ERROR): _CLOSED,
}


def goaway_may_follow(previous: int | None, last_stream_id: int) -> bool:
    """Whether a GOAWAY with ``last_stream_id`` may follow one with ``previous`` (None: the
    first): the last stream id never rises ([S-4]), whichever side sends."""
    return previous is None or last_stream_id <= previous


# ---------------------------------------------------------------- frames


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


# ---------------------------------------------------------------- stream ids


def new_stream_problem(stream_id: int, highest: int) -> str | None:
    """Why HEADERS may not open ``stream_id`` when ``highest`` is the highest id opened so far
    (a connection error PROTOCOL_ERROR: [I-1], [I-3]), or None when it may."""
    if stream_id <= highest or not stream_id & 1:
        return f"stream id {stream_id} is not odd and above {highest}"
    if stream_id > MAX_STREAM_ID:
        return f"stream id {stream_id} is above {MAX_STREAM_ID}"
    return None


def is_idle(stream_id: int, highest: int) -> bool:
    """Whether ``stream_id`` was never opened, ``highest`` being the highest id opened so far.

    Ids are odd and open in increasing order, and opening one closes every unused id below it
    ([I-2]). So a stream that is not live is either idle, where a frame is a connection error
    ([I-4]), or closed, where a late frame is ignored ([R-3]).
    """
    return not stream_id & 1 or stream_id > highest


# ---------------------------------------------------------------- half-streams


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


def body_problem(remaining: int, size: int, end: bool) -> str | None:
    """Why ``size`` more body bytes, the last ones if ``end``, break a declared CONTENT_LENGTH
    of which ``remaining`` bytes are still due ([H-7]), or None when they keep it.

    HEADERS with END_STREAM is the case ``size`` 0, ``end`` True. Received, a problem is a
    stream error PROTOCOL_ERROR; sent, a LocalProtocolError.
    """
    if size > remaining:
        return "more body than CONTENT_LENGTH"
    if end and size != remaining:
        return "END_STREAM before CONTENT_LENGTH bytes of body"
    return None
