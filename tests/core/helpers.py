"""Test kit for the protocol core: a connected client/server pair and raw frame builders."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, TypeVar

import msgpack

import muxwsgi
from muxwsgi import Connection, ConnectionConfig, Event, FrameType, Role, Settings
from muxwsgi._frames import FRAME_HEADER, MAGIC, Frame, encode_settings, split_frames

F = TypeVar("F", bound=Callable[..., Any])

SIMPLE_VARS = {
    "REQUEST_METHOD": "GET",
    "REQUEST_URI": "/hello?x=1",
    "PATH_INFO": "/hello",
    "QUERY_STRING": "x=1",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "HTTP_HOST": "example.test",
}


def spec(*ids: str) -> Callable[[F], F]:
    """Mark a test as checking PROTOCOL.md requirements; test_spec_coverage.py reads these."""

    def mark(func: F) -> F:
        func.spec_ids = (*getattr(func, "spec_ids", ()), *ids)  # type: ignore[attr-defined]
        return func

    return mark


def frame(ftype: int, flags: int = 0, stream_id: int = 0, payload: bytes = b"") -> bytes:
    return FRAME_HEADER.pack(ftype, len(payload), flags, stream_id) + payload


def preface(settings: dict[int, int] | None = None) -> bytes:
    pairs = list((settings or {}).items())
    return frame(FrameType.PREFACE, 0, 0, MAGIC + encode_settings(pairs))


def headers(stream_id: int, items: list[Any] | dict[str, str], end: bool = True) -> bytes:
    if isinstance(items, dict):
        items = [x for kv in items.items() for x in kv]
    return frame(FrameType.HEADERS, int(end), stream_id, msgpack.packb(items))


def data(stream_id: int, payload: bytes, end: bool = False) -> bytes:
    return frame(FrameType.DATA, int(end), stream_id, payload)


def reset(stream_id: int, code: int) -> bytes:
    return frame(FrameType.RESET, 0, stream_id, struct.pack("<I", code))


def window_update(stream_id: int, increment: int) -> bytes:
    return frame(FrameType.WINDOW_UPDATE, 0, stream_id, struct.pack("<I", increment))


def goaway(last_stream_id: int, code: int, debug: bytes = b"") -> bytes:
    return frame(FrameType.GOAWAY, 0, 0, struct.pack("<II", last_stream_id, code) + debug)


def frames_of(data: bytes) -> list[Frame]:
    frames, rest = split_frames(data)
    assert rest == b"", "output must hold whole frames only"
    return frames


def server_after_preface(config: ConnectionConfig | None = None) -> Connection:
    """A server Connection that has received a client PREFACE with default settings and
    whose own output (PREFACE and ACK) has been drained."""
    server = Connection(Role.SERVER, config)
    server.receive_data(preface())
    server.data_to_send()
    return server


def client_after_preface(config: ConnectionConfig | None = None) -> Connection:
    client = Connection(Role.CLIENT, config)
    client.receive_data(preface())
    client.data_to_send()
    return client


class ConnectionPair:
    """A client and a server joined by a perfect in-memory link (h11's ConnectionPair)."""

    def __init__(
        self,
        client_config: ConnectionConfig | None = None,
        server_config: ConnectionConfig | None = None,
    ) -> None:
        self.client = Connection(Role.CLIENT, client_config)
        self.server = Connection(Role.SERVER, server_config)
        self.exchange()

    def to_server(self) -> list[Event]:
        return self.server.receive_data(self.client.data_to_send())

    def to_client(self) -> list[Event]:
        return self.client.receive_data(self.server.data_to_send())

    def exchange(self) -> tuple[list[Event], list[Event]]:
        """Deliver everything pending both ways until both sides are quiet."""
        server_events: list[Event] = []
        client_events: list[Event] = []
        while True:
            a = self.to_server()
            b = self.to_client()
            server_events += a
            client_events += b
            if not a and not b:
                return server_events, client_events


def small_settings(**overrides: int) -> ConnectionConfig:
    return ConnectionConfig(settings=Settings(**overrides))


__all__ = [
    "SIMPLE_VARS",
    "ConnectionPair",
    "client_after_preface",
    "data",
    "frame",
    "frames_of",
    "goaway",
    "headers",
    "muxwsgi",
    "preface",
    "reset",
    "server_after_preface",
    "small_settings",
    "spec",
    "window_update",
]
