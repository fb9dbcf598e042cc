"""PROTOCOL.md §12: classic uwsgi on the same socket."""

from __future__ import annotations

import pytest

from .conftest import Connector
from .peer import app_saw, spec
from .wire import uwsgi_packet, uwsgi_request, uwsgi_vars

pytestmark = pytest.mark.slow


def exchange(connect: Connector, request: bytes) -> bytes:
    """Send a classic request; return every byte of the answer, up to the server's close."""
    peer = connect(preface=False)
    peer.sock.sendall(request)
    return peer.read_raw()


def status(reply: bytes) -> int:
    assert reply.startswith(b"HTTP/1."), reply[:80]
    return int(reply.split(b" ", 2)[1])


@spec("U-1")
def test_U1_a_vars_block_over_the_buffer_size_is_refused_unread(connect: Connector) -> None:
    # Only the 4-byte header: the server must answer without waiting for the block.
    assert status(exchange(connect, uwsgi_packet(b"", datasize=65535))) == 431


BAD_BLOCKS = {
    "length-past-the-end": uwsgi_vars([(b"PATH_INFO", b"/hello")])[:-2],
    "empty-key": uwsgi_vars([(b"", b"x"), (b"PATH_INFO", b"/hello")]),
    "repeated-var": uwsgi_vars([(b"PATH_INFO", b"/hello"), (b"PATH_INFO", b"/seen")]),
    "cr-in-value": uwsgi_vars([(b"PATH_INFO", b"/hello"), (b"HTTP_X_A", b"a\rb")]),
    "lf-in-key": uwsgi_vars([(b"PATH_INFO", b"/hello"), (b"HTTP\nX", b"a")]),
    "nul-in-value": uwsgi_vars([(b"PATH_INFO", b"/hello"), (b"HTTP_X_A", b"a\0b")]),
}


@spec("U-2")
@pytest.mark.parametrize("block", BAD_BLOCKS.values(), ids=BAD_BLOCKS.keys())
def test_U2_a_malformed_vars_block_is_rejected(connect: Connector, block: bytes) -> None:
    case = uwsgi_vars([(b"HTTP_X_CASE", b"u2-" + block.hex()[-16:].encode())])
    reply = exchange(connect, uwsgi_packet(case + block))
    assert status(reply) == 400
    assert not app_saw(connect.srv.address, "u2-" + block.hex()[-16:])


@spec("U-3", "H-6")
@pytest.mark.parametrize("value", ["abc", "+5", "-1", "1" * 19])
def test_U3_an_invalid_content_length(connect: Connector, value: str) -> None:
    assert status(exchange(connect, uwsgi_request("/echo", CONTENT_LENGTH=value))) == 400


@spec("U-3")
def test_U3_a_body_over_the_limit(connect: Connector) -> None:
    request = uwsgi_request("/echo", CONTENT_LENGTH=str(10**12))
    assert status(exchange(connect, request)) == 413


@spec("U-4")
def test_U4_one_request_per_connection(connect: Connector) -> None:
    second = uwsgi_request("/hello", HTTP_X_CASE="u4-second")
    reply = exchange(connect, uwsgi_request("/echo", b"abc") + second)
    assert status(reply) == 200 and reply.endswith(b"\r\n\r\nabc")
    assert not app_saw(connect.srv.address, "u4-second")


@spec("U-5", "D-1")
@pytest.mark.parametrize("modifier1", [1, 5, 17, 30, 35, 250])
def test_U5_other_modifiers_are_not_served(connect: Connector, modifier1: int) -> None:
    block = uwsgi_vars([(b"PATH_INFO", b"/hello"), (b"HTTP_X_CASE", b"u5-%d" % modifier1)])
    assert exchange(connect, uwsgi_packet(block, modifier1)) == b""
    assert not app_saw(connect.srv.address, f"u5-{modifier1}")
