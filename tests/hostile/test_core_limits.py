"""The core's hooks the server's defences rest on, without sockets: a turn's frame budget,
where a peer becomes a flood suspect, the age of an incomplete frame, unacknowledged
settings."""

from __future__ import annotations

import pytest

import muxwsgi
from muxwsgi import Connection, ConnectionConfig, FloodError, FloodLimits, FrameType, Role
from muxwsgi._flood import TokenBucket

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


def test_a_turn_stops_where_the_peer_becomes_a_suspect() -> None:
    """With max_frames, handling stops right after the frame that spends half of a flood
    allowance (here the 5th of a PING burst of 10), wherever the budget would end; the rest of
    the burst is handled in later calls until the bucket runs out."""
    config = ConnectionConfig(flood=FloodLimits(ping_burst=10, ping_rate=0.0))
    server = Connection(Role.SERVER, config)
    events = server.receive_data(preface() + ACK + PING * 20, max_frames=128)
    assert sum(type(e) is muxwsgi.PingReceived for e in events) == 5
    assert server.flood_pressure == 0.5 and server.frames_buffered
    events = server.receive_data(b"", max_frames=3)  # no second stop: it is a suspect now
    assert sum(type(e) is muxwsgi.PingReceived for e in events) == 3
    with pytest.raises(FloodError):
        server.receive_data(b"", max_frames=128)


def test_without_max_frames_a_read_is_handled_whole() -> None:
    config = ConnectionConfig(flood=FloodLimits(ping_burst=10, ping_rate=0.0))
    server = Connection(Role.SERVER, config)
    events = server.receive_data(preface() + ACK + PING * 8)
    assert sum(type(e) is muxwsgi.PingReceived for e in events) == 8


def test_bucket_warns_once_per_burst() -> None:
    """on_suspect fires on the take() that reaches the mark, then not again until the bucket
    has refilled completely."""
    now = [0.0]
    calls: list[float] = []
    bucket = TokenBucket(4, 1.0, lambda: now[0], lambda: calls.append(now[0]), 0.5)
    assert bucket.take() and calls == []
    assert bucket.take() and calls == [0.0]  # 2 of 4 spent
    now[0] = 1.0  # one token back: still not full
    assert bucket.take() and bucket.take() and calls == [0.0]
    now[0] = 10.0  # full again: armed
    assert bucket.take() and bucket.take() and calls == [0.0, 10.0]


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
