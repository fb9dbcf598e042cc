"""The muxwsgi wire format, written from PROTOCOL.md alone (no import of the muxwsgi package):
frame encoding and decoding, settings lists, HEADERS payloads and the constants of §3, §7, §8.

A second implementation of the codec, so that the conformance suite checks the server against
the specification rather than against the server's own reading of it.
"""

from __future__ import annotations

import enum
import struct
from typing import Any, NamedTuple

import msgpack

# §1, §3
HEADER = struct.Struct("<BHBI")  # type, u16le length, flags, u32le stream id
HEADER_SIZE = 8
MAX_PAYLOAD = 0xFFFF
MAX_STREAM_ID = 2**31 - 1
MAX_WINDOW = 2**31 - 1
MAGIC = b"muxwsgi/1"
_U32 = struct.Struct("<I")
_SETTING = struct.Struct("<HI")


class T(enum.IntEnum):
    """Frame types (§3.1)."""

    PREFACE = 0x24
    HEADERS = 0x25
    DATA = 0x26
    RESET = 0x27
    SETTINGS = 0x28
    PING = 0x29
    GOAWAY = 0x2A
    WINDOW_UPDATE = 0x2B


END_STREAM = ACK = 0x1


class S(enum.IntEnum):
    """Setting ids (§7)."""

    MAX_CONCURRENT_STREAMS = 0x1
    INITIAL_WINDOW_SIZE = 0x2
    MAX_FRAME_SIZE = 0x3
    MAX_HEADERS_SIZE = 0x4
    MAX_HEADERS_COUNT = 0x5


#: Protocol defaults and bounds (§7): id -> (default, minimum, maximum).
SETTINGS_TABLE: dict[int, tuple[int, int, int]] = {
    S.MAX_CONCURRENT_STREAMS: (100, 0, 2**31 - 1),
    S.INITIAL_WINDOW_SIZE: (65535, 0, 2**31 - 1),
    S.MAX_FRAME_SIZE: (16384, 16384, 65535),
    S.MAX_HEADERS_SIZE: (65535, 512, 65535),
    S.MAX_HEADERS_COUNT: (256, 1, 65535),
}
DEFAULTS = {code: default for code, (default, _, _) in SETTINGS_TABLE.items()}
CONNECTION_WINDOW = 65535  # [W-1]


class E(enum.IntEnum):
    """Error codes (§8)."""

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


class Frame(NamedTuple):
    type: int
    flags: int
    stream_id: int
    payload: bytes

    def __repr__(self) -> str:
        try:
            name = T(self.type).name
        except ValueError:
            name = f"type {self.type:#x}"
        extra = ""
        if self.type in (T.RESET, T.WINDOW_UPDATE) and len(self.payload) == 4:
            value = u32(self.payload)
            extra = f" {error_name(value)}" if self.type == T.RESET else f" +{value}"
        elif self.type == T.GOAWAY and len(self.payload) >= 8:
            last, code = struct.unpack_from("<II", self.payload)
            extra = f" last={last} {error_name(code)} {self.payload[8:80]!r}"
        else:
            extra = f" {self.payload[:40]!r}"
        return f"<{name} flags={self.flags:#x} stream={self.stream_id}{extra}>"


def error_name(code: int) -> str:
    try:
        return E(code).name
    except ValueError:
        return f"code {code:#x}"


# ---------------------------------------------------------------- encoding


def frame(ftype: int, flags: int = 0, stream_id: int = 0, payload: bytes = b"") -> bytes:
    """One frame: the 8-byte header, its length field the payload's, then the payload."""
    return HEADER.pack(ftype, len(payload), flags, stream_id) + payload


def u32(payload: bytes) -> int:
    value: int = _U32.unpack(payload)[0]
    return value


def settings_list(pairs: list[tuple[int, int]] | dict[int, int]) -> bytes:
    items = pairs.items() if isinstance(pairs, dict) else pairs
    return b"".join(_SETTING.pack(code, value) for code, value in items)


def parse_settings_list(payload: bytes) -> list[tuple[int, int]]:
    if len(payload) % 6:
        raise ValueError(f"a settings list of {len(payload)} bytes")
    return [(code, value) for code, value in _SETTING.iter_unpack(payload)]


def preface(settings: list[tuple[int, int]] | dict[int, int] | None = None) -> bytes:
    return frame(T.PREFACE, 0, 0, MAGIC + settings_list(settings or {}))


def settings(pairs: list[tuple[int, int]] | dict[int, int] | None = None) -> bytes:
    return frame(T.SETTINGS, 0, 0, settings_list(pairs or {}))


def settings_ack() -> bytes:
    return frame(T.SETTINGS, ACK, 0)


def ping(data: bytes = b"\0" * 8, ack: bool = False) -> bytes:
    return frame(T.PING, ACK if ack else 0, 0, data)


def goaway(last_stream_id: int, code: int, debug: bytes = b"") -> bytes:
    return frame(T.GOAWAY, 0, 0, struct.pack("<II", last_stream_id, code) + debug)


def reset(stream_id: int, code: int) -> bytes:
    return frame(T.RESET, 0, stream_id, _U32.pack(code))


def window_update(stream_id: int, increment: int) -> bytes:
    return frame(T.WINDOW_UPDATE, 0, stream_id, _U32.pack(increment))


def data(stream_id: int, payload: bytes, end: bool = False) -> bytes:
    return frame(T.DATA, END_STREAM if end else 0, stream_id, payload)


def request_vars(
    method: str = "GET", path: str = "/hello", body_length: int | None = None, **extra: str
) -> dict[str, str]:
    """The vars nginx's uwsgi_params would send for a request (§5)."""
    path_info, _, query = path.partition("?")
    return {
        "REQUEST_METHOD": method,
        "REQUEST_URI": path,
        "PATH_INFO": path_info,
        "QUERY_STRING": query,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_NAME": "conformance",
        "SERVER_PORT": "80",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "conformance",
        "CONTENT_LENGTH": "" if body_length is None else str(body_length),
        **extra,
    }


def head_payload(items: list[Any] | dict[str, str]) -> bytes:
    """A HEADERS payload: the msgpack array [name1, value1, ...] (or any items, raw)."""
    if isinstance(items, dict):
        items = [x for pair in items.items() for x in pair]
    packed: bytes = msgpack.packb(items, use_bin_type=True)
    return packed


def headers(
    stream_id: int, items: list[Any] | dict[str, str] | bytes, end: bool = True, flags: int = 0
) -> bytes:
    payload = items if isinstance(items, bytes) else head_payload(items)
    return frame(T.HEADERS, flags | (END_STREAM if end else 0), stream_id, payload)


def get(stream_id: int, path: str = "/hello", **extra: str) -> bytes:
    return headers(stream_id, request_vars("GET", path, **extra))


# ---------------------------------------------------------------- decoding


class Decoder:
    """Splits received bytes into frames; keeps an incomplete tail for the next ``feed``."""

    def __init__(self) -> None:
        self.buffer = b""

    def feed(self, chunk: bytes) -> list[Frame]:
        buf = self.buffer + chunk
        frames: list[Frame] = []
        pos = 0
        while len(buf) - pos >= HEADER_SIZE:
            ftype, length, flags, stream_id = HEADER.unpack_from(buf, pos)
            end = pos + HEADER_SIZE + length
            if end > len(buf):
                break
            frames.append(Frame(ftype, flags, stream_id, buf[pos + HEADER_SIZE : end]))
            pos = end
        self.buffer = buf[pos:]
        return frames


def decode_response_head(payload: bytes) -> tuple[int, str, list[tuple[str, str]]]:
    """Check a response HEADERS payload against [H-1] and [H-3]; ValueError says what is wrong."""
    items = msgpack.unpackb(payload, raw=False)
    if type(items) is not list or len(items) < 2 or len(items) % 2:
        raise ValueError(f"a response head must be [status, reason, name, value, ...]: {items!r}")
    status, reason, *fields = items
    if type(status) is not int or not 100 <= status <= 999:
        raise ValueError(f"status {status!r}")
    if not all(type(x) is str for x in [reason, *fields]):
        raise ValueError("reason and fields must be msgpack str")
    for text in [reason, *fields]:
        if any(c in text for c in "\r\n\0") or any(ord(c) > 0xFF for c in text):
            raise ValueError(f"forbidden character in {text!r} [H-3]")
    if any(name == "" for name in fields[0::2]):
        raise ValueError("an empty field name [H-3]")
    return status, reason, list(zip(fields[0::2], fields[1::2], strict=True))


# ---------------------------------------------------------------- classic uwsgi (§12)


def uwsgi_vars(pairs: list[tuple[bytes, bytes]]) -> bytes:
    """A vars block: (u16le key size, key, u16le value size, value), repeated."""
    return b"".join(struct.pack("<H", len(k)) + k + struct.pack("<H", len(v)) + v for k, v in pairs)


def uwsgi_packet(block: bytes, modifier1: int = 0, datasize: int | None = None) -> bytes:
    """A classic request header (modifier1, u16le datasize, modifier2 0) and its vars block."""
    size = len(block) if datasize is None else datasize
    return struct.pack("<BHB", modifier1, size, 0) + block


def uwsgi_request(path: str, body: bytes = b"", **extra: str) -> bytes:
    items = {"REQUEST_METHOD": "POST" if body else "GET", "PATH_INFO": path,
             "CONTENT_LENGTH": str(len(body)) if body else "", **extra}  # fmt: skip
    block = uwsgi_vars([(k.encode("latin-1"), v.encode("latin-1")) for k, v in items.items()])
    return uwsgi_packet(block) + body
