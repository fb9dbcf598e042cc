"""Stalled request bodies cannot starve a worker of application threads.

A client that promises a body and stops sending used to hold an application thread in
``wsgi.input.read()`` until ``body-timeout``: 8 of them (on one mux connection, or 8 HTTP/1.1
or classic uwsgi connections) held all of ``--threads 8``, and a healthy request on a fresh
connection waited for the timeout. Now a body up to ``--body-buffer-size`` is read by the event
loop before the application is called, and a larger one streams on an upload slot: at most
``--upload-threads-per-connection`` per connection, ``--upload-threads`` per worker
(server/bodies.py).

The stalled peers get a body-timeout of 300 s, so "answered while they are still stalled" is
unambiguous; the healthy request's socket timeout is a hang guard, never a measurement (the
delay itself is ``python -m benchmarks hostile --starvation``'s table).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from benchmarks.hostile import STARVATION_TARGET, Starved, hwm_kib, starvation_markdown
from benchmarks.stall import request_head, stall

from ..muxclient import RawMux
from ..servers import ServerProcess, start, until
from .kit import get, rss_kib

pytestmark = pytest.mark.slow

THREADS = 8
#: Bodies over this are read by the application as they arrive (upload slots).
BOUND = 64 * 1024
#: Upload slots: half of THREADS (the default), two per connection (the default).
SLOTS, PER_CONNECTION = THREADS // 2, 2
#: A body over BOUND, of which this much is sent before the client stalls.
OVER, SENT_OVER = 1_000_000, BOUND + 5000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("starvation")
    srv = start("tests.hostile.apps:app", "--threads", str(THREADS), "--body-timeout", "300",
                "--body-buffer-size", str(BOUND), "--limit-post", "128m",
                "--max-connections", "2000", "--stats", f"unix:{tmp}/stats.sock",
                log_dir=tmp)  # fmt: skip
    yield srv
    srv.stop()


def started(server: ServerProcess) -> int:
    """How many /input-error calls reached the application so far."""
    return list(json.loads(get(server.address, "/started"))).count("input-error")


def settled(server: ServerProcess) -> None:
    """Until the worker has no connection and no request left from an earlier test."""
    until(lambda: (w := server.worker())["connections"] == 0 and w["streams"] == 0,
          30, what="the worker idle")  # fmt: skip


def healthy_get(server: ServerProcess) -> bytes:
    """GET /hello over HTTP/1.1 on a fresh connection (as curl would); the hang guard is far
    below the stalled peers' body-timeout."""
    with socket.create_connection(server.address, timeout=60) as sock:
        sock.sendall(b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        return b"".join(iter(lambda: sock.recv(65536), b""))


@pytest.mark.parametrize("peers", [8, 64])
@pytest.mark.parametrize("protocol", ["mux", "http", "uwsgi"])
def test_stalled_bodies_hold_no_thread(server: ServerProcess, protocol: str, peers: int) -> None:
    """``peers`` requests promise CONTENT_LENGTH 1000, send 10 bytes and stall (one mux
    connection with that many streams, or that many connections): a healthy request on a
    fresh connection is answered while every one of them is still stalled, and none reached
    the application."""
    settled(server)
    before = started(server)
    with stall(server.address, protocol, peers, 1000, 10) as stalled:
        if protocol != "mux":  # mux: stall() waited for the server's PING ACK
            until(lambda: server.worker()["connections"] >= peers, what="all peers accepted")
        reply = healthy_get(server)
        assert reply.startswith(b"HTTP/1.1 200 ") and reply.endswith(b"Hello, World!"), reply
        assert stalled.untouched(), "a stalled peer was answered, reset or closed"
    assert started(server) == before  # a stalled body never reached the application


def test_stalled_large_bodies_hold_at_most_the_connection_share(server: ServerProcess) -> None:
    """6 mux streams send more than --body-buffer-size of a larger body and stall: 2 of them
    (the per-connection share) hold an application thread, the other 4 wait without one, and
    a healthy request is answered meanwhile."""
    settled(server)
    before = started(server)
    with stall(server.address, "mux", 6, OVER, SENT_OVER):
        until(lambda: started(server) == before + PER_CONNECTION, what="two uploads started")
        until(lambda: server.worker()["streams"] == PER_CONNECTION, what="two threads held")
        assert healthy_get(server).endswith(b"Hello, World!")
        assert started(server) == before + PER_CONNECTION
        assert server.worker()["streams"] == PER_CONNECTION


@pytest.mark.parametrize("protocol", ["mux", "http", "uwsgi"])
def test_stalled_large_bodies_hold_at_most_the_worker_budget(
    server: ServerProcess, protocol: str
) -> None:
    """6 connections each send more than --body-buffer-size of a larger body and stall: 4 of
    them (--upload-threads, half of --threads) hold a thread, the other 2 wait without one
    and start as soon as a slot frees."""
    settled(server)
    before = started(server)
    with ExitStack() as stack:
        peers = []
        for i in range(6):
            peers.append(stack.enter_context(stall(server.address, protocol, 1, OVER, SENT_OVER)))
            if i < SLOTS:  # in order: the first SLOTS connections are the ones with slots
                until(lambda n=i: started(server) == before + n + 1, what=f"upload {i} started")
        until(lambda: server.worker()["connections"] >= 6, what="all accepted")
        assert healthy_get(server).endswith(b"Hello, World!")
        assert started(server) == before + SLOTS
        until(lambda: server.worker()["streams"] == SLOTS, what="the budget's threads held")
        peers[0].close()
        peers[1].close()
        until(lambda: started(server) == before + 6, what="the waiting uploads started")
        assert server.worker()["streams"] <= SLOTS


@pytest.mark.parametrize("protocol", ["mux", "http", "uwsgi"])
def test_streaming_upload_of_100_mib_keeps_memory_bounded(
    server: ServerProcess, protocol: str
) -> None:
    """An application that reads as it goes (hashes the input) gets all 100 MiB, with the
    worker's peak RSS less than 64 MiB above where it started: flow control holds the client
    back, the server never buffers the body."""
    settled(server)
    pid = int(get(server.address, "/pid"))
    rss_before = rss_kib(pid)
    size = 100 << 20
    body = os.urandom(1 << 20) * 100
    expected = f"{size} {hashlib.sha256(body).hexdigest()}".encode()
    if protocol == "mux":
        client = RawMux(server.address)
        try:
            reply = client.wait(client.send("POST", "/sha256", body), timeout=300)[0]
        finally:
            client.close()
        assert reply.status == 200 and reply.body == expected
    else:
        head = request_head(protocol, "/sha256", size)
        with socket.create_connection(server.address, timeout=300) as sock:
            sock.sendall(head + body)
            answer = b"".join(iter(lambda: sock.recv(65536), b""))
        assert answer.split(b" ", 2)[1] == b"200" and answer.endswith(expected), answer[-300:]
    growth_mib = (hwm_kib(pid) - rss_before) / 1024
    assert growth_mib < 64, f"worker peak RSS grew by {growth_mib:.1f} MiB"


def test_the_starvation_table_shows_the_target_per_row() -> None:
    """``python -m benchmarks hostile``'s starvation table: p50 and max of the healthy
    requests' delays, "met" only when every one is under the target and nothing failed."""
    target = STARVATION_TARGET
    met = Starved("mux-8", [0.001, 0.002, target * 0.9], [])
    slow = Starved("http-64", [0.001, target], [])
    failed = Starved("uwsgi-8", [0.001], ["a stalled peer was answered, reset or closed"])
    lines = starvation_markdown([met, slow, failed]).splitlines()
    assert f"target < {target * 1000:.0f} ms" in lines[0]
    assert lines[2].split(" | ") == [
        "| 8 stalled streams on one mux connection",
        "3",
        "2.0 ms",
        "90.0 ms",
        "met |",
    ]
    assert lines[3].split(" | ")[0] == "| 64 stalled HTTP/1.1 connections"
    assert lines[3].endswith("**missed** |")
    assert "**missed** (a stalled peer was answered" in lines[4]
