"""What both flavours of the client share about a request: endpoints, headers, vars, bodies
and deadlines."""

from __future__ import annotations

import dataclasses
import errno
import ipaddress
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Final, Protocol, TypedDict
from urllib.parse import quote, unquote_to_bytes, urlsplit

import msgpack

from muxwsgi import VarsBlock

if TYPE_CHECKING:
    from ._config import UseClientDefault

__all__ = (
    "Chunk",
    "Endpoint",
    "HeaderTypes",
    "Headers",
    "Readable",
    "RequestBody",
    "RequestOptions",
    "body_chunks",
    "body_size",
    "build_vars",
    "parse_url",
    "remaining",
    "request_vars",
)

#: A header as a name and a value (a list is taken too, but not cached: see request_vars).
HeaderPair = tuple[str, str] | list[str]
HeaderTypes = Mapping[str, str] | Iterable[HeaderPair] | None

SCHEMES = {"mux": ("mux", False), "uwsgi": ("uwsgi", False),
           "mux+unix": ("mux", True), "uwsgi+unix": ("uwsgi", True),
           "muxs": ("mux", False), "uwsgis": ("uwsgi", False)}  # fmt: skip
#: The schemes spoken over TLS (client/_tls.py).
TLS_SCHEMES = frozenset({"muxs", "uwsgis"})


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """Where to send requests and how: ``protocol`` is "mux" or "uwsgi" (classic)."""

    protocol: str
    host: str = ""
    port: int = 0
    path: str = ""  # a unix socket
    #: One of the addresses ``host`` resolved to (the pool balances them as endpoints); empty:
    #: ``host`` is an IP address, or was not resolved.
    address: str = ""
    #: Spoken over TLS (muxs://, uwsgis://): ``host`` is the name the certificate must have.
    tls: bool = False

    @property
    def request_scheme(self) -> str:
        """REQUEST_SCHEME of the requests sent here: https over TLS, as nginx says it."""
        return "https" if self.tls else "http"

    @property
    def connect_host(self) -> str:
        return self.address or self.host

    @property
    def is_name(self) -> bool:
        """Whether ``host`` is a name to resolve (not an IP address, not a unix socket)."""
        if self.path:
            return False
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return True
        return False

    def with_protocol(self, protocol: str) -> Endpoint:
        """The same address spoken to in another protocol ("mux" or "uwsgi")."""
        return dataclasses.replace(self, protocol=protocol)

    def describe_connect_error(self, exc: OSError) -> str:
        """Why connecting failed, with what to do about it where that is known."""
        text = exc.strerror or str(exc)
        if self.path and exc.errno == errno.EACCES:
            text += (
                f" (this user may not write to {self.path}: the server sets its mode with "
                "--chmod-socket, default 0660; run the client as the server's user or in the "
                "socket's group)"
            )
        return text

    def __str__(self) -> str:
        scheme = self.protocol + ("s" if self.tls else "") + ("+unix" if self.path else "")
        where = self.path if self.path else f"{self.host}:{self.port}"
        if self.address and self.address != self.host:
            where += f" ({self.address})"
        return f"{scheme}://{where}"


def parse_url(url: str) -> tuple[Endpoint, str]:
    """Split ``mux://host:port/path?q``, ``uwsgi://...``, ``mux+unix:///run/app.sock`` (and
    ``muxs://``, ``uwsgis://`` over TLS) into the endpoint and the request target ("/" when
    absent; for unix URLs the target is given separately). Raises ValueError for anything
    else."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ValueError(
            f"unsupported URL scheme in {url!r}: use mux://, uwsgi://, mux+unix:// or "
            "uwsgi+unix:// (muxs:// and uwsgis:// over TLS)"
        )
    protocol, unix = SCHEMES[parts.scheme]
    if unix:
        if not parts.path:
            raise ValueError(f"{url!r}: a unix URL needs a socket path (mux+unix:///run/app.sock)")
        return Endpoint(protocol, path=parts.path), "/"
    if not parts.hostname or parts.port is None:
        raise ValueError(f"{url!r}: expected {parts.scheme}://HOST:PORT")
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return Endpoint(protocol, parts.hostname, parts.port, tls=parts.scheme in TLS_SCHEMES), target


class Headers:
    """Case-insensitive multi-dict of response headers, in the order received."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items = list(items)

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name``, or ``default``."""
        lower = name.lower()
        for key, value in self._items:
            if key.lower() == lower:
                return value
        return default

    def get_list(self, name: str) -> list[str]:
        """Every value of ``name`` in the order received (several ``Set-Cookie``), or []."""
        lower = name.lower()
        return [value for key, value in self._items if key.lower() == lower]

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[str]:
        return (key for key, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Headers):
            return self._items == other._items
        return NotImplemented

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


def _pairs(headers: HeaderTypes) -> Iterable[HeaderPair]:
    if headers is None:
        return ()
    # The usual types by exact type first: an isinstance() against the Mapping ABC is a
    # Python-level __instancecheck__ (85 ns interpreted, ~1,000 instructions compiled).
    if type(headers) is list or type(headers) is tuple:
        return headers
    if type(headers) is dict or isinstance(headers, Mapping):
        return headers.items()
    return headers


_PLAIN_TARGET: Final = re.compile(r"[A-Za-z0-9/?&=:@!$'()*+,;~._-]*\Z")
#: Header name -> var name, for names seen before (callers send the same few every time).
_VAR_NAMES: dict[str, str] = {}


def _var_name(name: str) -> str:
    if "_" in name:
        raise ValueError(f"header name {name!r} has an underscore; use '-'")
    key = name.upper().replace("-", "_")
    if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        key = "HTTP_" + key
    if len(_VAR_NAMES) < 4096:  # bounded: names are chosen by callers
        _VAR_NAMES[name] = key
    return key


def build_vars(
    method: str,
    target: str,
    headers: HeaderTypes,
    *,
    body_length: int | None,
    server_name: str,
    server_port: str,
    local: tuple[str, str] = ("", ""),
    scheme: str = "http",
) -> dict[str, str]:
    """The uwsgi vars of a request, as nginx's uwsgi_params builds them.

    Header names become HTTP_*; names with an underscore are refused (Transfer_Encoding and
    Transfer-Encoding would both become HTTP_TRANSFER_ENCODING); repeated headers are joined
    with ", " (Cookie with "; "), as nginx does. ``body_length`` None means "streamed, length
    unknown": CONTENT_LENGTH is then left empty.
    """
    vars = _base_vars(method, target, body_length, server_name, server_port, local, scheme)
    header_vars = _header_vars(_pairs(headers))
    vars.update(header_vars)  # CONTENT_TYPE, from a header, replaces the empty default
    if "HTTP_HOST" not in vars:
        vars["HTTP_HOST"] = _host(server_name, server_port)
    return vars


def request_vars(
    method: str,
    target: str,
    headers: HeaderTypes,
    *,
    body_length: int | None,
    server_name: str,
    server_port: str,
    local: tuple[str, str] = ("", ""),
    scheme: str = "http",
) -> tuple[dict[str, str], VarsBlock]:
    """:func:`build_vars` for a mux request, split in two: the vars that change with each
    request (method, target, length), and the rest checked and encoded once (a
    :class:`VarsBlock`, cached: the headers, the server's name and port and the connection's
    own address are the same on every call of a caller). Raises what build_vars and encoding
    raise."""
    global _LAST_BLOCK
    vars = _target_vars(method, target, body_length)
    items = tuple(_pairs(headers)) if headers is not None else ()
    key = (items, server_name, server_port, local, scheme)
    # The last key first: a caller sends the same header list (the same pair objects) again
    # and again, and comparing those costs a fraction of hashing 16 pairs for the dict (~3.5k
    # instructions compiled). One tuple, read once: threads share it (the sync client).
    last = _LAST_BLOCK
    if last is not None and last[0] == key:
        return vars, last[1]
    try:
        block = _BLOCKS.get(key)
        hashable = True
    except TypeError:  # a pair given as a list: not hashable, not cached
        block, hashable = None, False
    if block is None:
        fixed = _fixed_vars(server_name, server_port, local, scheme)
        fixed.update(_header_vars(items))  # CONTENT_TYPE, from a header, replaces the default
        if "HTTP_HOST" not in fixed:
            fixed["HTTP_HOST"] = _host(server_name, server_port)
        block = VarsBlock(msgpack.packb, fixed)
        if hashable:
            if len(_BLOCKS) >= _BLOCKS_MAX:
                _BLOCKS.clear()
            _BLOCKS[key] = block
    if hashable:  # (a key that holds a list could change under it)
        _LAST_BLOCK = (key, block)
    return vars, block


#: (header list, server name, port, local address, scheme) seen before -> their vars as a
#: VarsBlock. Bounded, and emptied when full: a caller sending different headers every time
#: gains nothing.
_BlockKey = tuple[tuple[HeaderPair, ...], str, str, tuple[str, str], str]
_BLOCKS: dict[_BlockKey, VarsBlock] = {}
_BLOCKS_MAX: Final = 256
#: The key found or made last, and its block (see request_vars).
_LAST_BLOCK: tuple[_BlockKey, VarsBlock] | None = None


def _host(server_name: str, server_port: str) -> str:
    """HTTP_HOST when the caller sent no Host header."""
    return server_name if not server_port else f"{server_name}:{server_port}"


def _base_vars(
    method: str,
    target: str,
    body_length: int | None,
    server_name: str,
    server_port: str,
    local: tuple[str, str],
    scheme: str,
) -> dict[str, str]:
    """The vars every request has, whatever its headers."""
    vars = _target_vars(method, target, body_length)
    vars.update(_fixed_vars(server_name, server_port, local, scheme))
    return vars


def _target_vars(method: str, target: str, body_length: int | None) -> dict[str, str]:
    """The vars that change from one request to the next: method, target, body length."""
    if not target.startswith("/"):
        raise ValueError(f"the request target must start with '/': {target!r}")
    path, _, query = target.partition("?")
    # Nothing to quote or unquote: the common case, where one match costs far less than quote().
    if _PLAIN_TARGET.match(target):
        uri = target
    else:
        uri = quote(target, safe="/?&=%:@!$'()*+,;~-._")
        path = unquote_to_bytes(path).decode("latin-1")
        query = uri.partition("?")[2]  # as it would be on the wire, like nginx's $query_string
    return {
        "REQUEST_METHOD": method.upper(),
        "REQUEST_URI": uri,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "CONTENT_LENGTH": str(body_length) if body_length else "",
    }


def _fixed_vars(
    server_name: str, server_port: str, local: tuple[str, str], scheme: str
) -> dict[str, str]:
    """The vars that are the same for every request of a connection (before its headers)."""
    return {
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REQUEST_SCHEME": scheme,
        "SERVER_NAME": server_name,
        "SERVER_PORT": server_port,
        "REMOTE_ADDR": local[0],
        "REMOTE_PORT": local[1],
        "CONTENT_TYPE": "",
    }


def _header_vars(pairs: Iterable[HeaderPair]) -> dict[str, str]:
    """The HTTP_* vars (and CONTENT_TYPE) of request headers; Content-Length is dropped: the
    length is the body's, never a caller's claim."""
    vars: dict[str, str] = {}
    for name, value in pairs:
        key = _VAR_NAMES.get(name)
        if key is None:
            key = _var_name(name)
        if key[0] == "C":  # CONTENT_TYPE or CONTENT_LENGTH, the only names without HTTP_
            if key == "CONTENT_TYPE":
                vars[key] = value
            continue
        if key in vars:
            vars[key] += ("; " if key == "HTTP_COOKIE" else ", ") + value
        else:
            vars[key] = value
    return vars


# ---------------------------------------------------------------- bodies and deadlines

_monotonic: Final = time.monotonic

#: A piece of a streamed request body.
Chunk = bytes | bytearray | memoryview


class Readable(Protocol):
    """A file opened in binary mode (only ``read`` is used). Not runtime_checkable: a body is
    taken for a file when it has ``read`` (the compiled build's Protocol classes are not
    typing's, which runtime_checkable refuses)."""

    def read(self, size: int = -1, /) -> bytes: ...


#: A request body: bytes (sent at once, and replayable), or an iterable of bytes or a binary
#: file (streamed as it is produced, within the flow-control windows).
RequestBody = Chunk | Iterable[Chunk] | Readable


class RequestOptions(TypedDict, total=False):
    """The keywords of every request method (``get``, ``post``...), as ``request`` takes them."""

    headers: HeaderTypes
    body: RequestBody
    timeout: float | UseClientDefault | None


def body_size(body: RequestBody) -> int | None:
    """The length of a bytes body; None for iterators and files (streamed)."""
    # bytes by its exact type first: ``bytes | bytearray | memoryview`` builds a union object
    # on every call (~1.5k instructions compiled), and nearly every body is bytes.
    if type(body) is bytes or isinstance(body, bytes | bytearray | memoryview):
        return len(body)
    return None


def body_chunks(body: Iterable[Chunk] | Readable, size: int = 1 << 16) -> Iterable[Chunk]:
    """The pieces of a streamed body, in order: a file is read ``size`` bytes at a time."""
    if not hasattr(body, "read"):
        return body
    return _read_in_chunks(body.read, size)


def _read_in_chunks(read: Callable[[int], bytes], size: int) -> Iterator[bytes]:
    while chunk := read(size):
        yield chunk


def remaining(deadline: float | None) -> float | None:
    """Seconds left until ``deadline`` (a time.monotonic() value; None: no deadline)."""
    return None if deadline is None else deadline - _monotonic()
