"""Events returned by :meth:`Connection.receive_data`: what the peer did, in past tense.

Each event is an immutable ``NamedTuple``: typed fields, no mutation, and construction in C.
That last point is why they are not frozen dataclasses: a frozen dataclass sets each field
through ``object.__setattr__``, several times the cost of a tuple (benchmarks/README.md), and a
request/response exchange creates five events. Equality also compares the type, so
``PingReceived(b) != PingAcknowledged(b)`` although both are ``(b,)``. Dispatch on
``type(event)``; ``Event`` is the union of them all.
"""

from __future__ import annotations

from typing import Any, Final, NamedTuple

from ._errors import ErrorCode
from ._settings import SettingCode

__all__ = (
    "ConnectionTerminated",
    "DataReceived",
    "Event",
    "PingAcknowledged",
    "PingReceived",
    "RequestReceived",
    "ResponseReceived",
    "SettingsAcknowledged",
    "SettingsChanged",
    "StreamEnded",
    "StreamReset",
    "WindowUpdated",
)


class RequestReceived(NamedTuple):
    """(server) A client opened a stream with a request head.

    ``vars`` are the request's uwsgi/CGI vars as PEP 3333 native strings (each code point is
    one byte). ``content_length`` is CONTENT_LENGTH parsed strictly (None when absent or empty);
    the connection enforces that the DATA frames add up to it. ``timeout_ms`` is the
    MUXWSGI_TIMEOUT_MS deadline var, None when absent.
    """

    stream_id: int
    vars: dict[str, str]
    end_stream: bool
    content_length: int | None = None
    timeout_ms: int | None = None


class ResponseReceived(NamedTuple):
    """(client) The server answered a stream with a status and headers."""

    stream_id: int
    status: int
    reason: str
    headers: list[tuple[str, str]]
    end_stream: bool


class DataReceived(NamedTuple):
    """Body bytes arrived on a stream.

    Hand ``flow_controlled_length`` back through ``acknowledge_received_data`` once the bytes are
    consumed; that is what reopens the peer's window.
    """

    stream_id: int
    data: bytes
    flow_controlled_length: int
    end_stream: bool


class StreamEnded(NamedTuple):
    """The peer finished its side of a stream (follows the event that carried END_STREAM)."""

    stream_id: int


class StreamReset(NamedTuple):
    """A stream was reset.

    ``remote`` is True when the peer sent RESET (or refused the stream through GOAWAY) and False
    when this side reset it because the peer broke a stream-level rule. In both cases the stream
    is closed and the application should stop working on it.
    """

    stream_id: int
    error_code: ErrorCode
    remote: bool = True


class WindowUpdated(NamedTuple):
    """The peer opened a send window: what waits for window may be sent now.

    A WINDOW_UPDATE gives one, ``stream_id`` 0 meaning the connection window. A SETTINGS that
    raises INITIAL_WINDOW_SIZE ([E-7]) gives one for each stream that may still send, after
    its :class:`SettingsChanged`, with the rise as ``delta``. Either way, ask
    ``outbound_window()`` how much may go: a window that a decrease took below zero may still
    be shut.
    """

    stream_id: int
    delta: int


class SettingsChanged(NamedTuple):
    """The peer's settings changed (its PREFACE, or a later SETTINGS). Already acknowledged.

    If INITIAL_WINDOW_SIZE rose, a :class:`WindowUpdated` follows for each stream still sending.
    """

    changed: dict[SettingCode, int]


class SettingsAcknowledged(NamedTuple):
    """The peer applied the settings this side sent; tightened local limits now take effect."""

    changed: dict[SettingCode, int]


class PingReceived(NamedTuple):
    """The peer pinged; the ACK is already queued."""

    data: bytes


class PingAcknowledged(NamedTuple):
    """The peer answered one of this side's pings."""

    data: bytes


class ConnectionTerminated(NamedTuple):
    """The peer sent GOAWAY.

    Streams opened by this side above ``last_stream_id`` were never processed; they have already
    been reported as :class:`StreamReset` with REFUSED_STREAM (safe to retry elsewhere). Streams at
    or below it carry on; open no new ones.
    """

    error_code: ErrorCode
    last_stream_id: int
    debug: bytes = b""


Event = (
    RequestReceived
    | ResponseReceived
    | DataReceived
    | StreamEnded
    | StreamReset
    | WindowUpdated
    | SettingsChanged
    | SettingsAcknowledged
    | PingReceived
    | PingAcknowledged
    | ConnectionTerminated
)


#: ``make(EventType, (field, ...))``, every field given in order: the event made by
#: ``tuple.__new__`` itself, without its class's ``__new__``. namedtuple writes that ``__new__``
#: as a Python lambda, so the class call runs an interpreted frame even in the compiled build:
#: 148 -> 92 ns for a DataReceived interpreted, ~2,400 -> ~900 instructions compiled
#: (callgrind). The connection makes its per-request events this way.
make: Final = tuple.__new__


def _typed_eq(self: tuple[Any, ...], other: object) -> bool:
    return type(self) is type(other) and tuple.__eq__(self, other)


def _typed_ne(self: tuple[Any, ...], other: object) -> bool:
    return not _typed_eq(self, other)


for _cls in Event.__args__:
    _cls.__eq__ = _typed_eq
    _cls.__ne__ = _typed_ne
    _cls.__hash__ = tuple.__hash__
del _cls
