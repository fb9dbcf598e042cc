"""The compliant routes under wsgiref's validator, over all three protocols: every check
wsgiref.validate makes of the server (environ keys and types, wsgi.input and wsgi.errors
behaviour, start_response, iteration and close()) passes, or the request would be a 500."""

from __future__ import annotations

import http.client
import socket
from collections.abc import Iterator

import pytest

from muxwsgi import classic

from ..muxclient import RawMux
from ..servers import ServerProcess, start

pytestmark = pytest.mark.slow

ROUTES = [
    ("GET", "/hello", b"", b"Hello, World!"),
    ("POST", "/echo", b"x" * 100_000, b"x" * 100_000),
    ("POST", "/echo-lines", b"a\nbb\n", b"<a><bb>"),
    ("GET", "/stream?n=4&size=3", b"", b"000000000000"),
    ("GET", "/write", b"", b"written directly"),
    ("GET", "/closing?tag=v", b"", b"abc"),
    ("HEAD", "/hello", b"", b""),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start("tests.server.apps:validated_app", log_dir=tmp_path_factory.mktemp("validated"))
    yield srv
    srv.stop()


@pytest.mark.parametrize(("method", "path", "body", "expected"), ROUTES)
def test_mux(server: ServerProcess, method: str, path: str, body: bytes, expected: bytes) -> None:
    client = RawMux(server.address)
    reply = client.request(method, path, body)
    client.close()
    assert (reply.status, reply.body) == (200, expected)


@pytest.mark.parametrize(("method", "path", "body", "expected"), ROUTES)
def test_http(server: ServerProcess, method: str, path: str, body: bytes, expected: bytes) -> None:
    conn = http.client.HTTPConnection(*server.address, timeout=10)
    conn.request(method, path, body=body or None)
    response = conn.getresponse()
    assert (response.status, response.read()) == (200, expected)


@pytest.mark.parametrize(("method", "path", "body", "expected"), ROUTES)
def test_classic(
    server: ServerProcess, method: str, path: str, body: bytes, expected: bytes
) -> None:
    path_info, _, query = path.partition("?")
    vars = {"REQUEST_METHOD": method, "PATH_INFO": path_info, "QUERY_STRING": query,
            "CONTENT_LENGTH": str(len(body)) if body else "", "SERVER_NAME": "t",
            "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1"}  # fmt: skip
    with socket.create_connection(server.address, timeout=10) as sock:
        sock.sendall(classic.encode_request(vars) + body)
        data = b"".join(iter(lambda: sock.recv(65536), b""))
    head, _, payload = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert payload == expected


def test_no_validator_complaints(server: ServerProcess) -> None:
    assert "AssertionError" not in server.log()
    assert "WSGIWarning" not in server.log()
