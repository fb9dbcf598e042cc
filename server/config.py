"""Every server setting, defined once.

Each setting is one typed attribute of :class:`Config`, declared with :func:`setting`: default,
bounds, help text, command-line flags and uWSGI ini names. From those declarations come the
``muxwsgi serve`` argument parser, the ``MUXWSGI_<NAME>`` environment variables, the TOML config
file (``--config``), the uWSGI ini mapping (``--ini``), ``--help`` and the docs table
(docs/configuration.md, checked by a test).

Precedence, lowest first: defaults, ``--ini`` file, ``--config`` file, environment, command line.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

__all__ = ("SETTINGS", "Config", "ConfigError", "Setting", "build_parser", "load_config")

T = TypeVar("T")

APPLICATION = "Application"
SOCKETS = "Sockets"
WORKERS = "Workers"
LIMITS = "Protocol limits"
TIMEOUTS = "Timeouts"
FLOOD = "Flood protection"
LIFECYCLE = "Lifecycle"
LOGGING = "Logging and stats"
SECTIONS = (APPLICATION, SOCKETS, WORKERS, LIMITS, TIMEOUTS, FLOOD, LIFECYCLE, LOGGING)


class ConfigError(Exception):
    """A setting has an invalid value; the message names the setting and where it came from."""


_SIZE_SUFFIXES = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass
class Setting:
    """The one definition of a setting. ``kind`` picks the parser: int, float, size, bool,
    str, choice, list, mode (octal file mode), address (HOST:PORT or unix:PATH)."""

    default: Any
    section: str
    help: str
    kind: str
    flags: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    ini: tuple[str, ...] = ()
    positional: bool = False
    metavar: str | None = None
    name: str = ""  # filled in from the attribute name

    @property
    def env(self) -> str:
        return f"MUXWSGI_{self.name.upper()}"

    @property
    def cli(self) -> tuple[str, ...]:
        return self.flags or (f"--{self.name.replace('_', '-')}",)

    def parse(self, value: Any, source: str) -> Any:
        """Convert ``value`` (a string, or a TOML value) and check it; ConfigError if invalid."""
        try:
            parsed = self._convert(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"invalid value for {self.cli[-1] if not self.positional else self.name} "
                f"(from {source}): {value!r} {exc}"
            ) from None
        if self._outside(parsed):
            raise ConfigError(
                f"invalid value for {self.cli[-1]} (from {source}): {value!r} is outside "
                f"{_fmt(self.minimum)}..{_fmt(self.maximum)}"
            )
        return parsed

    def _outside(self, parsed: Any) -> bool:
        if not isinstance(parsed, int | float) or isinstance(parsed, bool):
            return False
        return (self.minimum is not None and parsed < self.minimum) or (
            self.maximum is not None and parsed > self.maximum
        )

    def _convert(self, value: Any) -> Any:
        kind = self.kind
        if value is None:
            if self.default is None:
                return None
            raise ValueError("needs a value")
        if kind == "int":
            if isinstance(value, bool) or not isinstance(value, int | str):
                raise TypeError("is not an integer")
            try:
                return int(value)
            except ValueError:
                raise ValueError("is not an integer") from None
        if kind == "float":
            try:
                return float(value)
            except (TypeError, ValueError):
                raise ValueError("is not a number") from None
        if kind == "size":
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            text = str(value).strip().lower().removesuffix("b")
            factor = _SIZE_SUFFIXES.get(text[-1:], 1)
            number = text[:-1] if text[-1:] in _SIZE_SUFFIXES else text
            if not number.isdigit():
                raise ValueError("is not a size (e.g. 65536, 64k, 100m, 1g)")
            return int(number) * factor
        if kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError("is not a boolean (true/false, yes/no, on/off, 1/0)")
        if kind == "choice":
            if value not in self.choices:
                raise ValueError(f"is not one of {', '.join(self.choices)}")
            return value
        if kind == "mode":
            if isinstance(value, int):
                return value
            try:
                return int(str(value), 8)
            except ValueError:
                raise ValueError("is not an octal file mode (e.g. 0660)") from None
        if kind == "networks":
            result = _split(value)
            for item in result:
                if item != "*":
                    ipaddress.ip_network(item, strict=False)
            return result
        if kind == "addresses":
            result = _split(value)
            for item in result:
                _check_address(item)
            return result
        if kind == "address":
            _check_address(str(value))
            return str(value)
        return str(value)


def _split(value: Any) -> list[str]:
    """A list setting from "a,b", ["a", "b"] or a repeated flag's ["a,b", "c"]."""
    parts = [value] if isinstance(value, str) else list(value)
    return [item.strip() for part in parts for item in str(part).split(",") if item.strip()]


def _check_address(text: str) -> None:
    if text.startswith("unix:"):
        if len(text) > 5:
            return
        raise ValueError("is not an address: unix: needs a path")
    _, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError("is not an address (HOST:PORT, [IPV6]:PORT or unix:PATH)")


def _fmt(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else str(value)


def setting(
    default: T,
    section: str,
    help: str,
    *,
    kind: str | None = None,
    flags: tuple[str, ...] = (),
    minimum: float | None = None,
    maximum: float | None = None,
    choices: tuple[str, ...] = (),
    ini: tuple[str, ...] = (),
    positional: bool = False,
    metavar: str | None = None,
) -> T:
    """Declare a setting as a Config attribute (typed as its value, like dataclasses.field)."""
    if kind is None:
        kind = {bool: "bool", int: "int", float: "float", str: "str"}.get(type(default), "str")
    if choices:
        kind = "choice"
    return cast(
        T,
        Setting(
            default,
            section,
            help,
            kind,
            flags,
            minimum,
            maximum,
            choices,
            ini,
            positional,
            metavar,
        ),
    )


class Config:
    """The effective settings of a server. Immutable once built (see :func:`load_config`)."""

    # ---------------------------------------------------------------- Application
    app: str | None = setting(
        None,
        APPLICATION,
        "The WSGI application, MODULE:ATTRIBUTE (MODULE alone means MODULE:application).",
        positional=True,
        ini=("module",),
        metavar="MODULE:ATTR",
    )
    wsgi_file: str | None = setting(
        None,
        APPLICATION,
        "Load the application module from this .py file instead.",
        kind="str",
        ini=("wsgi-file",),
    )
    chdir: str | None = setting(
        None,
        APPLICATION,
        "Change to this directory before loading the application.",
        kind="str",
        ini=("chdir",),
    )

    # ---------------------------------------------------------------- Sockets
    bind: list[str] = setting(
        ["127.0.0.1:3031"],
        SOCKETS,
        "Address to listen on: HOST:PORT, [IPV6]:PORT or unix:PATH. "
        "Repeat for several. Every socket speaks mux, classic uwsgi and HTTP/1.1. Never all "
        "interfaces unless asked: uwsgi must not face the public internet.",
        kind="addresses",
        flags=("-b", "--bind"),
        ini=("socket", "uwsgi-socket", "http-socket"),
        metavar="ADDRESS",
    )
    backlog: int = setting(
        1024,
        SOCKETS,
        "Listen backlog (capped by the kernel's somaxconn).",
        flags=("--listen", "--backlog"),
        minimum=1,
        maximum=65535,
        ini=("listen",),
    )
    unix_socket_mode: int = setting(
        0o660,
        SOCKETS,
        "File mode of unix sockets (octal).",
        kind="mode",
        flags=("--chmod-socket",),
        ini=("chmod-socket",),
    )
    allow_from: list[str] = setting(
        ["*"],
        SOCKETS,
        "IP addresses or networks allowed to connect over TCP (comma-separated; "
        "* for any). Unix sockets are always allowed.",
        kind="networks",
    )

    # ---------------------------------------------------------------- Workers
    workers: int = setting(
        1,
        WORKERS,
        "Worker processes.",
        flags=("-w", "--workers"),
        minimum=1,
        maximum=1024,
        ini=("processes", "workers"),
    )
    threads: int = setting(
        8,
        WORKERS,
        "Application threads per worker: also the bound on running application "
        "calls, whatever the number of open streams.",
        flags=("-t", "--threads"),
        minimum=1,
        maximum=4096,
        ini=("threads",),
    )
    loop: str = setting(
        "auto",
        WORKERS,
        "Event loop of the workers (auto: uvloop when installed).",
        choices=("auto", "asyncio", "uvloop"),
    )

    # ---------------------------------------------------------------- Protocol limits
    max_concurrent_streams: int = setting(
        128,
        LIMITS,
        "Streams one mux connection may have open (advertised in SETTINGS).",
        minimum=1,
        maximum=65535,
    )
    initial_window_size: int = setting(
        262144,
        LIMITS,
        "Flow-control receive window of each stream, bytes.",
        kind="size",
        minimum=1,
        maximum=2**31 - 1,
    )
    connection_window_size: int = setting(
        1048576,
        LIMITS,
        "Flow-control receive window of each mux connection, bytes.",
        kind="size",
        minimum=65535,
        maximum=2**31 - 1,
    )
    max_frame_size: int = setting(
        65535,
        LIMITS,
        "Largest DATA frame accepted, bytes.",
        kind="size",
        minimum=16384,
        maximum=65535,
    )
    buffer_size: int = setting(
        32768,
        LIMITS,
        "Largest request head (vars block, mux HEADERS, HTTP headers), bytes (uWSGI's name).",
        kind="size",
        minimum=1024,
        maximum=65535,
        ini=("buffer-size",),
    )
    max_vars: int = setting(
        256,
        LIMITS,
        "Most vars (or HTTP headers) in one request head.",
        minimum=1,
        maximum=10000,
        ini=("max-vars",),
    )
    limit_post: int = setting(
        104857600,
        LIMITS,
        "Largest request body, bytes (0: unlimited).",
        kind="size",
        minimum=0,
        ini=("limit-post",),
    )
    max_connections: int = setting(
        1000,
        LIMITS,
        "Open connections per worker; more are closed at once.",
        minimum=1,
    )
    send_buffer_size: int = setting(
        262144,
        LIMITS,
        "Response bytes of one stream buffered while the client's window is "
        "shut; past it the application thread waits.",
        kind="size",
        minimum=4096,
    )
    max_request_line: int = setting(
        8190,
        LIMITS,
        "Longest HTTP/1.1 request target, bytes.",
        kind="size",
        minimum=64,
    )

    # ---------------------------------------------------------------- Timeouts
    header_timeout: float = setting(
        10.0,
        TIMEOUTS,
        "Seconds to receive a connection's preface or a complete request head.",
        minimum=0.1,
    )
    body_timeout: float = setting(
        30.0,
        TIMEOUTS,
        "Seconds a request body may stay idle while the application reads it.",
        minimum=0.1,
    )
    keepalive_timeout: float = setting(
        5.0,
        TIMEOUTS,
        "Seconds an idle HTTP/1.1 keep-alive connection is kept.",
        minimum=0.1,
    )
    idle_timeout: float = setting(
        300.0,
        TIMEOUTS,
        "Seconds a mux connection without streams is kept.",
        minimum=0.1,
    )
    stuck_window_timeout: float = setting(
        30.0,
        TIMEOUTS,
        "Seconds a stream's send window may stay shut before the stream is reset.",
        minimum=0.1,
    )
    graceful_timeout: float = setting(
        30.0,
        TIMEOUTS,
        "Seconds a stopping or reloading worker gets to finish its requests.",
        minimum=0.0,
    )
    harakiri: float = setting(
        0.0,
        TIMEOUTS,
        "Per-request timeout, seconds: a worker with a request running longer is "
        "replaced (0: off).",
        minimum=0.0,
        ini=("harakiri",),
    )
    heartbeat_timeout: float = setting(
        30.0,
        TIMEOUTS,
        "Seconds a worker's event loop may miss its heartbeat before the master "
        "kills it (separate from harakiri; 0: off).",
        minimum=0.0,
    )

    # ---------------------------------------------------------------- Flood protection
    reset_burst: int = setting(1000, FLOOD, "RESET frames a client may send in a burst.", minimum=1)
    reset_rate: float = setting(100.0, FLOOD, "RESET frames per second refilled.", minimum=0.0)
    ping_burst: int = setting(50, FLOOD, "PING frames in a burst.", minimum=1)
    ping_rate: float = setting(5.0, FLOOD, "PING frames per second refilled.", minimum=0.0)
    settings_burst: int = setting(20, FLOOD, "SETTINGS frames in a burst.", minimum=1)
    settings_rate: float = setting(1.0, FLOOD, "SETTINGS frames per second refilled.", minimum=0.0)
    glitch_burst: int = setting(
        1000,
        FLOOD,
        "Useless frames (empty DATA, frames on closed streams, unknown types, "
        "invalid requests) in a burst.",
        minimum=1,
    )
    glitch_rate: float = setting(100.0, FLOOD, "Useless frames per second refilled.", minimum=0.0)
    max_queued_control: int = setting(
        1000,
        FLOOD,
        "Control replies (PING/SETTINGS ACK, RESET) queued for a client that does not read.",
        minimum=1,
    )

    # ---------------------------------------------------------------- Lifecycle
    max_requests: int = setting(
        0,
        LIFECYCLE,
        "Replace a worker after this many requests (0: never).",
        minimum=0,
        ini=("max-requests",),
    )
    max_requests_jitter: int = setting(
        0,
        LIFECYCLE,
        "Random extra requests per worker, so that workers do not restart together.",
        minimum=0,
    )
    max_worker_lifetime: float = setting(
        0.0,
        LIFECYCLE,
        "Replace a worker after this many seconds (0: never).",
        minimum=0.0,
        ini=("max-worker-lifetime",),
    )
    reload_on_rss: int = setting(
        0,
        LIFECYCLE,
        "Replace a worker whose resident memory exceeds this many MiB (0: never).",
        minimum=0,
        ini=("reload-on-rss",),
    )
    pid_file: str | None = setting(
        None,
        LIFECYCLE,
        "Write the master's pid to this file.",
        kind="str",
        ini=("pidfile",),
    )

    # ---------------------------------------------------------------- Logging and stats
    access_log: str | None = setting(
        None,
        LOGGING,
        "Access log: - for stderr, or a file (off by default: it costs per request).",
        kind="str",
    )
    log_format: str = setting("text", LOGGING, "Access log format.", choices=("text", "json"))
    log_level: str = setting(
        "info",
        LOGGING,
        "Error log level.",
        choices=("debug", "info", "warning", "error"),
    )
    error_log: str | None = setting(
        None,
        LOGGING,
        "Error log file (default: stderr).",
        kind="str",
        ini=("logto",),
    )
    stats: str | None = setting(
        None,
        LOGGING,
        "Serve stats (JSON at /, Prometheus at /metrics) on HOST:PORT or unix:PATH (mode 0600).",
        kind="address",
        ini=("stats",),
    )
    request_id_header: str = setting(
        "X-Request-ID",
        LOGGING,
        "Request header whose value becomes the request id (one is "
        "generated otherwise); exposed as environ['muxwsgi.request_id'].",
    )

    def __init__(self, **values: Any) -> None:
        unknown = set(values) - _BY_NAME.keys()
        if unknown:
            raise TypeError(f"unknown settings: {', '.join(sorted(unknown))}")
        for item in SETTINGS:
            value = values.get(item.name, item.default)
            object.__setattr__(self, item.name, list(value) if isinstance(value, list) else value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Config is immutable: build a new one with replace()")

    def replace(self, **changes: Any) -> Config:
        return Config(**{**self.as_dict(), **changes})

    def as_dict(self) -> dict[str, Any]:
        return {item.name: getattr(self, item.name) for item in SETTINGS}

    def __repr__(self) -> str:
        return f"Config({', '.join(f'{k}={v!r}' for k, v in self.as_dict().items())})"


def _collect() -> tuple[Setting, ...]:
    found = []
    for name, value in vars(Config).items():
        if isinstance(value, Setting):
            value.name = name
            found.append(value)
    return tuple(found)


#: Every setting, in declaration order (the docs and --help follow it).
SETTINGS: tuple[Setting, ...] = _collect()
_BY_NAME = {item.name: item for item in SETTINGS}


# ---------------------------------------------------------------- sources


def build_parser() -> argparse.ArgumentParser:
    """The ``muxwsgi serve`` parser. Values stay strings (parsed once, by load_config)."""
    parser = argparse.ArgumentParser(
        prog="muxwsgi serve",
        description="Serve a WSGI application over muxwsgi, classic uwsgi and HTTP/1.1.",
        epilog="Every option can also be set as an environment variable MUXWSGI_<NAME> "
        "(e.g. MUXWSGI_THREADS=16) or in a TOML file given with --config.",
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("--config", metavar="FILE", help="Read settings from a TOML file.")
    parser.add_argument("--ini", metavar="FILE", help="Read a uWSGI ini file ([uwsgi] section).")
    parser.add_argument(
        "--print-config", action="store_true", help="Print the effective settings and exit."
    )
    groups = {section: parser.add_argument_group(section) for section in SECTIONS}
    for item in SETTINGS:
        group = groups[item.section]
        default = "" if item.default is None else f" (default: {_show(item.default)})"
        if item.positional:
            group.add_argument(item.name, nargs="?", metavar=item.metavar, help=item.help)
            continue
        group.add_argument(
            *item.cli,
            dest=item.name,
            action="append" if item.kind in ("addresses", "networks") else "store",
            metavar=item.metavar or item.name.upper(),
            help=item.help + default + f" [env {item.env}]",
        )
    return parser


def _show(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(value)
    if (
        isinstance(value, int)
        and not isinstance(value, bool)
        and value > 4096
        and value % 1024 == 0
    ):
        return f"{value} = {value // 1024}k" if value < 1 << 20 else f"{value} = {value >> 20}m"
    return str(value)


def load_config(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> Config:
    """Build the Config from every source. Raises ConfigError with a one-line message."""
    environ = os.environ if environ is None else environ
    parser = build_parser()
    args = vars(parser.parse_args(list(argv)))
    values: dict[str, Any] = {}
    if "ini" in args:
        from ._ini import read_ini

        for name, value in read_ini(args["ini"]).items():
            values[name] = _BY_NAME[name].parse(value, f"--ini {args['ini']}")
    if "config" in args:
        values.update(_read_toml(args["config"]))
    for item in SETTINGS:
        if item.env in environ:
            values[item.name] = item.parse(environ[item.env], item.env)
    for item in SETTINGS:
        if item.name in args and args[item.name] is not None:
            raw = args[item.name]
            source = item.name if item.positional else item.cli[-1]
            values[item.name] = item.parse(raw, f"{source} on the command line")
    return Config(**values)


def _read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    values = {}
    for key, value in data.items():
        item = _BY_NAME.get(key.replace("-", "_"))
        if item is None:
            raise ConfigError(f"config file {path}: unknown setting {key!r}")
        values[item.name] = item.parse(value, f"config file {path}")
    return values


def render_config(config: Config) -> str:
    """The effective settings as TOML (what --print-config shows)."""
    lines = []
    for item in SETTINGS:
        value = getattr(config, item.name)
        if value is None:
            lines.append(f"# {item.name} = (unset)")
        elif item.kind == "mode":
            lines.append(f'{item.name} = "{value:04o}"')
        elif isinstance(value, bool):
            lines.append(f"{item.name} = {'true' if value else 'false'}")
        elif isinstance(value, int | float):
            lines.append(f"{item.name} = {value}")
        elif isinstance(value, list):
            lines.append(
                f"{item.name} = [{', '.join(repr(v).replace(chr(39), chr(34)) for v in value)}]"
            )
        else:
            lines.append(f'{item.name} = "{value}"')
    return "\n".join(lines) + "\n"


def render_settings_markdown() -> str:
    """The docs table of every setting (docs/configuration.md is generated from this)."""
    out = [
        "# Configuration reference",
        "",
        "<!-- generated by scripts/gen_settings_doc.py from server/config.py: edit that, "
        "not this -->",
        "",
        "Every setting can be given on the command line, as an environment variable "
        "`MUXWSGI_<NAME>`, in a TOML file (`--config FILE`, keys are the setting names), or in "
        "a uWSGI ini file (`--ini FILE`, `[uwsgi]` section, for the keys listed). Precedence, "
        "lowest first: defaults, ini file, TOML file, environment, command line. Sizes accept "
        "`k`, `m` and `g` suffixes; booleans accept true/false, yes/no, on/off, 1/0.",
        "",
    ]
    for section in SECTIONS:
        out += [
            f"## {section}",
            "",
            "| setting | flag | env | uWSGI ini | default | description |",
            "|---|---|---|---|---|---|",
        ]
        for item in SETTINGS:
            if item.section != section:
                continue
            flag = "positional" if item.positional else ", ".join(f"`{f}`" for f in item.cli)
            ini = ", ".join(f"`{k}`" for k in item.ini) or ""
            default = "" if item.default is None else f"`{_show(item.default)}`"
            if item.kind == "mode":
                default = f"`{item.default:04o}`"
            bounds = ""
            if item.choices:
                bounds = f" One of: {', '.join(item.choices)}."
            elif item.minimum is not None or item.maximum is not None:
                bounds = f" Range {_fmt(item.minimum)}..{_fmt(item.maximum)}."
            cells = (f"`{item.name}`", flag, f"`{item.env}`", ini, default, item.help + bounds)
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def ini_names() -> dict[str, str]:
    """uWSGI ini key -> setting name, for every setting that declares ini names."""
    return {key: item.name for item in SETTINGS for key in item.ini}
