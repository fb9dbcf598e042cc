"""The core's hooks the server's defences rest on, without sockets: a turn's frame budget,
the age of an incomplete frame, unacknowledged settings."""

from __future__ import annotations

import muxwsgi
from muxwsgi import Connection, ConnectionConfig, FrameType, Role

from ..core.helpers import frame, headers, preface, spec

PING = frame(FrameType.PING, 0, 0, b"12345678")
ACK = frame(FrameType.SETTINGS, 1, 0)


def test_max_frames_leaves_the_rest_buffered() -> None:
    server = Connection(Role.SERVER)
    events = server.receive_data(preface() + ACK + PING * 10, max_frames=4)
    pings = [e for e in events if type(e) is muxwsgi.PingReceived]
    assert len(pings) == 2 and server.frames_buffered  # PREFACE, ACK, 2 PINGs
    total = len(pings)
    while server.frames_buffered:
        total += sum(type(e) is muxwsgi.PingReceived for e in server.receive_data(b"", 4))
    assert total == 10 and server.incomplete_frame_since is None


def test_incomplete_frame_age() -> None:
    now = [100.0]
    server = Connection(Role.SERVER, ConnectionConfig(clock=lambda: now[0]))
    server.receive_data(preface() + ACK)
    assert server.incomplete_frame_since is None
    head = headers(1, {"REQUEST_METHOD": "GET", "PATH_INFO": "/"})
    server.receive_data(head[:5])
    now[0] = 105.0
    server.receive_data(head[5:9])  # the same frame, still incomplete: its age stands
    assert server.incomplete_frame_since == 100.0
    server.receive_data(head[9:] + PING[:3])  # that one completes, another begins
    assert server.incomplete_frame_since == 105.0


@spec("E-5")
def test_settings_acknowledged() -> None:
    server = Connection(Role.SERVER)
    server.receive_data(preface())
    assert not server.settings_acknowledged
    server.receive_data(ACK)
    assert server.settings_acknowledged
