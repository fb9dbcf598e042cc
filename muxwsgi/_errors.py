"""Wire error codes and the exception family of the protocol core.

One table (:class:`ErrorCode`) is shared by both sides and by PROTOCOL.md §8. Exceptions follow
h11's split: :class:`LocalProtocolError` means *this* side broke a rule (a bug in the caller),
:class:`RemoteProtocolError` means the peer did. Every :class:`ProtocolError` carries the wire code
that the connection sends in its RESET or GOAWAY.
"""

from __future__ import annotations

import enum

__all__ = (
    "RETRY_SAFE_CODES",
    "ErrorCode",
    "FloodError",
    "FlowControlError",
    "FrameSizeError",
    "InvalidVarsError",
    "LocalProtocolError",
    "MuxWSGIError",
    "PrefaceError",
    "ProtocolError",
    "RemoteProtocolError",
    "StreamError",
    "TooManyStreamsError",
)


class ErrorCode(enum.IntEnum):
    """Error codes carried by RESET and GOAWAY frames (u32).

    The values 0x0-0xb keep HTTP/2's numbering (RFC 9113 §7) so that an operator who knows one
    knows the other; 0x10 and above are muxwsgi's own. A receiver treats an unknown code as
    INTERNAL_ERROR (see :meth:`parse`).
    """

    NO_ERROR = 0x0
    PROTOCOL_ERROR = 0x1
    INTERNAL_ERROR = 0x2
    FLOW_CONTROL_ERROR = 0x3
    SETTINGS_TIMEOUT = 0x4
    STREAM_CLOSED = 0x5
    FRAME_SIZE_ERROR = 0x6
    REFUSED_STREAM = 0x7
    CANCEL = 0x8
    ENHANCE_YOUR_CALM = 0xB
    DEADLINE_EXCEEDED = 0x10
    HEADERS_TOO_LARGE = 0x11

    @classmethod
    def parse(cls, value: int) -> ErrorCode:
        """Map a received u32 to a known code; unknown codes mean INTERNAL_ERROR (§8)."""
        try:
            return cls(value)
        except ValueError:
            return cls.INTERNAL_ERROR


#: A stream reset with one of these codes was never seen by the peer's application, so the
#: request may be sent again on any connection whatever its method (PROTOCOL.md §8.2).
RETRY_SAFE_CODES = frozenset({ErrorCode.REFUSED_STREAM})


class MuxWSGIError(Exception):
    """Base of every exception raised by muxwsgi."""


class ProtocolError(MuxWSGIError):
    """A rule of the muxwsgi protocol was broken.

    Abstract: raise :class:`LocalProtocolError` or :class:`RemoteProtocolError` (or one of their
    subclasses). ``error_code`` is what goes on the wire.
    """

    error_code: ErrorCode = ErrorCode.PROTOCOL_ERROR

    def __init__(self, message: str, error_code: ErrorCode | None = None) -> None:
        if type(self) is ProtocolError:
            raise TypeError(
                "ProtocolError is abstract: raise LocalProtocolError or RemoteProtocolError"
            )
        super().__init__(message)
        if error_code is not None:
            self.error_code = error_code


class LocalProtocolError(ProtocolError):
    """This side tried to do something the protocol forbids; nothing was sent."""


class TooManyStreamsError(LocalProtocolError):
    """Opening another stream would exceed the peer's MAX_CONCURRENT_STREAMS (or a GOAWAY)."""

    error_code = ErrorCode.REFUSED_STREAM


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol. Raised by ``receive_data`` for connection errors.

    When this escapes ``receive_data`` the connection has already queued a GOAWAY with
    :attr:`error_code`; flush ``data_to_send()`` and close the transport.
    """


class PrefaceError(RemoteProtocolError):
    """The peer's first bytes are not a muxwsgi preface (wrong protocol, or a legacy server)."""


class FrameSizeError(RemoteProtocolError):
    """A frame's length is wrong for its type or above MAX_FRAME_SIZE."""

    error_code = ErrorCode.FRAME_SIZE_ERROR


class FlowControlError(RemoteProtocolError):
    """The peer overran or overflowed the connection window."""

    error_code = ErrorCode.FLOW_CONTROL_ERROR


class FloodError(RemoteProtocolError):
    """The peer exceeded a rate limit (resets, pings, settings, glitches, queued replies)."""

    error_code = ErrorCode.ENHANCE_YOUR_CALM


class InvalidVarsError(RemoteProtocolError):
    """A vars block or header list is malformed (duplicate or empty name, CR/LF/NUL, bad length).

    Raised by the codecs in :mod:`muxwsgi.classic` and by the mux HEADERS decoder; on a mux
    connection it becomes a stream error, on a classic uwsgi connection a 400 and a close.
    """


class StreamError(RemoteProtocolError):
    """The peer broke a rule that concerns one stream only.

    Never escapes ``receive_data``: the connection answers with RESET(error_code) on that stream,
    emits :class:`~muxwsgi.StreamReset` with ``remote=False`` and carries on.
    """

    def __init__(self, stream_id: int, message: str, error_code: ErrorCode) -> None:
        super().__init__(message, error_code)
        self.stream_id = stream_id
