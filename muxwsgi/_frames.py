"""The frame codec: bytes <-> (type, flags, stream id, payload). No state beyond a byte buffer.

Every frame keeps the uwsgi packet header shape (PROTOCOL.md §3)::

    u8 type (uwsgi modifier1) | u16le length | u8 flags (modifier2) | u32le stream_id | payload

``length`` counts the payload only, so a payload is at most 65535 bytes, like a uwsgi vars block.
The type values come from modifier1 values that no uWSGI plugin uses and that are neither 0
(classic uwsgi) nor an uppercase ASCII letter (an HTTP/1.1 method), so the first byte of a
connection tells the three protocols apart.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable
from typing import Final, NamedTuple

__all__ = (
    "FRAME_HEADER",
    "HEADER_SIZE",
    "MAGIC",
    "MAX_PAYLOAD",
    "MAX_STREAM_ID",
    "MAX_WINDOW",
    "PING_LENGTH",
    "Flags",
    "Frame",
    "FrameType",
    "encode_frame",
    "encode_goaway",
    "encode_reset",
    "encode_settings",
    "encode_window_update",
    "iter_settings",
    "split_frames",
)


class FrameType(enum.IntEnum):
    """Frame types, in the uwsgi modifier1 byte. 36-43 are unused by every uWSGI plugin."""

    PREFACE = 0x24  # '$': first frame of each side: MAGIC + settings
    HEADERS = 0x25  # request vars / response status + headers (msgpack)
    DATA = 0x26
    RESET = 0x27
    SETTINGS = 0x28
    PING = 0x29
    GOAWAY = 0x2A
    WINDOW_UPDATE = 0x2B


class Flags(enum.IntFlag):
    """Frame flags, in the uwsgi modifier2 byte. The same bit means END_STREAM or ACK by type."""

    NONE = 0x0
    END_STREAM = 0x1  # HEADERS, DATA
    ACK = 0x1  # SETTINGS, PING


HEADER_SIZE = 8
MAX_PAYLOAD = 0xFFFF
MAX_STREAM_ID: Final = 0x7FFFFFFF
MAX_WINDOW = 0x7FFFFFFF
PING_LENGTH = 8
#: Opens every PREFACE payload; the trailing digit is the protocol version.
MAGIC = b"muxwsgi/1"

#: type, length, flags, stream_id
FRAME_HEADER = struct.Struct("<BHBI")
_U32 = struct.Struct("<I")
_GOAWAY = struct.Struct("<II")
_SETTING = struct.Struct("<HI")
_PACK_HEADER = FRAME_HEADER.pack


def encode_frame(frame_type: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """Return one frame. The caller guarantees ``len(payload) <= MAX_PAYLOAD``."""
    return _PACK_HEADER(frame_type, len(payload), flags, stream_id) + payload


def encode_reset(stream_id: int, error_code: int) -> bytes:
    return _PACK_HEADER(FrameType.RESET, 4, 0, stream_id) + _U32.pack(error_code)


def encode_window_update(stream_id: int, increment: int) -> bytes:
    return _PACK_HEADER(FrameType.WINDOW_UPDATE, 4, 0, stream_id) + _U32.pack(increment)


def encode_goaway(last_stream_id: int, error_code: int, debug: bytes = b"") -> bytes:
    # Debug text is advisory; cut it rather than fail a shutdown over it.
    payload = _GOAWAY.pack(last_stream_id, error_code) + debug[: MAX_PAYLOAD - 8]
    return encode_frame(FrameType.GOAWAY, 0, 0, payload)


def encode_settings(values: Iterable[tuple[int, int]]) -> bytes:
    """Return a settings list payload: (u16le id, u32le value) pairs."""
    return b"".join(_SETTING.pack(code, value) for code, value in values)


def iter_settings(payload: bytes | memoryview) -> list[tuple[int, int]]:
    """Split a settings list payload. The caller checks ``len(payload) % 6 == 0`` first."""
    return list(_SETTING.iter_unpack(payload))


def unpack_u32(payload: bytes) -> int:
    value: int = _U32.unpack(payload)[0]
    return value


def unpack_goaway(payload: bytes) -> tuple[int, int, bytes]:
    last_stream_id, error_code = _GOAWAY.unpack_from(payload)
    return last_stream_id, error_code, bytes(payload[8:])


class Frame(NamedTuple):
    """One decoded frame; ``type`` is an int because unknown types are legal on the wire."""

    type: int
    flags: int
    stream_id: int
    payload: bytes


def split_frames(data: bytes) -> tuple[list[Frame], bytes]:
    """Split ``data`` into whole frames and the incomplete tail. No validation at all.

    For tests, tools and logs; :class:`muxwsgi.Connection` has its own, faster loop.
    """
    frames: list[Frame] = []
    pos = 0
    while len(data) - pos >= HEADER_SIZE:
        ftype, length, flags, stream_id = FRAME_HEADER.unpack_from(data, pos)
        end = pos + HEADER_SIZE + length
        if end > len(data):
            break
        frames.append(Frame(ftype, flags, stream_id, bytes(data[pos + HEADER_SIZE : end])))
        pos = end
    return frames, bytes(data[pos:])
