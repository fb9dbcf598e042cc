"""Classic uwsgi requests served by their application thread with the socket (serve_in_thread):
however the request's bytes arrive, and whatever the response is, the wire shows the same."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest

from muxwsgi import classic

from ..servers import ServerProcess, start

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start("tests.server.apps:app", "--workers", "2", "--header-timeout", "1",
                log_dir=tmp_path_factory.mktemp("classic-thread"))  # fmt: skip
    yield srv
    srv.stop()


def request(path: str, query: str = "") -> bytes:
    vars = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": query,
            "SERVER_PROTOCOL": "HTTP/1.1"}  # fmt: skip
    return classic.encode_request(vars)


def exchange(server: ServerProcess, *parts: bytes, pause: float = 0.0) -> bytes:
    with socket.create_connection(server.address, timeout=10) as sock:
        for part in parts:
            time.sleep(pause)
            sock.sendall(part)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


@pytest.mark.parametrize("pause", [0.0, 0.2])
def test_whole_request_at_once_or_late(server: ServerProcess, pause: float) -> None:
    reply = exchange(server, request("/hello"), pause=pause)
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n") and reply.endswith(b"\r\n\r\nHello, World!")


def test_request_in_two_pieces(server: ServerProcess) -> None:
    whole = request("/hello")
    reply = exchange(server, whole[:10], whole[10:], pause=0.1)
    assert reply.endswith(b"\r\n\r\nHello, World!")


def test_streamed_and_written_responses(server: ServerProcess) -> None:
    reply = exchange(server, request("/stream", "n=50&size=100000"))
    assert reply.split(b"\r\n\r\n", 1)[1] == b"".join(
        (f"{i:06d}".encode() * (100000 // 6 + 1))[:100000] for i in range(50)
    )
    reply = exchange(server, request("/write"))
    assert reply.endswith(b"\r\n\r\nwritten directly")


def test_remote_addr_from_the_socket(server: ServerProcess) -> None:
    body = exchange(server, request("/environ")).split(b"\r\n\r\n", 1)[1]
    assert json.loads(body)["REMOTE_ADDR"] == "127.0.0.1"


def test_silent_connection_closed_after_header_timeout(server: ServerProcess) -> None:
    with socket.create_connection(server.address, timeout=10) as sock:
        started = time.monotonic()
        assert sock.recv(1) == b""
        assert time.monotonic() - started < 5
    assert exchange(server, request("/hello")).endswith(b"Hello, World!")
