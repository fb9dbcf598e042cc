"""Every server setting, defined exactly once.

:data:`SETTINGS` is a tuple of :class:`Setting` records (name, section, default, description,
kind, bounds, command-line flags, uWSGI ini keys), each with the converter of its kind.
Everything else is derived from it by one loop: the ``muxwsgi serve`` argument parser, the
``MUXWSGI_<NAME>`` environment variables, the TOML config file (``--config``), the uWSGI ini
mapping (``--ini``), ``--help`` and docs/configuration.md. :class:`Config` is the frozen
result; its fields take their defaults from the table and :func:`config_mismatches` (run by
the tests) checks that the two agree.

This module is the table only. The sources that fill a Config are ``config_sources`` (raw
values and how layers of them resolve), ``config_ini`` and ``config_toml`` (the files), and
``config_load`` (the command line, the environment and their precedence); ``config_docs``
writes docs/configuration.md from the table.
"""

from __future__ import annotations

import ipaddress
import math
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = (
    "SECTIONS",
    "SETTINGS",
    "SETTINGS_BY_NAME",
    "Config",
    "ConfigError",
    "Kind",
    "Setting",
    "SettingValue",
    "config_mismatches",
)

APPLICATION = "Application"
SOCKETS = "Sockets"
TLS = "TLS"
WORKERS = "Workers"
LIMITS = "Protocol limits"
TIMEOUTS = "Timeouts"
FLOOD = "Flood protection"
LIFECYCLE = "Lifecycle"
LOGGING = "Logging and stats"
#: Sections in the order --help and the docs show them.
SECTIONS = (APPLICATION, SOCKETS, TLS, WORKERS, LIMITS, TIMEOUTS, FLOOD, LIFECYCLE, LOGGING)

#: How a raw value is converted: see the ``_to_*`` functions below.
Kind: TypeAlias = Literal[
    "str", "int", "float", "size", "bool", "choice", "mode", "address", "addresses", "networks"
]
_LIST_KINDS = ("addresses", "networks")
#: What a converted setting is (Config's field types): list settings are tuples, sizes and the
#: socket mode ints, durations floats, and an unset optional setting None.
SettingValue: TypeAlias = str | int | float | bool | tuple[str, ...] | None


class ConfigError(Exception):
    """A setting has an invalid value, or a source cannot be read. The message is one line
    that names the setting and where the value came from."""


@dataclass(frozen=True)
class Setting:
    """The one definition of a setting.

    ``flags`` defaults to ``--<name-with-dashes>``; ``minimum``/``maximum`` bound numbers;
    ``ini`` lists the uWSGI ini keys that map to this setting; ``positional`` makes it the
    positional argument of ``muxwsgi serve`` (only ``app``).
    """

    name: str
    section: str
    default: SettingValue
    desc: str
    kind: Kind = "str"
    flags: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    ini: tuple[str, ...] = ()
    metavar: str | None = None
    positional: bool = False

    @property
    def env(self) -> str:
        """The environment variable: ``MUXWSGI_`` and the upper-case name."""
        return "MUXWSGI_" + self.name.upper()

    @property
    def cli(self) -> tuple[str, ...]:
        """The command-line flags (empty for the positional setting)."""
        if self.positional:
            return ()
        return self.flags or ("--" + self.name.replace("_", "-"),)

    @property
    def label(self) -> str:
        """How messages name the setting: its own long flag if it has one, else its last."""
        if self.positional:
            return self.metavar or self.name
        own = "--" + self.name.replace("_", "-")
        return own if own in self.cli else self.cli[-1]

    @property
    def is_list(self) -> bool:
        """Whether values are lists (repeatable flags, comma-separated text)."""
        return self.kind in _LIST_KINDS

    @property
    def bounds(self) -> str:
        """The bounds as messages, --help and the docs say them (``1..65535``, ``>= 0``), or
        "" if the setting has none."""
        low, high = self.minimum, self.maximum
        if low is not None and high is not None:
            return f"{_number(low)}..{_number(high)}"
        if low is not None:
            return f">= {_number(low)}"
        return f"<= {_number(high)}" if high is not None else ""

    @property
    def shown_default(self) -> str:
        """The default as --help and the docs show it: ``unset``, ``0660``, ``1048576 (1m)``,
        comma-separated for lists."""
        value = self.default
        if value is None:
            return "unset"
        if isinstance(value, tuple):
            return ",".join(value)
        if self.kind == "mode" and isinstance(value, int):
            return f"{value:04o}"
        if self.kind == "size" and isinstance(value, int) and value >= 1024:
            for suffix, factor in (("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10)):
                if value % factor == 0:
                    return f"{value} ({value // factor}{suffix})"
        return _number(value) if isinstance(value, float) else str(value)

    def convert(self, raw: object, source: str) -> SettingValue:
        """Return ``raw`` (text from the command line, environment or an ini file, a TOML
        value, or a list of those for list settings) as this setting's type.

        Raises ConfigError (``invalid value for --threads (from MUXWSGI_THREADS): 'x' is not
        an integer``) if it does not convert or is out of bounds. An empty value resets a
        setting whose default is None (unset).
        """
        if self.default is None and raw in (None, ""):
            return None
        try:
            value = _CONVERTERS[self.kind](self, raw)
            self._check_bounds(value, raw)
        except ValueError as exc:
            raise ConfigError(f"invalid value for {self.label} (from {source}): {exc}") from None
        return value

    def _check_bounds(self, value: SettingValue, raw: object) -> None:
        if not isinstance(value, int | float) or isinstance(value, bool):
            return
        low, high = self.minimum, self.maximum
        if (low is not None and value < low) or (high is not None and value > high):
            raise ValueError(f"{raw!r} is out of range ({self.bounds})")


def _number(value: float) -> str:
    """``1.0`` as ``1``, other numbers as they are."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


# ---------------------------------------------------------------- conversions
# Each takes the setting and a raw value and returns the converted value or raises ValueError
# with a message that starts with the offending value.

_INTEGER = re.compile(r"[+-]?[0-9]+")
_SIZE = re.compile(r"([0-9]+)\s*([kmg]?)", re.IGNORECASE)
_SIZE_FACTORS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
_OCTAL = re.compile(r"(?:0o?)?([0-7]{1,4})", re.IGNORECASE)
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_HOSTNAME = re.compile(r"[A-Za-z0-9._-]+")  # a host name or an IPv4 address


def _to_str(setting: Setting, raw: object) -> str:
    if not isinstance(raw, str):
        raise ValueError(f"{raw!r} is not a string")
    if not raw:
        raise ValueError("'' is empty")
    return raw


def _to_int(setting: Setting, raw: object) -> int:
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and _INTEGER.fullmatch(raw.strip()):
        return int(raw)
    raise ValueError(f"{raw!r} is not an integer")


def _to_float(setting: Setting, raw: object) -> float:
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        value = float(raw)
    elif isinstance(raw, str):
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"{raw!r} is not a number") from None
    else:
        raise ValueError(f"{raw!r} is not a number")
    if not math.isfinite(value):
        raise ValueError(f"{raw!r} is not a finite number")
    return value


def _to_size(setting: Setting, raw: object) -> int:
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    match = _SIZE.fullmatch(raw.strip()) if isinstance(raw, str) else None
    if match is None:
        raise ValueError(f"{raw!r} is not a size (bytes, or with a suffix: 64k, 1m, 1g)")
    return int(match[1]) * _SIZE_FACTORS[match[2].lower()]


def _to_bool(setting: Setting, raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    text = raw.strip().lower() if isinstance(raw, str) else None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{raw!r} is not a boolean (1/0, true/false, yes/no, on/off)")


def _to_choice(setting: Setting, raw: object) -> str:
    text = raw.strip().lower() if isinstance(raw, str) else None
    if text not in setting.choices:
        raise ValueError(f"{raw!r} is not one of: {', '.join(setting.choices)}")
    return text


def _to_mode(setting: Setting, raw: object) -> int:
    # Text is always octal, as chmod and uWSGI read it ("660" is 0o660); a TOML integer
    # must be written 0o660, since 660 would be a different (and invalid) mode.
    if isinstance(raw, int) and not isinstance(raw, bool) and 0 <= raw <= 0o777:
        return raw
    match = _OCTAL.fullmatch(raw.strip()) if isinstance(raw, str) else None
    if match is None or int(match[1], 8) > 0o777:
        raise ValueError(f"{raw!r} is not an octal file mode (like 0660)")
    return int(match[1], 8)


def _to_address(setting: Setting, raw: object) -> str:
    text = _to_str(setting, raw).strip()
    if text.startswith("unix:"):
        if text == "unix:":
            raise ValueError(f"{raw!r} is not an address: unix: needs a path")
        return text
    host, colon, port = text.rpartition(":")
    if not colon or not port.isascii() or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{raw!r} is not an address (HOST:PORT, [IPV6]:PORT or unix:PATH)")
    if not host:
        # uWSGI reads ":8080" as every interface; here that must be said explicitly.
        raise ValueError(f"{raw!r} has no host (write 0.0.0.0{text} for all interfaces)")
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ValueError(f"{raw!r} is not an address: bad IPv6 address") from None
    elif ":" in host:
        raise ValueError(f"{raw!r} is not an address: write IPv6 addresses as [ADDR]:PORT")
    elif not _HOSTNAME.fullmatch(host):
        raise ValueError(f"{raw!r} is not an address: bad host name")
    return text


def _to_network(setting: Setting, raw: object) -> str:
    text = _to_str(setting, raw).strip()
    if text != "*":
        try:
            ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ValueError(
                f"{raw!r} is not an IP address or network (like 10.0.0.0/8, or * for any)"
            ) from None
    return text


def _to_list(
    item: Callable[[Setting, object], str],
) -> Callable[[Setting, object], tuple[str, ...]]:
    """A list converter: "a,b", ["a", "b"], or a repeated flag's ["a,b", "c"] -> ("a", "b", "c")."""

    def convert(setting: Setting, raw: object) -> tuple[str, ...]:
        parts = [raw] if isinstance(raw, str) else raw
        if not isinstance(parts, list | tuple) or not all(isinstance(p, str) for p in parts):
            raise ValueError(f"{raw!r} is not a list of strings")
        texts = [text.strip() for part in parts for text in part.split(",") if text.strip()]
        if not texts:
            raise ValueError(f"{raw!r} is empty: give at least one value")
        return tuple(item(setting, text) for text in texts)

    return convert


_CONVERTERS: dict[Kind, Callable[[Setting, object], SettingValue]] = {
    "str": _to_str,
    "int": _to_int,
    "float": _to_float,
    "size": _to_size,
    "bool": _to_bool,
    "choice": _to_choice,
    "mode": _to_mode,
    "address": _to_address,
    "addresses": _to_list(_to_address),
    "networks": _to_list(_to_network),
}

#: The Config field type of each kind (Optional when the default is None).
_FIELD_TYPES: dict[Kind, type | types.GenericAlias] = {
    "str": str,
    "int": int,
    "float": float,
    "size": int,
    "bool": bool,
    "choice": str,
    "mode": int,
    "address": str,
    "addresses": tuple[str, ...],
    "networks": tuple[str, ...],
}

_MAX_INT32 = 2**31 - 1


# ---------------------------------------------------------------- the table


def _allowance(
    name: str, burst: int, rate: float, burst_what: str, rate_what: str
) -> tuple[Setting, Setting]:
    """The two settings of one flood allowance: a token bucket of ``{name}_burst`` frames,
    refilled at ``{name}_rate`` frames per second."""
    return (
        Setting(f"{name}_burst", FLOOD, burst, f"{burst_what} in a burst.", kind="int", minimum=1),
        Setting(
            f"{name}_rate",
            FLOOD,
            rate,
            f"{rate_what} per second refilled.",
            kind="float",
            minimum=0.0,
            metavar="PER_SECOND",
        ),
    )


SETTINGS: tuple[Setting, ...] = (
    # Application
    Setting(
        "app",
        APPLICATION,
        None,
        "The WSGI application as MODULE:ATTRIBUTE (dotted attributes work; MODULE alone means "
        "MODULE:application, uWSGI's default). With --wsgi-file, just the ATTRIBUTE. Required "
        "unless given by --ini, --config or the environment.",
        positional=True,
        ini=("module",),
        metavar="MODULE:ATTR",
    ),
    Setting(
        "wsgi_file",
        APPLICATION,
        None,
        "Load the application from this Python file instead of importing a module.",
        ini=("wsgi-file",),
        metavar="FILE",
    ),
    Setting(
        "chdir",
        APPLICATION,
        None,
        "Change to this directory before loading the application (it then goes first on sys.path).",
        ini=("chdir",),
        metavar="DIR",
    ),
    # Sockets
    Setting(
        "bind",
        SOCKETS,
        ("127.0.0.1:3031",),
        "Address to listen on: HOST:PORT, [IPV6]:PORT or unix:PATH; repeat (or separate with "
        "commas) for several. Every socket speaks mux, classic uwsgi and HTTP/1.1. Never all "
        "interfaces unless asked: uwsgi must not face the public internet.",
        kind="addresses",
        flags=("-b", "--bind"),
        ini=("socket", "uwsgi-socket", "http-socket"),
    ),
    Setting(
        "backlog",
        SOCKETS,
        1024,
        "Listen backlog of each socket (the kernel caps it at somaxconn).",
        kind="int",
        flags=("--listen", "--backlog"),
        minimum=1,
        maximum=65535,
        ini=("listen",),
    ),
    Setting(
        "balance_connections",
        SOCKETS,
        True,
        "Spread connections evenly across the workers: a worker holding more than its share "
        "leaves new connections to the others. Long-lived connections (a proxy's keep-alive "
        "pool, mux clients) otherwise stay with whichever worker woke first. false: every "
        "worker accepts whatever it can.",
        kind="bool",
    ),
    Setting(
        "unix_socket_mode",
        SOCKETS,
        0o660,
        "File mode of unix sockets, in octal.",
        kind="mode",
        flags=("--chmod-socket",),
        ini=("chmod-socket",),
    ),
    Setting(
        "allow_from",
        SOCKETS,
        ("*",),
        "IP addresses or networks (CIDR) allowed to connect over TCP, comma-separated or "
        "repeated; * allows any. Unix sockets are always allowed.",
        kind="networks",
    ),
    # TLS (docs/tls.md)
    Setting(
        "certfile",
        TLS,
        None,
        "Certificate chain (PEM, the server's certificate first) served to TLS clients. With "
        "it, every socket also speaks TLS (mux, classic uwsgi and HTTP/1.1 inside it); HUP "
        "loads it again.",
        metavar="FILE",
    ),
    Setting(
        "keyfile",
        TLS,
        None,
        "Private key of --certfile (PEM; unset: it is in --certfile).",
        metavar="FILE",
    ),
    Setting(
        "ca_certs",
        TLS,
        None,
        "CA certificates (PEM) that client certificates must be signed by. With it, every TLS "
        "client must present a valid certificate (mutual TLS).",
        metavar="FILE",
    ),
    Setting(
        "ssl_ciphers",
        TLS,
        None,
        "OpenSSL cipher list for TLS 1.2 (unset: Python's default, forward-secret ciphers "
        "only; TLS 1.3's suites are all strong and always on).",
        metavar="CIPHERS",
    ),
    Setting(
        "ssl_min_version",
        TLS,
        "1.2",
        "Oldest TLS version accepted.",
        kind="choice",
        choices=("1.2", "1.3"),
    ),
    Setting(
        "tls_only",
        TLS,
        False,
        "Refuse plaintext connections (by default a socket with --certfile serves both).",
        kind="bool",
    ),
    # Workers
    Setting(
        "workers",
        WORKERS,
        1,
        "Worker processes.",
        kind="int",
        flags=("-w", "--workers"),
        minimum=1,
        maximum=1024,
        ini=("processes", "workers"),
    ),
    Setting(
        "threads",
        WORKERS,
        8,
        "Application threads of each worker: also the bound on running application calls, "
        "however many streams are open.",
        kind="int",
        flags=("-t", "--threads"),
        minimum=1,
        maximum=4096,
        ini=("threads",),
    ),
    Setting(
        "loop",
        WORKERS,
        "auto",
        "Event loop of the workers (auto: uvloop when it is installed).",
        kind="choice",
        choices=("auto", "asyncio", "uvloop"),
    ),
    # Protocol limits
    Setting(
        "max_concurrent_streams",
        LIMITS,
        128,
        "Streams one mux connection may have open (advertised to the client).",
        kind="int",
        minimum=1,
        maximum=65535,
    ),
    Setting(
        "initial_window_size",
        LIMITS,
        1048576,
        "Flow-control receive window of each stream, bytes (a request body buffered before the "
        "application reads it; smaller windows cost uploads a round trip per window).",
        kind="size",
        minimum=1,
        maximum=_MAX_INT32,
    ),
    Setting(
        "connection_window_size",
        LIMITS,
        4194304,
        "Flow-control receive window of each mux connection, bytes: the most request-body bytes "
        "one connection can have buffered in the server.",
        kind="size",
        minimum=65535,
        maximum=_MAX_INT32,
    ),
    Setting(
        "max_frame_size",
        LIMITS,
        65535,
        "Largest frame payload accepted, bytes.",
        kind="size",
        minimum=16384,
        maximum=65535,
    ),
    Setting(
        "buffer_size",
        LIMITS,
        32768,
        "Largest request head (classic vars block, mux HEADERS, HTTP request head), bytes "
        "(uWSGI's name).",
        kind="size",
        minimum=1024,
        maximum=65535,
        ini=("buffer-size",),
    ),
    Setting(
        "max_vars",
        LIMITS,
        256,
        "Most vars (or HTTP headers) in one request head.",
        kind="int",
        minimum=1,
        maximum=10000,
    ),
    Setting(
        "limit_post",
        LIMITS,
        104857600,
        "Largest request body, bytes (0: unlimited).",
        kind="size",
        minimum=0,
        ini=("limit-post",),
    ),
    Setting(
        "max_connections",
        LIMITS,
        1000,
        "Open connections per worker; more are closed at once.",
        kind="int",
        minimum=1,
    ),
    Setting(
        "send_buffer_size",
        LIMITS,
        262144,
        "Response bytes of one stream buffered for sending while the client's window is shut; "
        "past it the application's iterator waits.",
        kind="size",
        minimum=4096,
    ),
    Setting(
        "body_buffer_size",
        LIMITS,
        1048576,
        "Request bodies up to this size are read in full by the event loop before the "
        "application is called, so that wsgi.input never waits for the client (and a client "
        "that stalls holds no thread); larger bodies start the application once this much has "
        "arrived and stream the rest (see upload_threads). On mux it is also capped by "
        "initial_window_size (0: stream every body).",
        kind="size",
        minimum=0,
    ),
    Setting(
        "upload_threads",
        LIMITS,
        0,
        "Application threads of a worker that requests still receiving their body (those over "
        "body_buffer_size) may hold at once; the others wait for one without a thread "
        "(0: half of --threads, at least 1).",
        kind="int",
        minimum=0,
    ),
    Setting(
        "upload_threads_per_connection",
        LIMITS,
        2,
        "Of those, how many one connection may hold at once (mux: its streams together).",
        kind="int",
        minimum=1,
    ),
    Setting(
        "max_request_line",
        LIMITS,
        8190,
        "Longest HTTP/1.1 request line, bytes.",
        kind="size",
        minimum=64,
        maximum=65535,
    ),
    # Timeouts (seconds). Those without an "off" value must stay positive: 0 would time out
    # every connection at once.
    Setting(
        "header_timeout",
        TIMEOUTS,
        10.0,
        "Seconds to receive a connection's preface (a TLS handshake, then the protocol's) or a "
        "complete request head.",
        kind="float",
        minimum=0.1,
    ),
    Setting(
        "body_timeout",
        TIMEOUTS,
        30.0,
        "Seconds a request body may stay idle: while the server buffers it (then the stream is "
        "reset, or 408 and close), and while the application reads it (wsgi.input raises).",
        kind="float",
        minimum=0.1,
    ),
    Setting(
        "keepalive_timeout",
        TIMEOUTS,
        5.0,
        "Seconds an idle HTTP/1.1 keep-alive connection is kept open.",
        kind="float",
        minimum=0.1,
    ),
    Setting(
        "idle_timeout",
        TIMEOUTS,
        300.0,
        "Seconds a mux connection without streams is kept open.",
        kind="float",
        minimum=0.1,
    ),
    Setting(
        "stuck_window_timeout",
        TIMEOUTS,
        30.0,
        "Seconds a stream's send window may stay at 0 before the stream is reset.",
        kind="float",
        minimum=0.1,
    ),
    Setting(
        "graceful_timeout",
        TIMEOUTS,
        30.0,
        "Seconds a stopping or reloading worker gets to finish its requests.",
        kind="float",
        minimum=0.0,
    ),
    Setting(
        "harakiri",
        TIMEOUTS,
        0.0,
        "Per-request timeout, seconds: a worker with a request running longer is replaced "
        "(0: off).",
        kind="float",
        minimum=0.0,
        ini=("harakiri",),
    ),
    Setting(
        "heartbeat_timeout",
        TIMEOUTS,
        30.0,
        "Seconds a worker's event loop may miss its heartbeat before the master replaces it "
        "(worker liveness, separate from harakiri; 0: off).",
        kind="float",
        minimum=0.0,
    ),
    # Flood protection: token buckets per connection (burst, refilled at rate per second).
    *_allowance("reset", 1000, 100.0, "RESET frames a client may send", "RESET frames"),
    *_allowance("ping", 50, 5.0, "PING frames", "PING frames"),
    *_allowance("settings", 20, 1.0, "SETTINGS frames", "SETTINGS frames"),
    *_allowance(
        "glitch",
        1000,
        100.0,
        "Useless frames (empty DATA, frames on closed streams, unknown types, invalid requests)",
        "Useless frames",
    ),
    Setting(
        "max_queued_control",
        FLOOD,
        1000,
        "Control replies (PING and SETTINGS acknowledgements, RESETs) queued for a client "
        "that does not read.",
        kind="int",
        minimum=1,
    ),
    Setting(
        "frames_per_turn",
        FLOOD,
        128,
        "Frames of one mux connection handled per event-loop turn; the rest wait for the next "
        "turn, so a flooding connection cannot starve the others (smaller is fairer under a "
        "flood, larger costs less CPU per request).",
        kind="int",
        minimum=1,
    ),
    Setting(
        "flood_turn_share",
        FLOOD,
        8,
        "A suspected flooder (a connection past half of any flood allowance above) gets "
        "frames_per_turn divided by this per turn, until its allowance refills or runs out.",
        kind="int",
        minimum=1,
    ),
    Setting(
        "flood_turn_interval",
        FLOOD,
        0.01,
        "Seconds between two turns given to suspected flooders: one turn per interval for all "
        "of them together (a flood gains nothing from more connections).",
        kind="float",
        minimum=0.001,
        metavar="SECONDS",
    ),
    Setting(
        "flood_suspect_timeout",
        FLOOD,
        2.0,
        "Seconds a suspected flooder may keep frames waiting before GOAWAY ENHANCE_YOUR_CALM "
        "ends its connection.",
        kind="float",
        minimum=0.1,
        metavar="SECONDS",
    ),
    # Lifecycle
    Setting(
        "max_requests",
        LIFECYCLE,
        0,
        "Replace a worker after this many requests (0: never).",
        kind="int",
        minimum=0,
        ini=("max-requests",),
    ),
    Setting(
        "max_requests_jitter",
        LIFECYCLE,
        0,
        "Up to this many random extra requests per worker, so that workers do not all "
        "restart together.",
        kind="int",
        minimum=0,
    ),
    Setting(
        "max_worker_lifetime",
        LIFECYCLE,
        0.0,
        "Replace a worker after this many seconds (0: never).",
        kind="float",
        minimum=0.0,
        ini=("max-worker-lifetime",),
    ),
    Setting(
        "reload_on_rss",
        LIFECYCLE,
        0,
        "Replace a worker whose resident memory exceeds this many MiB (0: never).",
        kind="int",
        minimum=0,
        ini=("reload-on-rss",),
        metavar="MIB",
    ),
    Setting(
        "pid_file",
        LIFECYCLE,
        None,
        "Write the master's pid to this file.",
        flags=("--pid-file",),
        ini=("pidfile",),
        metavar="FILE",
    ),
    # Logging and stats
    Setting(
        "access_log",
        LOGGING,
        None,
        "Access log: - for stderr, or a file (off by default: it costs time per request).",
        flags=("--access-log",),
        metavar="FILE",
    ),
    Setting(
        "log_format",
        LOGGING,
        "text",
        "Access log format.",
        kind="choice",
        choices=("text", "json"),
    ),
    Setting(
        "log_level",
        LOGGING,
        "info",
        "Error log level.",
        kind="choice",
        choices=("debug", "info", "warning", "error"),
    ),
    Setting(
        "error_log",
        LOGGING,
        None,
        "Error log file (unset: stderr).",
        metavar="FILE",
    ),
    Setting(
        "stats",
        LOGGING,
        None,
        "Serve stats (JSON at /, Prometheus at /metrics) and health checks (/healthz, "
        "/readyz) on HOST:PORT or unix:PATH.",
        kind="address",
        flags=("--stats",),
        ini=("stats",),
    ),
    Setting(
        "request_id_header",
        LOGGING,
        "X-Request-ID",
        "Request header whose value becomes the request id (one is generated otherwise); "
        "exposed as environ['muxwsgi.request_id'].",
        metavar="HEADER",
    ),
    Setting(
        "opentelemetry",
        LOGGING,
        False,
        "An OpenTelemetry SERVER span per request, child of the caller's traceparent and "
        "current while the application runs (needs opentelemetry-api: pip install "
        "'muxwsgi[otel]'; off by default: it costs time per request).",
        kind="bool",
    ),
)

#: The settings by name.
SETTINGS_BY_NAME: Mapping[str, Setting] = {item.name: item for item in SETTINGS}


def _default(name: str) -> Any:
    """The default of setting ``name``: Config's fields read it so that no default is written
    twice. (KeyError at import if a field has no setting.)

    Any, because each field's own annotation is its type; config_mismatches checks that the
    annotation and the setting's kind and default agree.
    """
    return SETTINGS_BY_NAME[name].default


@dataclass(frozen=True)
class Config:
    """The effective settings of a server, one field per entry of SETTINGS, in the same order.

    Build it with ``config_load.load_config`` (which validates); ``Config()`` is all defaults
    and ``dataclasses.replace(config, workers=2)`` derives one (unvalidated, for tests). List
    settings are tuples, sizes are ints in bytes, durations floats in seconds, the socket mode
    an int (0o660), and unset optional settings None.
    """

    # Application
    app: str | None = _default("app")
    wsgi_file: str | None = _default("wsgi_file")
    chdir: str | None = _default("chdir")
    # Sockets
    bind: tuple[str, ...] = _default("bind")
    backlog: int = _default("backlog")
    balance_connections: bool = _default("balance_connections")
    unix_socket_mode: int = _default("unix_socket_mode")
    allow_from: tuple[str, ...] = _default("allow_from")
    # TLS
    certfile: str | None = _default("certfile")
    keyfile: str | None = _default("keyfile")
    ca_certs: str | None = _default("ca_certs")
    ssl_ciphers: str | None = _default("ssl_ciphers")
    ssl_min_version: str = _default("ssl_min_version")
    tls_only: bool = _default("tls_only")
    # Workers
    workers: int = _default("workers")
    threads: int = _default("threads")
    loop: str = _default("loop")
    # Protocol limits
    max_concurrent_streams: int = _default("max_concurrent_streams")
    initial_window_size: int = _default("initial_window_size")
    connection_window_size: int = _default("connection_window_size")
    max_frame_size: int = _default("max_frame_size")
    buffer_size: int = _default("buffer_size")
    max_vars: int = _default("max_vars")
    limit_post: int = _default("limit_post")
    max_connections: int = _default("max_connections")
    send_buffer_size: int = _default("send_buffer_size")
    body_buffer_size: int = _default("body_buffer_size")
    upload_threads: int = _default("upload_threads")
    upload_threads_per_connection: int = _default("upload_threads_per_connection")
    max_request_line: int = _default("max_request_line")
    # Timeouts
    header_timeout: float = _default("header_timeout")
    body_timeout: float = _default("body_timeout")
    keepalive_timeout: float = _default("keepalive_timeout")
    idle_timeout: float = _default("idle_timeout")
    stuck_window_timeout: float = _default("stuck_window_timeout")
    graceful_timeout: float = _default("graceful_timeout")
    harakiri: float = _default("harakiri")
    heartbeat_timeout: float = _default("heartbeat_timeout")
    # Flood protection
    reset_burst: int = _default("reset_burst")
    reset_rate: float = _default("reset_rate")
    ping_burst: int = _default("ping_burst")
    ping_rate: float = _default("ping_rate")
    settings_burst: int = _default("settings_burst")
    settings_rate: float = _default("settings_rate")
    glitch_burst: int = _default("glitch_burst")
    glitch_rate: float = _default("glitch_rate")
    max_queued_control: int = _default("max_queued_control")
    frames_per_turn: int = _default("frames_per_turn")
    flood_turn_share: int = _default("flood_turn_share")
    flood_turn_interval: float = _default("flood_turn_interval")
    flood_suspect_timeout: float = _default("flood_suspect_timeout")
    # Lifecycle
    max_requests: int = _default("max_requests")
    max_requests_jitter: int = _default("max_requests_jitter")
    max_worker_lifetime: float = _default("max_worker_lifetime")
    reload_on_rss: int = _default("reload_on_rss")
    pid_file: str | None = _default("pid_file")
    # Logging and stats
    access_log: str | None = _default("access_log")
    log_format: str = _default("log_format")
    log_level: str = _default("log_level")
    error_log: str | None = _default("error_log")
    stats: str | None = _default("stats")
    request_id_header: str = _default("request_id_header")
    opentelemetry: bool = _default("opentelemetry")


def config_mismatches(
    config_class: type[DataclassInstance] = Config, settings: Sequence[Setting] = SETTINGS
) -> list[str]:
    """Return every disagreement between the settings table and the Config dataclass (and
    every inconsistency inside the table) as one sentence each; [] when all is well."""
    problems: list[str] = []
    names = [item.name for item in settings]
    field_names = [field.name for field in fields(config_class)]
    problems += [f"setting {n!r} has no Config field" for n in names if n not in field_names]
    problems += [f"Config field {n!r} has no setting" for n in field_names if n not in names]
    if not problems and names != field_names:
        problems.append("Config fields are not in the order of SETTINGS")
    hints = typing.get_type_hints(config_class)
    defaults = {field.name: field.default for field in fields(config_class)}
    for item in settings:
        if item.section not in SECTIONS:
            problems.append(f"setting {item.name!r}: unknown section {item.section!r}")
        if not item.desc.endswith("."):
            problems.append(f"setting {item.name!r}: the description must end with a period")
        expected: object = _FIELD_TYPES[item.kind]
        if item.default is None:
            expected = _FIELD_TYPES[item.kind] | None
        if item.name in hints and hints[item.name] != expected:
            problems.append(
                f"Config.{item.name} is typed {hints[item.name]}, its {item.kind} setting "
                f"needs {expected}"
            )
        if item.name in defaults and defaults[item.name] != item.default:
            problems.append(f"Config.{item.name} default differs from the setting's")
        try:
            converted = item.convert(item.default, "the default")
            # The type too: 1 == 1.0, but a float setting's default must not be an int.
            if converted != item.default or type(converted) is not type(item.default):
                problems.append(f"setting {item.name!r}: default is not of its kind")
        except ConfigError as exc:
            problems.append(f"setting {item.name!r}: bad default: {exc}")
    for what, keys in (
        ("name", names),
        ("flag", [flag for item in settings for flag in item.cli]),
        ("uWSGI ini key", [key for item in settings for key in item.ini]),
    ):
        for key in sorted({key for key in keys if keys.count(key) > 1}):
            problems.append(f"{what} {key!r} is used by two settings")
    return problems
