"""Classic uwsgi requests served by their application thread with the socket (serve_in_thread):
however the request's bytes arrive, and whatever the response is, the wire shows the same."""

from __future__ import annotations

import json
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from muxwsgi import classic

from ..servers import ROOT, ServerProcess, start, until

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


def post(path: str, body: bytes) -> bytes:
    vars = {"REQUEST_METHOD": "POST", "PATH_INFO": path, "QUERY_STRING": "",
            "SERVER_PROTOCOL": "HTTP/1.1", "CONTENT_LENGTH": str(len(body))}  # fmt: skip
    return classic.encode_request(vars)


def split_reply(reply: bytes) -> tuple[dict[str, str], bytes]:
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0] == "HTTP/1.1 200 OK", lines[0]
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return headers, body


@pytest.mark.parametrize("pause", [0.0, 0.1])
def test_buffered_body_echoed_in_one_big_response(server: ServerProcess, pause: float) -> None:
    """A body under body_buffer_size, whole or in pieces, and a response several times what
    one socket write takes (the thread's writes wait for room)."""
    body = bytes(range(256)) * 3000  # 768,000 bytes: under the default body-buffer-size
    whole = post("/echo", body) + body
    reply = exchange(server, whole[:1000], whole[1000:400_000], whole[400_000:], pause=pause)
    headers, echoed = split_reply(reply)
    assert headers["Content-Length"] == str(len(body)) and echoed == body


def test_bytes_after_the_body_still_answered(server: ServerProcess) -> None:
    """Bytes after the body mean a lingering close: the loop keeps serving such a request."""
    reply = exchange(server, post("/echo", b"abc") + b"abc" + b"trailing garbage")
    assert split_reply(reply)[1] == b"abc"


def test_large_streamed_response_read_slowly(server: ServerProcess) -> None:
    """10 MB in 100 KB chunks through a small receive window, read in small pieces: the
    thread's writes wait for room; every chunk arrives, in order."""
    with _small_receive_buffer(server.address, 65536) as sock:
        sock.sendall(request("/stream", "n=100&size=100000"))
        chunks = []
        while chunk := sock.recv(4096):
            chunks.append(chunk)
    body = b"".join(chunks).split(b"\r\n\r\n", 1)[1]
    assert len(body) == 100 * 100000
    assert body == b"".join((f"{i:06d}".encode() * (100000 // 6 + 1))[:100000] for i in range(100))


def test_file_wrapper_response(server: ServerProcess) -> None:
    reply = exchange(server, request("/file"))
    assert split_reply(reply)[1] == (ROOT / "tests" / "server" / "apps.py").read_bytes()


def test_client_that_stops_reading_frees_its_thread(tmp_path: Path) -> None:
    """The one application thread writes to a peer that reads nothing: after
    stuck-window-timeout without progress it gives up, closes, and serves the next request."""
    srv = start("tests.server.apps:app", "--workers", "1", "--threads", "1",
                "--stuck-window-timeout", "1", log_dir=tmp_path)  # fmt: skip
    try:
        with _small_receive_buffer(srv.address, 4096) as stalled:
            stalled.sendall(request("/stream", "n=1000&size=100000"))  # 100 MB, never read
            reply = until(lambda: exchange(srv, request("/hello")), 30, what="served",
                          ignore=(OSError,))  # fmt: skip
            assert reply.endswith(b"Hello, World!")
            received = b"".join(iter(lambda: _recv_or_empty(stalled), b""))
        assert 0 < len(received) < 1000 * 100000  # cut: the server closed mid-response
        assert "the peer read nothing for 1s" in srv.log()
    finally:
        srv.stop()


def _small_receive_buffer(address: tuple[str, int], size: int) -> socket.socket:
    """A connection whose receive buffer is ``size`` from the handshake on. Set after the
    connect, the window it shrinks makes the kernel drop the segments already on their way and
    send them again only after its retransmission timeout: draining what the server queued
    before it gave up then took minutes (seen with BBR on Linux 6.18)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    sock.connect(address)
    return sock


def _recv_or_empty(sock: socket.socket) -> bytes:
    try:
        return sock.recv(1 << 20)
    except ConnectionResetError:
        return b""


def test_graceful_stop_finishes_the_request_in_progress(tmp_path: Path) -> None:
    srv = start("tests.server.apps:app", "--workers", "1", "--stats", "127.0.0.1:0",
                log_dir=tmp_path)  # fmt: skip
    try:
        with socket.create_connection(srv.address, timeout=10) as sock:
            sock.sendall(request("/stream", "n=5&size=10&delay=0.3"))
            first = sock.recv(65536)
            assert first.startswith(b"HTTP/1.1 200 OK")  # the request is running
            srv.signal(signal.SIGTERM)
            rest = b"".join(iter(lambda: sock.recv(65536), b""))
        assert (first + rest).split(b"\r\n\r\n", 1)[1] == b"".join(
            (f"{i:06d}".encode() * 2)[:10] for i in range(5)
        )
        assert srv.wait(20) == 0
    finally:
        srv.stop()


def test_counted_in_stats_and_access_log(tmp_path: Path) -> None:
    access = tmp_path / "access.log"
    srv = start("tests.server.apps:app", "--workers", "1", "--stats", "127.0.0.1:0",
                "--access-log", str(access), log_dir=tmp_path)  # fmt: skip
    try:
        for i in range(3):
            assert exchange(srv, request("/status", f"code={201 + i}")).startswith(b"HTTP/1.1 20")
        until(lambda: srv.worker()["requests"] >= 3, 10, what="3 requests counted")
        until(lambda: access.exists() and access.read_text().count(" uwsgi stream=0") >= 3, 10,
              what="3 access log lines")  # fmt: skip
        text = access.read_text()
        assert all(f'"GET /status" {201 + i} ' in text for i in range(3)), text
    finally:
        srv.stop()


def test_requests_on_threads_count_as_connections(tmp_path: Path) -> None:
    """A connection handed to an application thread still counts for max-connections until
    the thread closes it: a third connection is refused while two requests are in the
    worker, one running and one queued for the only thread."""
    srv = start("tests.server.apps:app", "--workers", "1", "--threads", "1",
                "--max-connections", "2", log_dir=tmp_path)  # fmt: skip
    try:
        with socket.create_connection(srv.address, timeout=10) as running, \
                socket.create_connection(srv.address, timeout=10) as queued:  # fmt: skip
            running.sendall(request("/stream", "n=2&size=10&delay=2"))
            assert running.recv(65536).startswith(b"HTTP/1.1 200 OK")  # on the thread
            queued.sendall(request("/hello"))
            assert exchange(srv, request("/hello")) == b""  # refused: closed unanswered
            assert b"".join(iter(lambda: queued.recv(65536), b"")).endswith(b"Hello, World!")
        until(lambda: exchange(srv, request("/hello")).endswith(b"Hello, World!"), 10,
              what="served once the two are done", ignore=(OSError,))  # fmt: skip
        assert "max-connections (2) reached" in srv.log()
    finally:
        srv.stop()
