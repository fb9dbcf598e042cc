"""Accepting: max-connections, and a connection accepted before a graceful stop that sends its
request only after the stop began."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import pytest

from muxwsgi import classic

from ..servers import start

pytestmark = pytest.mark.slow

HELLO = classic.encode_request(
    {"REQUEST_METHOD": "GET", "PATH_INFO": "/hello", "SERVER_PROTOCOL": "HTTP/1.1"}
)


def answer(sock: socket.socket) -> bytes:
    return b"".join(iter(lambda: sock.recv(65536), b""))


def test_max_connections_refuses_past_the_limit_and_gives_slots_back(tmp_path: Path) -> None:
    srv = start("tests.server.apps:app", "--workers", "1", "--max-connections", "2",
                log_dir=tmp_path)  # fmt: skip
    try:
        time.sleep(0.5)  # the readiness probe's connection is closed (it counted too)
        silent = [socket.create_connection(srv.address, timeout=10) for _ in range(2)]
        time.sleep(0.3)  # both accepted, both waiting for their first bytes
        for sock in silent:
            sock.setblocking(False)
            with pytest.raises(BlockingIOError):  # still open: no bytes, no EOF
                sock.recv(1)
        with socket.create_connection(srv.address, timeout=10) as third:
            third.sendall(HELLO)
            try:
                refused = answer(third)
            except ConnectionResetError:  # closed with the request unread
                refused = b""
            assert refused == b""
        assert "max-connections (2) reached" in srv.log()
        for sock in silent:
            sock.close()
        time.sleep(0.3)  # the loop notices (their first read sees the close)
        # One after the other (served by the thread that writes the response, with the
        # worker idle): each gives its slot back.
        for _ in range(5):
            with socket.create_connection(srv.address, timeout=10) as sock:
                sock.sendall(HELLO)
                assert answer(sock).endswith(b"\r\n\r\nHello, World!")
    finally:
        srv.stop()


def test_connection_waiting_for_its_first_bytes_is_served_through_a_graceful_stop(
    tmp_path: Path,
) -> None:
    srv = start("tests.server.apps:app", "--workers", "1", log_dir=tmp_path)
    try:
        with socket.create_connection(srv.address, timeout=10) as sock:
            time.sleep(0.3)  # accepted; nothing sent yet
            srv.signal(signal.SIGTERM)
            time.sleep(0.3)
            sock.sendall(HELLO)  # within the drain grace: still owed an answer
            assert answer(sock).endswith(b"\r\n\r\nHello, World!")
        assert srv.wait(15) == 0
    finally:
        srv.stop()
