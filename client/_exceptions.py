"""The client's exceptions, and the one place where low-level errors are mapped to them.

    ClientError (MuxWSGIError)
    ├── TransportError                  the network failed
    │   ├── ConnectError                could not connect (refused, unreachable, DNS)
    │   ├── ReadError / WriteError      the connection broke while reading / writing
    │   └── NotMuxWSGIError             the peer does not speak muxwsgi (says what it speaks)
    ├── TimeoutException                a time limit passed (also a builtin TimeoutError)
    │   ├── ConnectTimeout
    │   ├── RequestTimeout              the request's deadline passed; the stream was reset
    │   └── PoolTimeout                 no connection could take the request in time
    ├── ProtocolViolation               the server broke the protocol (connection closed)
    └── StreamResetError                the server reset the stream; ``error_code`` says why

Every message names the endpoint.
"""

from __future__ import annotations

import builtins

from muxwsgi import ErrorCode, MuxWSGIError

__all__ = (
    "ClientError",
    "ConnectError",
    "ConnectTimeout",
    "NotMuxWSGIError",
    "PoolTimeout",
    "ProtocolViolation",
    "ReadError",
    "RequestTimeout",
    "Retry",
    "StreamResetError",
    "TimeoutException",
    "TransportError",
    "WriteError",
)


class ClientError(MuxWSGIError):
    """Base of every error the client raises."""


class TransportError(ClientError):
    """The network failed."""


class ConnectError(TransportError):
    """Could not open a connection."""


class ReadError(TransportError):
    """The connection broke while reading."""


class WriteError(TransportError):
    """The connection broke while writing."""


class NotMuxWSGIError(TransportError):
    """The peer answered, but not in muxwsgi (an HTTP server, a classic uwsgi server, ...)."""


class TimeoutException(ClientError, builtins.TimeoutError):
    """A time limit passed. Also a builtin TimeoutError, so generic handlers catch it."""


class ConnectTimeout(TimeoutException):
    """The connection could not be opened in time."""


class RequestTimeout(TimeoutException):
    """The request's deadline passed: the stream was reset (CANCEL) and the answer dropped."""


class PoolTimeout(TimeoutException):
    """Every connection stayed busy (or unreachable) until the deadline."""


class ProtocolViolation(ClientError):
    """The server broke the muxwsgi protocol; the connection was closed."""


class StreamResetError(ClientError):
    """The server reset the stream; ``error_code`` (a muxwsgi.ErrorCode) says why."""

    def __init__(self, message: str, error_code: ErrorCode) -> None:
        super().__init__(message)
        self.error_code = error_code


class Retry(Exception):
    """Internal: the request never reached the application (REFUSED_STREAM, above a GOAWAY's
    last stream id, or never written); it may be sent again anywhere, whatever its method."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
