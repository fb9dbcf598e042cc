"""The mux output scheduler against a real core Connection pair, without sockets."""

from __future__ import annotations

import time

import pytest

from muxwsgi import (
    Connection,
    ConnectionConfig,
    DataReceived,
    Event,
    RequestReceived,
    ResponseReceived,
    Role,
    Settings,
    StreamEnded,
    WindowUpdated,
)
from muxwsgi.server.protocols.scheduler import OutputScheduler

from ..core.helpers import spec

#: The client's receive window per stream: the server may send this much before it waits.
WINDOW = 100


class Pair:
    """A client and a server Connection wired back to back, a scheduler on the server side."""

    def __init__(self, streams: int = 1) -> None:
        self.client = Connection(
            Role.CLIENT, ConnectionConfig(settings=Settings(initial_window_size=WINDOW))
        )
        self.server = Connection(Role.SERVER, ConnectionConfig())
        for _ in range(2):  # PREFACEs, then their ACKs
            self.server.receive_data(self.client.data_to_send())
            self.client.receive_data(self.server.data_to_send())
        self.sent: list[tuple[int, int]] = []
        self.output = OutputScheduler(self.server, lambda sid, size: self.sent.append((sid, size)))
        self.body: dict[int, bytes] = {}
        self.acknowledged: dict[int, int] = {}
        self.ended: set[int] = set()
        for _ in range(streams):
            self.client.send_request({"REQUEST_METHOD": "GET", "PATH_INFO": "/"}, end_stream=True)
        events = self.server.receive_data(self.client.data_to_send())
        self.sids = [e.stream_id for e in events if isinstance(e, RequestReceived)]
        assert len(self.sids) == streams
        for sid in self.sids:
            self.server.send_response(sid, 200, [("Content-Type", "text/plain")])
            self.output.open(sid)
            self.body[sid] = b""
            self.acknowledged[sid] = 0
        self.to_client()

    def to_client(self) -> None:
        """Deliver the server's frames; the client records each stream's body and end."""
        for event in self.client.receive_data(self.server.data_to_send()):
            if isinstance(event, DataReceived):
                self.body[event.stream_id] += event.data
            elif isinstance(event, StreamEnded):
                self.ended.add(event.stream_id)
            else:
                assert isinstance(event, ResponseReceived), event

    def acknowledge(self, sid: int) -> list[Event]:
        """The client consumed what it received on ``sid``: its WINDOW_UPDATEs reach the
        server, whose events are returned."""
        fresh = len(self.body[sid]) - self.acknowledged[sid]
        self.acknowledged[sid] += fresh
        self.client.acknowledge_received_data(sid, fresh)
        return self.server.receive_data(self.client.data_to_send())


@spec("W-2")
def test_bytes_beyond_the_window_wait_and_leave_as_it_opens() -> None:
    pair = Pair()
    [sid] = pair.sids
    body = bytes(range(250))
    assert pair.output.write(sid, body) and pair.output.end(sid)
    pair.output.pump(sid)
    pair.to_client()
    assert pair.body[sid] == body[:WINDOW] and sid not in pair.ended
    assert pair.sent == [(sid, WINDOW)] and sid in pair.output
    pair.output.pump()  # no window, no progress, no report
    assert pair.sent == [(sid, WINDOW)]
    for _ in range(2):
        events = pair.acknowledge(sid)
        assert any(isinstance(e, WindowUpdated) and e.stream_id == sid for e in events)
        pair.output.pump(sid)
        pair.to_client()
    assert pair.body[sid] == body and sid in pair.ended
    assert pair.sent == [(sid, WINDOW), (sid, WINDOW), (sid, 50)]
    assert sid not in pair.output and not pair.output  # finished: its outbox is gone


def test_an_end_known_after_the_last_bytes_goes_alone() -> None:
    pair = Pair()
    [sid] = pair.sids
    pair.output.write(sid, b"x" * 40)
    pair.output.pump(sid)
    pair.to_client()
    assert pair.body[sid] == b"x" * 40 and sid not in pair.ended and sid in pair.output
    pair.output.end(sid)
    pair.output.pump(sid)
    pair.to_client()
    assert sid in pair.ended and not pair.output
    assert pair.sent == [(sid, 40)]


def test_every_stream_takes_its_turn_when_the_connection_window_opens() -> None:
    pair = Pair(streams=3)
    for sid in pair.sids:
        pair.output.write(sid, bytes([sid]) * 150)
        pair.output.end(sid)
    pair.output.pump()
    pair.to_client()
    assert {sid: len(pair.body[sid]) for sid in pair.sids} == dict.fromkeys(pair.sids, WINDOW)
    slow, *others = pair.sids
    for sid in others:
        pair.acknowledge(sid)
    pair.output.pump()  # the slow stream's window is still shut: the others go on
    pair.to_client()
    assert pair.ended == set(others) and len(pair.body[slow]) == WINDOW
    assert set(pair.output.stuck(time.monotonic() + 60, 30)) == {slow}


def test_stuck_counts_from_the_last_progress() -> None:
    pair = Pair(streams=2)
    waiting = pair.sids[0]  # the other stream has nothing queued: never stuck
    before = time.monotonic()
    pair.output.write(waiting, b"w" * (WINDOW + 1))
    pair.output.pump()
    after = time.monotonic()
    assert pair.output.stuck(before, 0) == []  # progress was made after "before"
    assert pair.output.stuck(after + 5.0, 4.0) == [waiting]
    assert pair.output.stuck(after + 5.0, 6.0) == []


def test_unknown_and_discarded_streams_take_nothing() -> None:
    pair = Pair(streams=2)
    first, second = pair.sids
    assert not pair.output.write(99, b"x") and not pair.output.end(99)
    pair.output.discard(first)
    assert not pair.output.write(first, b"x") and first not in pair.output
    assert len(pair.output) == 1
    pair.output.clear()
    assert not pair.output and not pair.output.write(second, b"x")
    pair.output.pump()
    assert pair.server.data_to_send() == b"" and pair.sent == []


@pytest.mark.parametrize("size", [WINDOW, WINDOW + 1])
def test_exactly_the_window_ends_in_the_same_frame(size: int) -> None:
    """The end rides on the last DATA frame when the last bytes fit; else it waits."""
    pair = Pair()
    [sid] = pair.sids
    pair.output.write(sid, b"y" * size)
    pair.output.end(sid)
    pair.output.pump(sid)
    pair.to_client()
    assert (sid in pair.ended) == (size == WINDOW)
    assert (sid in pair.output) == (size > WINDOW)


def test_queued_chunks_leave_in_order_and_the_end_rides_on_the_last() -> None:
    pair = Pair()
    [sid] = pair.sids
    for part in (b"a" * 30, b"b" * 30, b"c" * 30):
        pair.output.write(sid, part)
    pair.output.end(sid)
    pair.output.pump(sid)
    pair.to_client()
    assert pair.body[sid] == b"a" * 30 + b"b" * 30 + b"c" * 30
    assert sid in pair.ended and not pair.output
    assert pair.sent == [(sid, 90)]
