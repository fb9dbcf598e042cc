"""HTTP/1.1 and classic uwsgi on the same socket as mux; protocol detection by the first byte."""

from __future__ import annotations

import http.client
import json
import socket
import struct
from collections.abc import Iterator

import pytest

from muxwsgi import classic

from ..core.helpers import spec
from ..muxclient import RawMux
from ..servers import ServerProcess, start

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start("tests.server.apps:validated_app", "--buffer-size", "4096", "--limit-post", "1m",
                log_dir=tmp_path_factory.mktemp("http"))  # fmt: skip
    yield srv
    srv.stop()


def raw(server: ServerProcess, data: bytes, *, read_all: bool = True) -> bytes:
    with socket.create_connection(server.address, timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while read_all:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


# ---------------------------------------------------------------- detection


@spec("D-1")
def test_one_socket_three_protocols(server: ServerProcess) -> None:
    conn = http.client.HTTPConnection(*server.address, timeout=10)
    conn.request("GET", "/hello")
    assert conn.getresponse().read() == b"Hello, World!"
    classic_reply = raw(
        server, classic.encode_request({"REQUEST_METHOD": "GET", "PATH_INFO": "/hello"})
    )
    assert classic_reply.endswith(b"Hello, World!")
    mux = RawMux(server.address)
    assert mux.request("GET", "/hello").body == b"Hello, World!"
    mux.close()


@pytest.mark.parametrize(
    "first", [b"\x16\x03\x01\x00\x05hello", b"\x7fELF", b"get / HTTP/1.1\r\n\r\n"]
)
def test_unknown_first_byte_is_closed_and_logged(server: ServerProcess, first: bytes) -> None:
    assert raw(server, first) == b""
    assert "neither muxwsgi, classic uwsgi nor HTTP/1.1" in server.log()


# ---------------------------------------------------------------- HTTP/1.1


def test_keep_alive_many_requests_one_connection(server: ServerProcess) -> None:
    conn = http.client.HTTPConnection(*server.address, timeout=10)
    ports = set()
    for i in range(20):
        conn.request("GET", f"/environ?i={i}")
        response = conn.getresponse()
        env = json.loads(response.read())
        assert env["QUERY_STRING"] == f"i={i}" and env["muxwsgi.protocol"] == "http"
        ports.add(env["REMOTE_PORT"])
    assert len(ports) == 1  # the same TCP connection throughout


@pytest.fixture(scope="module")
def plain_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The application without wsgiref's validator: its list bodies take the path where the
    application thread writes a keep-alive response itself (the validator's iterator does
    not)."""
    srv = start("tests.server.apps:app", "--threads", "2",
                log_dir=tmp_path_factory.mktemp("http-plain"))  # fmt: skip
    yield srv
    srv.stop()


def _read_response(sock: socket.socket, pending: bytes) -> tuple[bytes, bytes, bytes]:
    """One response with a Content-Length from ``sock``: (head, body, bytes after it)."""
    data = pending
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before a whole head: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")))  # fmt: skip
    while len(rest) < length:
        chunk = sock.recv(1 << 20)
        assert chunk, f"closed after {len(rest)} of {length} body bytes"
        rest += chunk
    return head, rest[:length], rest[length:]


def test_keep_alive_responses_in_a_row(plain_server: ServerProcess) -> None:
    # Each request comes after the previous response: the loop settles that exchange when
    # the next request arrives. Both ends of the connection agree on every byte.
    with socket.create_connection(plain_server.address, timeout=10) as sock:
        pending = b""
        for i in range(300):
            size = (i * 7919) % 20000
            sock.sendall(f"GET /big?size={size} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            head, body, pending = _read_response(sock, pending)
            assert head.startswith(b"HTTP/1.1 200 ") and b"Connection: close" not in head
            assert body == (b"0123456789abcdef" * (size // 16 + 1))[:size]
        assert pending == b""


def test_keep_alive_response_larger_than_the_socket_takes(plain_server: ServerProcess) -> None:
    # The socket takes part of an 8 MiB response at once: the rest is written by the loop,
    # before anything of the next response.
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)  # before connect: see
        sock.settimeout(10)  # test_classic_thread's _small_receive_buffer
        sock.connect(plain_server.address)
        size = 8 << 20
        sock.sendall(f"GET /big?size={size} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        _, body, pending = _read_response(sock, b"")
        assert body == (b"0123456789abcdef" * (size // 16 + 1))[:size]
        sock.sendall(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
        _, body, pending = _read_response(sock, pending)
        assert body == b"Hello, World!" and pending == b""


def test_http_post_streamed_response_and_head(server: ServerProcess) -> None:
    conn = http.client.HTTPConnection(*server.address, timeout=10)
    conn.request("POST", "/echo", body=b"payload" * 1000)
    assert conn.getresponse().read() == b"payload" * 1000
    conn.request("GET", "/stream?n=3&size=4")
    response = conn.getresponse()
    assert response.getheader("Transfer-Encoding") == "chunked"
    assert response.read() == b"0000" * 3  # three 4-byte chunks of "000000", "000001", ...
    conn.request("HEAD", "/hello")
    response = conn.getresponse()
    assert response.getheader("Content-Length") == "13" and response.read() == b""
    conn.request("GET", "/hello")  # the connection survived all of it
    assert conn.getresponse().read() == b"Hello, World!"


def test_http_chunked_upload(server: ServerProcess) -> None:
    conn = http.client.HTTPConnection(*server.address, timeout=10)
    conn.request("POST", "/echo", body=iter([b"abc", b"def"]), encode_chunked=True,
                 headers={"Transfer-Encoding": "chunked"})  # fmt: skip
    assert conn.getresponse().read() == b"abcdef"


def test_pipelined_requests_answered_in_order(server: ServerProcess) -> None:
    requests = (
        b"".join(b"GET /environ?n=%d HTTP/1.1\r\nHost: t\r\n\r\n" % i for i in range(3))
        + b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    data = raw(server, requests)
    assert data.count(b"HTTP/1.1 200 OK") == 4
    assert data.index(b"n=0") < data.index(b"n=1") < data.index(b"n=2") < data.index(b"Hello")


def test_expect_100_continue(server: ServerProcess) -> None:
    with socket.create_connection(server.address, timeout=10) as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
        )
        interim = b""
        while b"\r\n\r\n" not in interim:  # TCP may split (or join) what the server wrote
            chunk = sock.recv(100)
            assert chunk, interim
            interim += chunk
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"), interim
        sock.sendall(b"ping")
        data = interim.split(b"\r\n\r\n", 1)[1]
        while not data.endswith(b"ping"):
            chunk = sock.recv(1000)
            assert chunk, data
            data += chunk
        assert data.startswith(b"HTTP/1.1 200 OK\r\n"), data


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", b"400"),
        (b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n"
         b"\r\n0\r\n\r\n", b"400"),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", b"414"),
        (b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n", b"431"),
        (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2000000\r\n\r\n", b"413"),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", b"505"),
    ],
    ids=["duplicate content-length", "negative length", "CL and TE", "long URI", "big headers",
         "over limit-post", "h2 preface"],
)  # fmt: skip
def test_http_refusals(server: ServerProcess, request_bytes: bytes, status: bytes) -> None:
    reply = raw(server, request_bytes)
    assert reply.split(b" ", 2)[1] == status, reply[:200]


def test_underscore_headers_are_dropped(server: ServerProcess) -> None:
    reply = raw(server, b"GET /environ HTTP/1.1\r\nHost: t\r\nX_Evil: 1\r\nX-Good: 2\r\n"
                        b"Connection: close\r\n\r\n")  # fmt: skip
    env = json.loads(reply.split(b"\r\n\r\n", 1)[1])
    assert env["HTTP_X_GOOD"] == "2" and "HTTP_X_EVIL" not in env


def test_unread_body_is_never_a_next_request(server: ServerProcess) -> None:
    smuggled = b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"
    body = smuggled + b"x" * 10
    reply = raw(server, b"POST /hello HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%b"
                        % (len(body), body))  # fmt: skip
    assert reply.count(b"HTTP/1.1 200") == 1


# ---------------------------------------------------------------- classic uwsgi


def classic_request(server: ServerProcess, vars: dict[str, str], body: bytes = b"") -> bytes:
    return raw(server, classic.encode_request(vars) + body)


def test_classic_post_and_status_line(server: ServerProcess) -> None:
    vars = {"REQUEST_METHOD": "POST", "PATH_INFO": "/echo", "CONTENT_LENGTH": "5",
            "SERVER_PROTOCOL": "HTTP/1.0"}  # fmt: skip
    reply = classic_request(server, vars, b"hello")
    head, body = reply.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.0 200 OK\r\n")  # the request's protocol, as uWSGI does
    assert body == b"hello"


@spec("U-4")
def test_classic_bytes_after_the_body_are_ignored(server: ServerProcess) -> None:
    second = classic.encode_request({"REQUEST_METHOD": "GET", "PATH_INFO": "/environ"})
    reply = classic_request(server, {"REQUEST_METHOD": "POST", "PATH_INFO": "/echo",
                                     "CONTENT_LENGTH": "3"}, b"abc" + second)  # fmt: skip
    assert reply.endswith(b"\r\n\r\nabc") and reply.count(b"HTTP/1.1") == 1


@spec("U-1")
def test_classic_vars_block_over_buffer_size(server: ServerProcess) -> None:
    header = struct.pack("<BHB", 0, 5000, 0)  # buffer-size is 4096 for this server
    reply = raw(server, header)  # refused from the header alone, before any block byte
    assert reply.startswith(b"HTTP/1.1 431")


@spec("U-2", "U-3")
@pytest.mark.parametrize(
    ("vars", "status"),
    [
        ({"REQUEST_METHOD": "POST", "PATH_INFO": "/echo", "CONTENT_LENGTH": "+5"}, b"400"),
        ({"REQUEST_METHOD": "POST", "PATH_INFO": "/echo", "CONTENT_LENGTH": "9999999"}, b"413"),
    ],
)
def test_classic_bad_content_length(
    server: ServerProcess, vars: dict[str, str], status: bytes
) -> None:
    assert classic_request(server, vars).split(b" ", 2)[1] == status


@spec("U-2")
def test_classic_duplicate_vars_refused(server: ServerProcess) -> None:
    block = classic.encode_vars([("A", "1")]) * 2
    reply = raw(server, struct.pack("<BHB", 0, len(block), 0) + block)
    assert reply.startswith(b"HTTP/1.1 400")


@spec("U-5")
@pytest.mark.parametrize("modifier1", [5, 100, 17])
def test_classic_other_modifiers_are_not_served(server: ServerProcess, modifier1: int) -> None:
    block = classic.encode_vars({"REQUEST_METHOD": "GET", "PATH_INFO": "/hello"})
    # The first byte is not 0, so the detector refuses it before any uwsgi parsing.
    assert raw(server, struct.pack("<BHB", modifier1, len(block), 0) + block) == b""
