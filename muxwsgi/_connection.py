"""The sans-IO state machine of one muxwsgi connection (PROTOCOL.md is its specification).

Push style, like h2: feed received bytes to :meth:`Connection.receive_data`, which returns
events; call the ``send_*`` verbs; write whatever :meth:`Connection.data_to_send` returns.
Receiving can produce output by itself (SETTINGS and PING ACKs, WINDOW_UPDATEs, RESETs for
streams the peer got wrong), so flush ``data_to_send()`` after every ``receive_data()``.

Nothing here does I/O, starts threads or reads a clock other than the one passed in the config
(used only by the flood buckets). One Connection is not thread-safe: the caller serialises use.
"""

from __future__ import annotations

import enum
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from itertools import chain
from typing import Final

import msgpack

from ._detect import describe_peer_bytes
from ._errors import (
    ErrorCode,
    FloodError,
    FlowControlError,
    FrameSizeError,
    InvalidVarsError,
    LocalProtocolError,
    PrefaceError,
    RemoteProtocolError,
    StreamError,
    TooManyStreamsError,
)
from ._events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    PingAcknowledged,
    PingReceived,
    RequestReceived,
    ResponseReceived,
    SettingsAcknowledged,
    SettingsChanged,
    StreamEnded,
    StreamReset,
    WindowUpdated,
    make,
)
from ._flood import FloodLimits, TokenBucket
from ._frames import (
    FRAME_HEADER,
    MAGIC,
    MAX_STREAM_ID,
    MAX_WINDOW,
    Flags,
    FrameType,
    encode_frame,
    encode_goaway,
    encode_reset,
    encode_settings,
    encode_window_update,
    iter_settings,
    unpack_goaway,
    unpack_u32,
)
from ._settings import SETTING_RULES, SettingCode, Settings, check_setting
from ._state import (
    CONNECTION_TRANSITIONS,
    FRAME_RULES,
    HALF_STREAM_TRANSITIONS,
    INVALID_RECEIVE_CODE,
    ConnectionInput,
    ConnectionState,
    HalfState,
    Input,
    body_problem,
    goaway_may_follow,
    is_idle,
    new_stream_problem,
)
from ._vars import (
    TIMEOUT_VAR,
    VarsBlock,
    decode_request_vars,
    decode_response_head,
    encode_request_vars,
    encode_response_head,
    parse_content_length,
    parse_timeout_ms,
)
from ._windows import DEFAULT_WINDOW, FlowControl

__all__ = (
    "DEFAULT_WINDOW",
    "Connection",
    "ConnectionConfig",
    "ConnectionState",
    "Counters",
    "Role",
)

# The names used per frame are Final: the compiled build reads a Final name from a C static,
# and any other global from the module's dict on every use (~130 instructions each). Names
# imported from modules that are not compiled (the events, the error codes) are read from the
# dict too, so the ones used per request have Final aliases here.
_unpack_header: Final = FRAME_HEADER.unpack_from
_pack_header: Final = FRAME_HEADER.pack
_REASONS: Final = {status.value: status.phrase for status in HTTPStatus}
# A plain int: IntFlag's & is Python code, and this is tested on every frame.
_END: Final = int(Flags.END_STREAM)
_ACK: Final = int(Flags.ACK)
_IDLE: Final = HalfState.IDLE
_OPEN: Final = HalfState.OPEN
_CLOSED: Final = HalfState.CLOSED
_T: Final = HALF_STREAM_TRANSITIONS
_HEADERS: Final = Input.HEADERS
_HEADERS_END: Final = Input.HEADERS_END
_DATA: Final = Input.DATA
_DATA_END: Final = Input.DATA_END
_make: Final = make
_REQUEST_RECEIVED: Final = RequestReceived
_RESPONSE_RECEIVED: Final = ResponseReceived
_DATA_RECEIVED: Final = DataReceived
_STREAM_ENDED: Final = StreamEnded
_PROTOCOL_ERROR: Final = ErrorCode.PROTOCOL_ERROR
#: A client may ping at most this many times without an answer (pings are tracked by payload).
MAX_OUTSTANDING_PINGS = 64


class Role(enum.Enum):
    """Which end of the connection this side is: the client opens streams, the server answers."""

    CLIENT = "client"
    SERVER = "server"


@dataclass(frozen=True, kw_only=True)
class ConnectionConfig:
    """How this side behaves. ``settings`` is what it advertises in its PREFACE."""

    settings: Settings = field(default_factory=Settings)
    #: This side's receive window for the whole connection (a WINDOW_UPDATE after the PREFACE
    #: raises it from DEFAULT_WINDOW).
    connection_window_size: int = DEFAULT_WINDOW
    flood: FloodLimits = field(default_factory=FloodLimits)
    #: Read by the flood buckets and for :attr:`Connection.incomplete_frame_since`.
    clock: Callable[[], float] = time.monotonic
    #: Check outgoing heads (CR/LF/NUL, latin-1, empty names). A server that validates its
    #: application's headers more strictly already (as muxwsgi.server does) turns this off to
    #: avoid paying twice per response; invalid heads then reach the wire unchecked.
    validate_outbound: bool = True

    def __post_init__(self) -> None:
        if not DEFAULT_WINDOW <= self.connection_window_size <= MAX_WINDOW:
            raise ValueError(f"connection_window_size must be in [{DEFAULT_WINDOW}, {MAX_WINDOW}]")


@dataclass(slots=True)
class Counters:
    """What the peer did (and what this side refused or reset), counted for the user's stats."""

    streams_opened: int = 0
    streams_refused: int = 0
    resets_received: int = 0
    resets_sent: int = 0
    pings_received: int = 0
    settings_received: int = 0
    empty_frames: int = 0
    glitches: int = 0


def _head_too_large(stream_id: int, what: str, size: int, limit: int) -> StreamError:
    """The stream error for a ``what`` ("request", "response") head of ``size`` bytes, over
    the ``limit`` this side enforces (max_headers_size)."""
    return StreamError(
        stream_id, f"{what} head of {size} bytes exceeds {limit}", ErrorCode.HEADERS_TOO_LARGE
    )


class _Stream(FlowControl):
    """Per-stream bookkeeping: the state of each direction, and (inherited) its windows."""

    __slots__ = ("recv", "recv_remaining", "recv_unacked", "send", "send_remaining", "stream_id")

    def __init__(self, stream_id: int, send_window: int, recv_window: int) -> None:
        FlowControl.__init__(self, send_window, recv_window)
        self.stream_id = stream_id
        self.send = _IDLE
        self.recv = _IDLE
        #: Received bytes the application has not acknowledged yet.
        self.recv_unacked = 0
        #: CONTENT_LENGTH minus body bytes so far, per direction; None: no CONTENT_LENGTH.
        self.recv_remaining: int | None = None
        self.send_remaining: int | None = None


class Connection:
    """One muxwsgi connection, client or server side.

    The constructor queues this side's PREFACE (magic and settings), so the first
    ``data_to_send()`` returns it. The peer's first frame must be its PREFACE.
    """

    def __init__(self, role: Role, config: ConnectionConfig | None = None) -> None:
        config = config if config is not None else ConnectionConfig()
        self.role = role
        self.config = config
        self.state = ConnectionState.OPEN
        self._is_server = role is Role.SERVER
        #: (client) False once the connection closes or a GOAWAY goes either way.
        self._may_open = role is Role.CLIENT
        self.counters = Counters()
        #: What this side advertised last.
        self.local_settings = config.settings.copy()
        #: What this side enforces: the protocol defaults until the peer ACKs our settings.
        self._enforced = Settings()
        self._pending_local: deque[dict[SettingCode, int]] = deque()
        #: What the peer advertised (the defaults until its PREFACE arrives).
        self.remote_settings = Settings()
        self._streams: dict[int, _Stream] = {}
        #: Received bytes not handled yet: ``_buffer[_buffer_pos:]``. An offset, not a slice,
        #: so that a read handled ``max_frames`` at a time is never copied again per call.
        self._buffer = b""
        self._buffer_pos = 0
        self._incomplete_since = 0.0
        self._clock = config.clock
        self._out: list[bytes] = []
        self._queued_control = 0
        self._preface_received = False
        self._next_stream_id = 1
        self._highest_stream_id = 0
        #: (server) The highest stream id a RequestReceived was emitted for ...
        self._last_request = 0
        #: ... as of the end of the last receive_data() that returned: a call that raises
        #: loses its events. A GOAWAY covers no stream above it ([S-6]).
        self._last_reported = 0
        self._goaway_sent: int | None = None
        self._goaway_received: int | None = None
        self._pings: set[bytes] = set()
        #: The connection's windows (each stream has its own pair).
        self._flow = FlowControl(DEFAULT_WINDOW, config.connection_window_size)
        # One Packer per connection: a Packer is not safe to share between threads.
        self._pack = msgpack.Packer().pack
        self._validate_outbound = config.validate_outbound
        limits = config.flood
        self._flood = limits
        #: Set when a bucket's take() made the peer a suspect (see FloodLimits.suspect_at):
        #: receive_data with max_frames stops there.
        self._suspect = False
        buckets = [
            TokenBucket(burst, rate, config.clock, self._suspected, limits.suspect_at)
            for burst, rate in (
                (limits.reset_burst, limits.reset_rate),
                (limits.ping_burst, limits.ping_rate),
                (limits.settings_burst, limits.settings_rate),
                (limits.glitch_burst, limits.glitch_rate),
            )
        ]
        self._reset_bucket, self._ping_bucket, self._settings_bucket, self._glitch_bucket = buckets
        recv_headers = self._recv_request if role is Role.SERVER else self._recv_response
        handlers: dict[int, Callable[[int, int, bytes, list[Event]], None]] = {
            FrameType.PREFACE: self._recv_preface,
            FrameType.HEADERS: recv_headers,
            FrameType.DATA: self._recv_data,
            FrameType.RESET: self._recv_reset,
            FrameType.SETTINGS: self._recv_settings,
            FrameType.PING: self._recv_ping,
            FrameType.GOAWAY: self._recv_goaway,
            FrameType.WINDOW_UPDATE: self._recv_window_update,
        }
        # Flattened for the receive loop: handler, stream-0 rule, exact length, minimum length.
        self._dispatch = {
            int(ftype): (handler, rule.connection_level, rule.length, rule.min_length)
            for ftype, handler in handlers.items()
            for rule in (FRAME_RULES[ftype],)
        }
        self._queue_local_settings(list(self.local_settings.items()), FrameType.PREFACE)
        increment = config.connection_window_size - DEFAULT_WINDOW
        if increment:  # the peer starts from DEFAULT_WINDOW: raise it at once ([W-8])
            self._out.append(encode_window_update(0, increment))
        # Frames that must stay first in the output, ahead of any urgent reply: the PREFACE
        # (and its WINDOW_UPDATE) until they have been taken by data_to_send().
        self._pinned = len(self._out)

    # ------------------------------------------------------------------ introspection

    @property
    def open_streams(self) -> int:
        """Streams not yet closed in both directions (what MAX_CONCURRENT_STREAMS counts)."""
        return len(self._streams)

    @property
    def preface_received(self) -> bool:
        return self._preface_received

    @property
    def frames_buffered(self) -> bool:
        """Whether a whole frame waits in the receive buffer, left there by ``max_frames``."""
        buf, pos = self._buffer, self._buffer_pos
        left = len(buf) - pos
        return left >= 8 and left >= 8 + (buf[pos + 1] | buf[pos + 2] << 8)

    @property
    def incomplete_frame_since(self) -> float | None:
        """When the frame now partly received began to arrive (``clock`` time), or None when
        the receive buffer holds no partial frame. A slowloris peer dribbles one frame for
        ever: the caller bounds how long a frame may take."""
        if len(self._buffer) == self._buffer_pos or self.frames_buffered:
            return None
        return self._incomplete_since

    @property
    def flood_pressure(self) -> float:
        """How far the peer went into its flood allowances: the largest share spent of any
        bucket (resets, pings, settings, glitches), 0.0 to 1.0. A server can give a peer with
        high pressure less of its time before the bucket runs out and ends the connection."""
        return max(
            self._reset_bucket.spent,
            self._ping_bucket.spent,
            self._settings_bucket.spent,
            self._glitch_bucket.spent,
        )

    @property
    def settings_acknowledged(self) -> bool:
        """Whether the peer acknowledged every settings list this side sent (PREFACE included).

        Until it does, this side enforces the protocol defaults ([E-5]); a peer that never
        acknowledges deserves GOAWAY(SETTINGS_TIMEOUT) from a caller with a clock.
        """
        return not self._pending_local

    @property
    def highest_stream_id(self) -> int:
        """The highest stream id opened on this connection so far (0 for none)."""
        return self._highest_stream_id

    @property
    def goaway_received(self) -> int | None:
        """The last stream id of the peer's latest GOAWAY, or None."""
        return self._goaway_received

    @property
    def goaway_sent(self) -> int | None:
        return self._goaway_sent

    @property
    def enforced_settings(self) -> Settings:
        """The limits this side applies to what it receives (advertised and acknowledged)."""
        return self._enforced

    @property
    def can_open_stream(self) -> bool:
        """(client) Whether :meth:`send_request` would succeed now."""
        return (
            self.state is ConnectionState.OPEN
            and len(self._streams) < self.remote_settings.max_concurrent_streams
            and self._next_stream_id <= MAX_STREAM_ID
        )

    @property
    def outbound_connection_window(self) -> int:
        """Body bytes this side may still send on the connection as a whole, over all streams."""
        return max(0, self._flow.send_window)

    def outbound_window(self, stream_id: int) -> int:
        """How many body bytes :meth:`send_data` accepts on ``stream_id`` now (0 if closed)."""
        stream = self._streams.get(stream_id)
        if stream is None:
            return 0
        return max(0, min(stream.send_window, self._flow.send_window))

    def is_open(self, stream_id: int) -> bool:
        return stream_id in self._streams

    # ------------------------------------------------------------------ receiving

    def receive_data(self, data: bytes, max_frames: int = 0) -> list[Event]:
        """Feed bytes from the peer; return the events they complete, in order.

        Partial frames are buffered until the rest arrives. Stream errors are handled here: the
        stream gets a RESET and a :class:`StreamReset` event with ``remote=False``.

        With ``max_frames`` (0: no limit), at most that many frames are handled; whole frames
        beyond them stay buffered (see :attr:`frames_buffered`) until the next call, which
        may pass ``b""``. A server uses it to share its time fairly between connections. With
        ``max_frames``, handling also stops after a frame that took a flood allowance past
        ``FloodLimits.suspect_at`` (:attr:`flood_pressure` then says so), so that the caller
        can slow the peer down from that frame on.

        Raises a :class:`RemoteProtocolError` subclass for a connection error, after queueing
        a GOAWAY with its code; the events of this call are then discarded and the GOAWAY's
        last stream id covers only streams reported by earlier calls. Once closed, further
        data is ignored and ``[]`` is returned.
        """
        if self.state is ConnectionState.CLOSED:
            return []
        if not self._buffer:
            buf, pos = data, 0
        elif data:
            buf, pos = self._buffer[self._buffer_pos :] + data, 0
        else:
            buf, pos = self._buffer, self._buffer_pos
        first = pos
        end = len(buf)
        events: list[Event] = []
        dispatch = self._dispatch
        budget = max_frames or -1
        self._suspect = False
        try:
            if not self._preface_received and end and buf[0] != FrameType.PREFACE:
                raise PrefaceError(
                    f"expected a muxwsgi PREFACE, received {describe_peer_bytes(bytes(buf[:64]))}"
                )
            while end - pos >= 8 and budget:
                if self._suspect and max_frames:
                    self._suspect = False
                    break  # the caller may slow this peer down (FloodLimits.suspect_at)
                budget -= 1
                ftype, length, flags, stream_id = _unpack_header(buf, pos)
                start = pos + 8
                if end - start < length:
                    break
                pos = start + length
                entry = dispatch.get(ftype)
                if entry is None:
                    self._glitch("unknown frame type")  # ignored, but not for free
                    continue
                handler, connection_level, exact_length, min_length = entry
                if connection_level is not None and (stream_id == 0) is not connection_level:
                    where = "on stream 0" if stream_id == 0 else f"on stream {stream_id}"
                    raise RemoteProtocolError(f"{FrameType(ftype).name} frame {where}")
                if (exact_length is not None and length != exact_length) or length < min_length:
                    raise FrameSizeError(
                        f"{FrameType(ftype).name} frame with a {length}-byte payload"
                    )
                try:
                    handler(flags, stream_id, buf[start:pos], events)
                except StreamError as stream_exc:
                    self._stream_error(stream_exc, events)
        except RemoteProtocolError as exc:
            self._connection_error(exc)
            raise
        if pos < end:
            if pos > first or not self._buffer:
                # A frame began to arrive (not the one still incomplete from the last call).
                self._incomplete_since = self._clock()
            self._buffer, self._buffer_pos = buf, pos
        else:
            self._buffer, self._buffer_pos = b"", 0
        self._last_reported = self._last_request
        return events

    def _recv_preface(
        self, flags: int, stream_id: int, payload: bytes, events: list[Event]
    ) -> None:
        if self._preface_received:
            raise RemoteProtocolError("a second PREFACE")
        if not payload.startswith(MAGIC):
            raise PrefaceError(f"PREFACE magic is {payload[: len(MAGIC)]!r}, expected {MAGIC!r}")
        self._preface_received = True
        self._apply_remote_settings(payload[len(MAGIC) :], events)

    def _recv_settings(
        self, flags: int, stream_id: int, payload: bytes, events: list[Event]
    ) -> None:
        if flags & _ACK:
            if payload:
                raise FrameSizeError("SETTINGS ACK with a payload")
            if not self._pending_local:
                raise RemoteProtocolError("SETTINGS ACK without SETTINGS to acknowledge")
            self._apply_local_settings(self._pending_local.popleft(), events)
            return
        self.counters.settings_received += 1
        if not self._settings_bucket.take():
            raise FloodError("SETTINGS flood")
        self._apply_remote_settings(payload, events)

    def _apply_remote_settings(self, payload: bytes, events: list[Event]) -> None:
        """Apply the peer's settings list (PREFACE or SETTINGS), ACK it, emit SettingsChanged,
        then a WindowUpdated for each stream still sending if INITIAL_WINDOW_SIZE rose."""
        if len(payload) % 6:
            raise FrameSizeError(f"settings list of {len(payload)} bytes is not a multiple of 6")
        pairs = iter_settings(payload)
        if len(pairs) > self._flood.max_settings_entries:
            raise FloodError(f"{len(pairs)} entries in one SETTINGS frame")
        changed: dict[SettingCode, int] = {}
        for code, value in pairs:
            error_code = check_setting(code, value)
            if error_code is not None:
                raise RemoteProtocolError(f"setting {code:#x}={value} is out of bounds", error_code)
            if code in SETTING_RULES:
                changed[SettingCode(code)] = value
        old_window = self.remote_settings.initial_window_size
        self.remote_settings.update(changed)
        delta = self.remote_settings.initial_window_size - old_window
        if delta:
            # INITIAL_WINDOW_SIZE moves every open stream's send window (it may go negative).
            for stream in self._streams.values():
                if not stream.open(delta):
                    raise FlowControlError("INITIAL_WINDOW_SIZE change overflows a stream window")
        self._queue_control(encode_frame(FrameType.SETTINGS, _ACK, 0))
        events.append(SettingsChanged(changed=changed))
        if delta > 0:
            # Streams waiting for window may send again: say so, as a WINDOW_UPDATE would.
            events.extend(
                WindowUpdated(stream.stream_id, delta)
                for stream in self._streams.values()
                if stream.send is not _CLOSED
            )

    def _apply_local_settings(self, changed: dict[SettingCode, int], events: list[Event]) -> None:
        """The peer ACKed settings we sent: enforce them from now on."""
        old_window = self._enforced.initial_window_size
        self._enforced.update(changed)
        delta = self._enforced.initial_window_size - old_window
        if delta:
            for stream in self._streams.values():
                stream.shift_receive(delta)
        events.append(SettingsAcknowledged(changed=changed))

    def _recv_request(
        self, flags: int, stream_id: int, payload: bytes, events: list[Event]
    ) -> None:
        stream = self._streams.get(stream_id)
        if stream is not None:
            raise StreamError(
                stream_id, "a second HEADERS on a stream", INVALID_RECEIVE_CODE[stream.recv]
            )
        problem = new_stream_problem(stream_id, self._highest_stream_id)
        if problem is not None:
            raise RemoteProtocolError(problem)
        self._highest_stream_id = stream_id
        self.counters.streams_opened += 1
        if self._goaway_sent is not None and stream_id > self._goaway_sent:
            # Not processed, and the client knows it from the GOAWAY: safe to retry elsewhere.
            self.counters.streams_refused += 1
            self._queue_control(encode_reset(stream_id, ErrorCode.REFUSED_STREAM))
            return
        enforced = self._enforced
        if len(self._streams) >= enforced.max_concurrent_streams:
            raise StreamError(
                stream_id,
                f"more than {enforced.max_concurrent_streams} concurrent streams",
                ErrorCode.REFUSED_STREAM,
            )
        if len(payload) > enforced.max_headers_size:
            raise _head_too_large(stream_id, "request", len(payload), enforced.max_headers_size)
        try:
            request_vars = decode_request_vars(payload, enforced.max_headers_count)
            content_length = timeout_ms = None
            # Most requests have neither (nginx sends CONTENT_LENGTH ""): skip the calls.
            if request_vars.get("CONTENT_LENGTH"):
                content_length = parse_content_length(request_vars["CONTENT_LENGTH"])
            if TIMEOUT_VAR in request_vars:
                timeout_ms = parse_timeout_ms(request_vars[TIMEOUT_VAR])
        except InvalidVarsError as exc:
            raise StreamError(stream_id, str(exc), exc.error_code) from None
        end = flags & _END
        if end and content_length is not None:
            problem = body_problem(content_length, 0, True)
            if problem is not None:
                raise StreamError(stream_id, problem, ErrorCode.PROTOCOL_ERROR)
        stream = _Stream(
            stream_id, self.remote_settings.initial_window_size, enforced.initial_window_size
        )
        stream.recv = _CLOSED if end else _OPEN
        stream.recv_remaining = content_length
        self._streams[stream_id] = stream
        self._last_request = stream_id  # handed to the application: a GOAWAY now covers it
        # Positional arguments on the hot paths: half the cost of keywords.
        events.append(
            _make(
                _REQUEST_RECEIVED, (stream_id, request_vars, bool(end), content_length, timeout_ms)
            )
        )
        if end:
            events.append(_make(_STREAM_ENDED, (stream_id,)))

    def _recv_response(
        self, flags: int, stream_id: int, payload: bytes, events: list[Event]
    ) -> None:
        stream = self._streams.get(stream_id)
        if stream is None:
            self._frame_on_missing_stream(stream_id, "HEADERS")
            return
        end = flags & _END
        next_state = _T.get((stream.recv, _HEADERS_END if end else _HEADERS))
        if next_state is None:
            raise StreamError(
                stream_id, "unexpected response HEADERS", INVALID_RECEIVE_CODE[stream.recv]
            )
        enforced = self._enforced
        if len(payload) > enforced.max_headers_size:
            raise _head_too_large(stream_id, "response", len(payload), enforced.max_headers_size)
        try:
            status, reason, headers = decode_response_head(payload, enforced.max_headers_count)
        except InvalidVarsError as exc:
            raise StreamError(stream_id, str(exc), exc.error_code) from None
        stream.recv = next_state
        events.append(_make(_RESPONSE_RECEIVED, (stream_id, status, reason, headers, bool(end))))
        if end:
            events.append(_make(_STREAM_ENDED, (stream_id,)))
            self._maybe_forget(stream)

    def _recv_data(self, flags: int, stream_id: int, payload: bytes, events: list[Event]) -> None:
        size = len(payload)
        if size > self._enforced.max_frame_size:
            raise FrameSizeError(
                f"DATA frame of {size} bytes exceeds MAX_FRAME_SIZE {self._enforced.max_frame_size}"
            )
        # Every DATA byte counts against the connection window, even on a closed stream.
        if not self._flow.received(size):
            raise FlowControlError("the peer overran the connection receive window")
        stream = self._streams.get(stream_id)
        if stream is None:
            self._frame_on_missing_stream(stream_id, "DATA")
            self._return_connection_credit(size)  # nobody will acknowledge these bytes
            return
        end = flags & _END
        next_state = _T.get((stream.recv, _DATA_END if end else _DATA))
        problem: str | None = None
        code = _PROTOCOL_ERROR
        if next_state is None:
            problem, code = "unexpected DATA", INVALID_RECEIVE_CODE[stream.recv]
        elif not stream.received(size):
            problem, code = "the peer overran the stream window", ErrorCode.FLOW_CONTROL_ERROR
        elif stream.recv_remaining is not None:
            problem = body_problem(stream.recv_remaining, size, bool(end))
            stream.recv_remaining -= size
        if problem is not None:
            self._return_connection_credit(size)
            raise StreamError(stream_id, problem, code)
        if not size and not end:
            self.counters.empty_frames += 1
            self._glitch("empty DATA frame")
        stream.recv = next_state  # type: ignore[assignment]
        stream.recv_unacked += size
        events.append(_make(_DATA_RECEIVED, (stream_id, payload, size, bool(end))))
        if end:
            events.append(_make(_STREAM_ENDED, (stream_id,)))
            if stream.send is _CLOSED:
                del self._streams[stream_id]
                self._release(stream)

    def _recv_reset(self, flags: int, stream_id: int, payload: bytes, events: list[Event]) -> None:
        self.counters.resets_received += 1
        if not self._reset_bucket.take():
            raise FloodError("RESET flood")
        stream = self._streams.pop(stream_id, None)
        if stream is None:
            self._frame_on_missing_stream(stream_id, "RESET")
            return
        self._release(stream)
        events.append(
            StreamReset(stream_id=stream_id, error_code=ErrorCode.parse(unpack_u32(payload)))
        )

    def _recv_ping(self, flags: int, stream_id: int, payload: bytes, events: list[Event]) -> None:
        if flags & _ACK:
            if payload in self._pings:
                self._pings.discard(payload)
            else:
                self._glitch("unsolicited PING ACK")
            events.append(PingAcknowledged(data=payload))
            return
        self.counters.pings_received += 1
        if not self._ping_bucket.take():
            raise FloodError("PING flood")
        # A PING ACK goes ahead of queued DATA, because peers time round trips with it
        # ([K-2]). SETTINGS ACKs never jump: they mark where the new settings start.
        self._queue_control(encode_frame(FrameType.PING, _ACK, 0, payload), urgent=True)
        events.append(PingReceived(data=payload))

    def _recv_goaway(self, flags: int, stream_id: int, payload: bytes, events: list[Event]) -> None:
        last_stream_id, code, debug = unpack_goaway(payload)
        if not goaway_may_follow(self._goaway_received, last_stream_id):
            raise RemoteProtocolError("GOAWAY raised its last stream id")
        self._goaway_received = last_stream_id
        self._enter(ConnectionInput.GOAWAY)
        if self.role is Role.CLIENT:
            # Streams above last_stream_id were never processed: report them refused, which
            # tells the caller they are safe to retry on another connection.
            for refused in sorted(sid for sid in self._streams if sid > last_stream_id):
                self._release(self._streams.pop(refused))
                events.append(StreamReset(stream_id=refused, error_code=ErrorCode.REFUSED_STREAM))
        events.append(
            ConnectionTerminated(
                error_code=ErrorCode.parse(code), last_stream_id=last_stream_id, debug=debug
            )
        )

    def _recv_window_update(
        self, flags: int, stream_id: int, payload: bytes, events: list[Event]
    ) -> None:
        increment = unpack_u32(payload)
        if stream_id == 0:
            if not increment:
                raise RemoteProtocolError("WINDOW_UPDATE of 0 on the connection")
            if not self._flow.open(increment):
                raise FlowControlError("WINDOW_UPDATE overflows the connection window")
        else:
            stream = self._streams.get(stream_id)
            if stream is None:
                if is_idle(stream_id, self._highest_stream_id):
                    raise RemoteProtocolError(f"WINDOW_UPDATE on idle stream {stream_id}")
                return  # a late update for a stream that just finished: common, harmless
            if not increment:
                raise StreamError(stream_id, "WINDOW_UPDATE of 0", ErrorCode.PROTOCOL_ERROR)
            if not stream.open(increment):
                raise StreamError(
                    stream_id, "WINDOW_UPDATE overflows the window", ErrorCode.FLOW_CONTROL_ERROR
                )
        events.append(WindowUpdated(stream_id=stream_id, delta=increment))

    # ------------------------------------------------------------------ receive helpers

    def _enter(self, what: ConnectionInput) -> None:
        """Move the connection state; every move leaves OPEN, so no stream opens after it."""
        self.state = CONNECTION_TRANSITIONS[self.state, what]
        self._may_open = False

    def _frame_on_missing_stream(self, stream_id: int, what: str) -> None:
        """A frame for a stream not live: a connection error if the stream was never opened,
        otherwise a late frame for a closed stream, ignored but counted as a glitch."""
        if is_idle(stream_id, self._highest_stream_id):
            raise RemoteProtocolError(f"{what} on idle stream {stream_id}")
        self._glitch(f"{what} on closed stream")

    def _suspected(self) -> None:
        self._suspect = True

    def _glitch(self, what: str) -> None:
        self.counters.glitches += 1
        if not self._glitch_bucket.take():
            raise FloodError(f"too many suspicious frames (last: {what})")

    def _queue_control(self, frame: bytes, urgent: bool = False) -> None:
        # _out only ever holds whole frames (or a DATA header followed by its payload), so
        # the front is always a frame boundary.
        if urgent:
            self._out.insert(self._pinned, frame)
        else:
            self._out.append(frame)
        self._queued_control += 1
        if self._queued_control > self._flood.max_queued_control:
            raise FloodError("too many control replies queued: the peer does not read")

    def _stream_error(self, exc: StreamError, events: list[Event]) -> None:
        stream = self._streams.pop(exc.stream_id, None)
        if stream is not None:
            self._release(stream)
        if exc.error_code == ErrorCode.REFUSED_STREAM:
            self.counters.streams_refused += 1
        self.counters.resets_sent += 1
        self._queue_control(encode_reset(exc.stream_id, exc.error_code))
        events.append(StreamReset(stream_id=exc.stream_id, error_code=exc.error_code, remote=False))
        # An invalid request costs us a reply: count it, or errors become a cheap flood.
        self._glitch(str(exc))

    def _connection_error(self, exc: RemoteProtocolError) -> None:
        self._enter(ConnectionInput.ERROR)
        self._buffer, self._buffer_pos = b"", 0
        self._goaway_sent = self._last_reported
        self._out.append(encode_goaway(self._last_reported, exc.error_code, str(exc).encode()))

    # ------------------------------------------------------------------ flow control

    def _return_connection_credit(self, size: int) -> None:
        increment = self._flow.acknowledge(size)
        if increment:
            self._out.append(encode_window_update(0, increment))

    def _release(self, stream: _Stream) -> None:
        """A stream is gone: give back the connection credit of bytes nobody will acknowledge."""
        if stream.recv_unacked:
            self._return_connection_credit(stream.recv_unacked)
            stream.recv_unacked = 0

    def _maybe_forget(self, stream: _Stream) -> None:
        if stream.send is _CLOSED and stream.recv is _CLOSED:
            del self._streams[stream.stream_id]
            self._release(stream)

    def acknowledge_received_data(self, stream_id: int, size: int) -> None:
        """Say that ``size`` bytes of DATA on ``stream_id`` were consumed.

        May queue WINDOW_UPDATEs (stream and connection) so the peer can send more: this is the
        backpressure lever. Acknowledging data of a stream that is already closed is a no-op
        (its credit went back when it closed). Raises LocalProtocolError for more bytes than
        were received.
        """
        stream = self._streams.get(stream_id)
        if stream is None or size <= 0:
            return
        if size > stream.recv_unacked:
            raise LocalProtocolError(
                f"acknowledging {size} bytes, only {stream.recv_unacked} unacknowledged"
            )
        stream.recv_unacked -= size
        if stream.recv is _OPEN:  # else the peer sends no more: no window to reopen
            increment = stream.acknowledge(size)
            if increment:
                self._out.append(encode_window_update(stream_id, increment))
        self._return_connection_credit(size)

    # ------------------------------------------------------------------ sending

    def _check_sendable(self) -> None:
        if self.state is ConnectionState.CLOSED:
            raise LocalProtocolError("the connection is closed")

    def _why_no_new_stream(self) -> LocalProtocolError:
        """Explain why :meth:`send_request` cannot open a stream now (the slow path)."""
        if self._is_server:
            return LocalProtocolError("only a client opens streams")
        if self.state is ConnectionState.CLOSED:
            return LocalProtocolError("the connection is closed")
        if self._goaway_received is not None or self._goaway_sent is not None:
            return TooManyStreamsError("the connection is going away: open a new one")
        if self._next_stream_id > MAX_STREAM_ID:
            return TooManyStreamsError("stream ids are exhausted: open a new connection")
        return TooManyStreamsError(
            f"the peer allows {self.remote_settings.max_concurrent_streams} concurrent streams"
        )

    def send_request(
        self,
        vars: Mapping[str, str],
        *,
        body: bytes = b"",
        end_stream: bool = False,
        block: VarsBlock | None = None,
    ) -> int:
        """(client) Open a stream with a request head; return its stream id.

        ``vars`` are the uwsgi/CGI vars (REQUEST_METHOD, PATH_INFO, HTTP_HOST, ...), followed
        by ``block``'s (vars encoded once for many requests; no name may be in both). Queues
        one HEADERS frame, then ``body`` as DATA if given (``end_stream`` then applies to the
        DATA). A CONTENT_LENGTH var binds the body that may be sent.
        Raises :class:`TooManyStreamsError` when the peer's MAX_CONCURRENT_STREAMS is reached,
        after a GOAWAY, or when stream ids run out; :class:`LocalProtocolError` for invalid
        vars or a head larger than the peer accepts (error_code HEADERS_TOO_LARGE).
        """
        remote = self.remote_settings
        stream_id = self._next_stream_id
        if (
            not self._may_open
            or len(self._streams) >= remote.max_concurrent_streams
            or stream_id > MAX_STREAM_ID
        ):
            raise self._why_no_new_stream()
        count = len(vars) if block is None else len(vars) + block.count
        if count > remote.max_headers_count:
            raise LocalProtocolError(
                f"{count} vars exceed the peer's limit of {remote.max_headers_count}",
                ErrorCode.HEADERS_TOO_LARGE,
            )
        payload = encode_request_vars(self._pack, vars, block)
        if len(payload) > remote.max_headers_size:
            raise LocalProtocolError(
                f"request head of {len(payload)} bytes exceeds the peer's limit of "
                f"{remote.max_headers_size}",
                ErrorCode.HEADERS_TOO_LARGE,
            )
        content_length: int | None = None
        declared = vars.get("CONTENT_LENGTH") or (block.content_length if block else None)
        if declared:
            try:
                content_length = parse_content_length(declared)
            except InvalidVarsError as exc:
                raise LocalProtocolError(str(exc)) from None
        head_ends = end_stream and not body
        if head_ends and content_length is not None:
            problem = body_problem(content_length, 0, True)
            if problem is not None:
                raise LocalProtocolError(f"{problem}: end_stream=True and no body")
        stream = _Stream(stream_id, remote.initial_window_size, self._enforced.initial_window_size)
        stream.send_remaining = content_length
        if body:  # checked before anything is queued: a failure leaves nothing half-sent
            data_state = self._check_data(stream, _OPEN, len(body), end_stream)
        self._next_stream_id = stream_id + 2
        self._highest_stream_id = stream_id
        stream.send = _CLOSED if head_ends else _OPEN
        self._streams[stream_id] = stream
        self.counters.streams_opened += 1
        self._out.append(
            _pack_header(FrameType.HEADERS, len(payload), _END if head_ends else 0, stream_id)
            + payload
        )
        if body:
            self._queue_data(stream, body, end_stream, data_state)
        return stream_id

    def send_response(
        self,
        stream_id: int,
        status: int,
        headers: list[tuple[str, str]],
        *,
        reason: str | None = None,
        body: bytes = b"",
        end_stream: bool = False,
    ) -> None:
        """(server) Queue the response head of a stream: status, reason and header list.

        ``reason`` defaults to the standard phrase of ``status``. A non-empty ``body`` is queued
        as DATA right after the head, exactly as :meth:`send_data` would (one call instead of
        two for the common whole-body response); ``end_stream`` then applies to the DATA.
        Raises LocalProtocolError if the stream is not open, a head was already sent, the head
        is invalid or larger than the peer accepts, or ``body`` exceeds the send window.
        """
        stream = self._streams.get(stream_id)
        if stream is None or not self._is_server or self.state is ConnectionState.CLOSED:
            if not self._is_server:
                raise LocalProtocolError("only a server sends responses")
            self._check_sendable()
            raise LocalProtocolError(f"stream {stream_id} is not open")
        head_ends = end_stream and not body
        next_state = _T.get((stream.send, _HEADERS_END if head_ends else _HEADERS))
        if next_state is None:
            raise LocalProtocolError(f"the response head of stream {stream_id} was already sent")
        remote = self.remote_settings
        if len(headers) > remote.max_headers_count:
            raise LocalProtocolError(
                f"{len(headers)} headers exceed the peer's limit of {remote.max_headers_count}",
                ErrorCode.HEADERS_TOO_LARGE,
            )
        if reason is None:
            reason = _REASONS.get(status, "")
        if self._validate_outbound:
            payload = encode_response_head(self._pack, status, reason, headers)
        else:
            payload = self._pack([status, reason, *chain.from_iterable(headers)])
        if len(payload) > remote.max_headers_size:
            raise LocalProtocolError(
                f"response head of {len(payload)} bytes exceeds the peer's limit of "
                f"{remote.max_headers_size}",
                ErrorCode.HEADERS_TOO_LARGE,
            )
        if body:  # checked before the head is queued: a failure leaves nothing half-sent
            data_state = self._check_data(stream, next_state, len(body), end_stream)
        stream.send = next_state
        out = self._out
        out.append(
            _pack_header(FrameType.HEADERS, len(payload), _END if head_ends else 0, stream_id)
        )
        out.append(payload)
        if body:
            self._queue_data(stream, body, end_stream, data_state)
        elif end_stream:
            self._maybe_forget(stream)

    def send_data(self, stream_id: int, data: bytes, *, end_stream: bool = False) -> None:
        """Queue body bytes on a stream, split into frames of the peer's MAX_FRAME_SIZE.

        ``len(data)`` must not exceed :meth:`outbound_window`; the caller waits for
        :class:`WindowUpdated` otherwise. Raises LocalProtocolError when the stream is not
        open for sending, the window is too small, or the body would differ from the
        request's CONTENT_LENGTH.
        """
        stream = self._streams.get(stream_id)
        if stream is None or self.state is ConnectionState.CLOSED:
            self._check_sendable()
            raise LocalProtocolError(f"stream {stream_id} is not open")
        self._queue_data(
            stream, data, end_stream, self._check_data(stream, stream.send, len(data), end_stream)
        )

    def _check_data(
        self, stream: _Stream, state: HalfState, size: int, end_stream: bool
    ) -> HalfState:
        """Return the state that ``size`` bytes of DATA lead the send half of ``stream`` to
        from ``state``. Raises LocalProtocolError if the table forbids them, they exceed a send
        window ([W-2]) or they break the request's CONTENT_LENGTH ([H-7])."""
        next_state = _T.get((state, _DATA_END if end_stream else _DATA))
        if next_state is None:
            raise LocalProtocolError(
                f"cannot send DATA on stream {stream.stream_id} in state {state.name}"
            )
        window, connection = stream.send_window, self._flow.send_window
        # An empty frame needs no credit: END_STREAM must get out even through a window
        # that a SETTINGS decrease made negative.
        if size and (size > window or size > connection):
            raise LocalProtocolError(
                f"{size} bytes exceed the send window ({min(window, connection)})",
                ErrorCode.FLOW_CONTROL_ERROR,
            )
        remaining = stream.send_remaining
        if remaining is not None:
            problem = body_problem(remaining, size, end_stream)
            if problem is not None:
                raise LocalProtocolError(f"{problem} ({remaining} bytes left, sending {size})")
        return next_state

    def _queue_data(
        self, stream: _Stream, data: bytes, end_stream: bool, next_state: HalfState
    ) -> None:
        """Queue DATA that :meth:`_check_data` allowed, and move the send half to
        ``next_state``."""
        size = len(data)
        if stream.send_remaining is not None:
            stream.send_remaining -= size
        if type(data) is not bytes:
            data = bytes(data)  # the caller may reuse its buffer after we return
        stream_id = stream.stream_id
        stream.sent(size, self._flow)
        stream.send = next_state
        out = self._out
        max_frame = self.remote_settings.max_frame_size
        if size <= max_frame:
            out.append(_pack_header(FrameType.DATA, size, _END if end_stream else 0, stream_id))
            out.append(data)
        else:
            view = memoryview(data)
            for offset in range(0, size, max_frame):
                chunk = view[offset : offset + max_frame]
                last = offset + max_frame >= size
                flags = _END if (end_stream and last) else 0
                out.append(_pack_header(FrameType.DATA, len(chunk), flags, stream_id))
                out.append(chunk.tobytes())
        if end_stream and stream.recv is _CLOSED:
            del self._streams[stream_id]
            if stream.recv_unacked:
                self._release(stream)

    def end_stream(self, stream_id: int) -> None:
        """Close this side of a stream with an empty DATA frame carrying END_STREAM."""
        self.send_data(stream_id, b"", end_stream=True)

    def reset_stream(self, stream_id: int, error_code: ErrorCode = ErrorCode.CANCEL) -> None:
        """Abort a stream in both directions with RESET(error_code).

        A stream that is already closed is left alone (resetting is idempotent, because the
        peer may have finished it while we decided to give up). Raises LocalProtocolError for a
        stream that was never opened.
        """
        stream = self._streams.pop(stream_id, None)
        if stream is None:
            if is_idle(stream_id, self._highest_stream_id):
                raise LocalProtocolError(f"stream {stream_id} was never opened")
            return
        self._release(stream)
        self.counters.resets_sent += 1
        self._out.append(encode_reset(stream_id, error_code))

    def ping(self, data: bytes = b"\0" * 8) -> None:
        """Queue a PING with 8 opaque bytes; a :class:`PingAcknowledged` event answers it."""
        self._check_sendable()
        if len(data) != 8:
            raise LocalProtocolError("PING data must be 8 bytes")
        if len(self._pings) >= MAX_OUTSTANDING_PINGS:
            raise LocalProtocolError(f"{MAX_OUTSTANDING_PINGS} PINGs are already unanswered")
        self._pings.add(bytes(data))
        self._out.append(encode_frame(FrameType.PING, 0, 0, bytes(data)))

    def update_settings(self, changes: Mapping[SettingCode, int]) -> None:
        """Advertise new local settings. They are enforced once the peer ACKs them."""
        self._check_sendable()
        for code, value in changes.items():
            if code not in SETTING_RULES or check_setting(code, value) is not None:
                raise LocalProtocolError(f"invalid setting {code!r}={value}")
        self._queue_local_settings(list(changes.items()), FrameType.SETTINGS)

    def _queue_local_settings(self, pairs: list[tuple[SettingCode, int]], ftype: FrameType) -> None:
        payload = encode_settings(pairs)
        if ftype is FrameType.PREFACE:
            payload = MAGIC + payload
        self._out.append(encode_frame(ftype, 0, 0, payload))
        self.local_settings.update(pairs)
        self._pending_local.append(dict(pairs))

    def send_goaway(
        self,
        error_code: ErrorCode = ErrorCode.NO_ERROR,
        *,
        last_stream_id: int | None = None,
        debug: bytes = b"",
    ) -> None:
        """Queue a GOAWAY: no stream above ``last_stream_id`` will be processed.

        ``last_stream_id`` defaults to the highest stream already reported to the application
        (0 on a client, whose peer opens no streams). For a graceful shutdown send one with
        MAX_STREAM_ID first, wait a round trip (a PING), then one with the default. After a
        GOAWAY new streams are refused with REFUSED_STREAM. A non-zero ``error_code`` closes the
        connection at once (state CLOSED). Raises LocalProtocolError if the id would increase.
        """
        self._check_sendable()
        if last_stream_id is None:
            last_stream_id = self._last_reported if self._is_server else 0
        if not goaway_may_follow(self._goaway_sent, last_stream_id):
            raise LocalProtocolError("a GOAWAY must not raise the last stream id")
        self._goaway_sent = last_stream_id
        self._out.append(encode_goaway(last_stream_id, error_code, debug))
        graceful = error_code == ErrorCode.NO_ERROR
        self._enter(ConnectionInput.GOAWAY if graceful else ConnectionInput.ERROR)

    def data_to_send(self) -> bytes:
        """Return (and forget) every byte queued for the peer; b"" when nothing is pending."""
        out = self._out
        if not out:
            return b""
        data = b"".join(out)
        out.clear()
        self._queued_control = 0
        self._pinned = 0
        return data
