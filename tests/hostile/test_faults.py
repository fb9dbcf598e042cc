"""Faults: the peer vanishes mid-request or mid-response, the application raises mid-stream.

An upload over ``--body-buffer-size`` (64 KiB here) is read by the application as it arrives; a
smaller one is read by the server before the application is called, so one cut short never
reaches the application (bodies.py).

A worker killed with SIGKILL under load, with the client library retrying what is safe, is
tests/client/test_sync_behaviour.py::test_retry_policy_by_method (the GET in flight is
retried on the respawned worker, the POST is not); the master
replacing killed and stuck workers is tests/server/test_master.py.
"""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Callable, Iterator

import pytest

from muxwsgi import ErrorCode, FrameType, classic

from ..core.helpers import data, frame, headers, preface
from ..muxclient import RawMux, vars_for
from ..servers import ServerProcess, start, until
from .kit import Healthy, classic_post, get, log_problems, marks

pytestmark = pytest.mark.slow

OPENING = preface() + frame(FrameType.SETTINGS, 1, 0)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("faults")
    srv = start("tests.hostile.apps:app", "--threads", "8", "--body-buffer-size", "64k",
                "--stats", f"unix:{tmp}/stats.sock", log_dir=tmp)  # fmt: skip
    yield srv
    srv.stop()


@pytest.fixture
def healthy(server: ServerProcess) -> Iterator[Healthy]:
    with Healthy(server.address) as client:
        client.check(0)
        yield client
        client.check(client.ok)


def vanish(address: tuple[str, int], first: bytes, started: Callable[[], object]) -> None:
    """Connect, send ``first``, wait until ``started()`` says the server has the request (the
    application, or the connection), then drop the connection with an RST (no FIN). (Bytes
    the server has not read when the RST arrives are lost with it.)"""
    sock = socket.create_connection(address, timeout=5)
    try:
        sock.sendall(first)
        until(started, what="the request reached the application")
    finally:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()


def reached(server: ServerProcess) -> list[str]:
    """What reached the application: /input-error calls, /held responses by tag."""
    return list(json.loads(get(server.address, "/started")))


def upload(protocol: str, path: str, length: int, sent: int) -> bytes:
    """The start of a POST of ``length`` body bytes, ``sent`` of them included."""
    body = b"x" * sent
    if protocol == "mux":
        head = headers(1, vars_for("POST", path, CONTENT_LENGTH=str(length)), end=False)
        return (
            OPENING + head + b"".join(data(1, body[i : i + 65535]) for i in range(0, sent, 65535))
        )
    if protocol == "uwsgi":
        return classic_post(path, length) + body
    return f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {length}\r\n\r\n".encode() + body


PROTOCOLS = ("mux", "uwsgi", "http")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_peer_vanishes_mid_upload(server: ServerProcess, healthy: Healthy, protocol: str) -> None:
    """A body over --body-buffer-size, read by the application as it arrives: its
    wsgi.input.read() raises at once instead of waiting for the rest of the body."""
    errors = lambda: json.loads(get(server.address, "/input-errors"))  # noqa: E731
    before, calls = len(errors()), reached(server).count("input-error")
    vanish(server.address, upload(protocol, "/input-error", 1_000_000, 70_000),
           lambda: reached(server).count("input-error") > calls)  # fmt: skip
    # Not after body-timeout (30 s).
    until(lambda: len(errors()) > before, 10, what="wsgi.input.read() raised")
    seen = errors()
    assert "ClientDisconnected" in seen[before], seen[before:]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_peer_vanishes_mid_buffered_upload(
    server: ServerProcess, healthy: Healthy, protocol: str
) -> None:
    """A body within --body-buffer-size is read before the application is called: cut short,
    it never reaches the application (no thread ever waited for it), and its connection is
    dropped."""
    until(lambda: server.worker()["connections"] == 1, what="only the healthy connection")
    tag = f"vanished-{protocol}"
    vanish(server.address, upload(protocol, f"/mark/{tag}", 1000, 100),
           lambda: server.worker()["connections"] == 2)  # fmt: skip
    until(lambda: server.worker()["connections"] == 1, what="the connection dropped")
    assert tag not in marks(server.address)


DOWNLOADS = {
    "mux": lambda tag: OPENING + headers(1, vars_for("GET", f"/held?tag={tag}&n=2000")),
    "uwsgi": lambda tag: classic.encode_request(
        {"REQUEST_METHOD": "GET", "PATH_INFO": "/held", "QUERY_STRING": f"tag={tag}&n=2000",
         "SERVER_PROTOCOL": "HTTP/1.1"}),
    "http": lambda tag: f"GET /held?tag={tag}&n=2000 HTTP/1.1\r\nHost: t\r\n\r\n".encode(),
}  # fmt: skip


@pytest.mark.parametrize("protocol", list(DOWNLOADS))
def test_peer_vanishes_mid_response(server: ServerProcess, healthy: Healthy, protocol: str) -> None:
    """A 128 MiB streamed response whose client disappears: the iterable's close() is
    called (PEP 3333) and its thread is freed."""
    tag = f"vanish-{protocol}"
    vanish(server.address, DOWNLOADS[protocol](tag), lambda: f"held:{tag}" in reached(server))
    until(lambda: tag in json.loads(get(server.address, "/held-closed")), what="close() called")


def test_application_raises_mid_stream(server: ServerProcess, healthy: Healthy) -> None:
    """The stream is reset (INTERNAL_ERROR), the connection and its other streams go on."""
    client = RawMux(server.address)
    try:
        slow = client.send("GET", "/sleep?s=0.5")
        broken = client.send("GET", "/raise-midstream")
        reply = client.wait(broken)[0]
        assert reply.reset == ErrorCode.INTERNAL_ERROR and reply.body == b"first "
        assert client.wait(slow)[0].body == b"slept"
        assert client.request("GET", "/hello").body == b"Hello, World!"
        assert "midstream" in json.loads(client.request("GET", "/closed").body)
    finally:
        client.close()


def test_the_log_has_no_internal_error(server: ServerProcess) -> None:
    """Runs last: every hostile act was handled, none escaped as an internal error."""
    assert log_problems(server.log()) == []
