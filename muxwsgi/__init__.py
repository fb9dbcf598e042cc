"""muxwsgi: the uwsgi protocol made multiplexed.

This package is the protocol core: a sans-IO state machine (:class:`Connection`), its events and
errors, the frame codec and the classic uwsgi codec (:mod:`muxwsgi.classic`). It performs no I/O
and imports neither the client (:mod:`muxwsgi.client`) nor the server (:mod:`muxwsgi.server`).
"""

from ._compiled import INFO as _BUILD
from ._connection import (
    DEFAULT_WINDOW,
    Connection,
    ConnectionConfig,
    ConnectionState,
    Counters,
    Role,
)
from ._detect import Protocol, describe_peer_bytes, detect_protocol
from ._errors import (
    RETRY_SAFE_CODES,
    ErrorCode,
    FloodError,
    FlowControlError,
    FrameSizeError,
    InvalidVarsError,
    LocalProtocolError,
    MuxWSGIError,
    PrefaceError,
    ProtocolError,
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
)
from ._flood import FloodLimits
from ._frames import MAGIC, MAX_PAYLOAD, MAX_STREAM_ID, MAX_WINDOW, Flags, FrameType
from ._settings import SettingCode, Settings
from ._vars import MAX_TIMEOUT_MS, TIMEOUT_VAR, VarsBlock

__version__ = "0.1.0"
#: Whether this package runs its mypyc-compiled modules (False: the pure-Python reference build,
#: see ``muxwsgi --version`` for why).
compiled: bool = _BUILD.compiled
#: Which build runs, in a line: "compiled (mypyc 1.15.0, 19 modules)" or "pure Python (why)".
build_description: str = _BUILD.describe()

__all__ = (
    "DEFAULT_WINDOW",
    "MAGIC",
    "MAX_PAYLOAD",
    "MAX_STREAM_ID",
    "MAX_TIMEOUT_MS",
    "MAX_WINDOW",
    "RETRY_SAFE_CODES",
    "TIMEOUT_VAR",
    "Connection",
    "ConnectionConfig",
    "ConnectionState",
    "ConnectionTerminated",
    "Counters",
    "DataReceived",
    "ErrorCode",
    "Event",
    "Flags",
    "FloodError",
    "FloodLimits",
    "FlowControlError",
    "FrameSizeError",
    "FrameType",
    "InvalidVarsError",
    "LocalProtocolError",
    "MuxWSGIError",
    "PingAcknowledged",
    "PingReceived",
    "PrefaceError",
    "Protocol",
    "ProtocolError",
    "RemoteProtocolError",
    "RequestReceived",
    "ResponseReceived",
    "Role",
    "SettingCode",
    "Settings",
    "SettingsAcknowledged",
    "SettingsChanged",
    "StreamEnded",
    "StreamError",
    "StreamReset",
    "TooManyStreamsError",
    "VarsBlock",
    "WindowUpdated",
    "__version__",
    "build_description",
    "compiled",
    "describe_peer_bytes",
    "detect_protocol",
)
