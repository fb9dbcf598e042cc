"""The vars a request carries: build_vars (classic) and request_vars (mux, with the headers
encoded once and cached) must describe the same request."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgpack
import pytest

from muxwsgi import LocalProtocolError
from muxwsgi._vars import decode_request_vars, encode_request_vars
from muxwsgi.client._models import build_vars, request_vars

WHERE: dict[str, Any] = {
    "body_length": 3,
    "server_name": "api.example.com",
    "server_port": "8080",
    "local": ("127.0.0.1", "5555"),
}


def pairs() -> Iterator[tuple[str, str]]:
    yield ("Accept", "*/*")
    yield ("Accept", "text/html")


HEADERS = [
    None,
    {"User-Agent": "t", "Content-Type": "application/json"},
    [("Host", "h"), ("Cookie", "a=1"), ("Cookie", "b=2"), ("Content-Length", "99")],
    (("X-Id", "1"),),
    [["X-List", "pairs are not hashable"]],
    pairs,
]


@pytest.mark.parametrize("headers", HEADERS, ids=lambda h: type(h).__name__)
def test_request_vars_describe_what_build_vars_does(headers: Any) -> None:
    for _ in range(2):  # the second time from the cache
        given = headers() if callable(headers) else headers
        vars, block = request_vars("post", "/a b?x=1", given, **WHERE)
        given = headers() if callable(headers) else headers
        expected = build_vars("post", "/a b?x=1", given, **WHERE)
        payload = encode_request_vars(msgpack.Packer().pack, vars, block)
        assert decode_request_vars(payload, 100) == expected


def test_cached_vars_follow_the_connection_and_the_server() -> None:
    # What does not change between requests is encoded once, per headers *and* per
    # connection: two connections' requests never carry each other's address or server.
    headers = {"X-Id": "1"}
    places = [
        ("8080", ("127.0.0.1", "5555")),
        ("8080", ("127.0.0.1", "6666")),
        ("9090", ("127.0.0.1", "5555")),
        ("8080", ("::1", "5555")),
    ]
    for server_port, local in places:
        where = {**WHERE, "server_port": server_port, "local": local}
        for method, target, length in [("GET", "/a?b=c", None), ("PUT", "/d", 7)]:
            vars, block = request_vars(method, target, headers, **{**where, "body_length": length})
            got = decode_request_vars(encode_request_vars(msgpack.Packer().pack, vars, block), 100)
            assert got == build_vars(method, target, headers, **{**where, "body_length": length})
            assert (got["SERVER_PORT"], got["REMOTE_ADDR"], got["REMOTE_PORT"]) == (
                server_port, *local)  # fmt: skip


def test_headers_changed_in_place_are_sent_as_they_are_now() -> None:
    # The cache keeps what it has seen: a header list changed in place between two requests
    # (a pair replaced, or the value of a pair that is itself a list), or a dict, must be read
    # again, never answered from what the same objects held before.
    pairs = [("X-A", "1")]
    lists = [["X-B", "1"]]
    mapping = {"X-C": "1"}
    for given in (pairs, lists, mapping):
        for value in ("1", "2", "2", "3"):
            pairs[0] = ("X-A", value)
            lists[0][1] = value
            mapping["X-C"] = value
            vars, block = request_vars("GET", "/", given, **WHERE)
            got = decode_request_vars(encode_request_vars(msgpack.Packer().pack, vars, block), 100)
            assert got == build_vars("GET", "/", given, **WHERE)


def test_request_vars_refuse_what_build_vars_and_encoding_refuse() -> None:
    with pytest.raises(ValueError, match="underscore"):
        request_vars("GET", "/", {"X_Y": "1"}, **WHERE)
    with pytest.raises(LocalProtocolError, match="CR, LF"):
        request_vars("GET", "/", {"X-Y": "a\r\nInjected: 1"}, **WHERE)
    with pytest.raises(ValueError, match="must start with '/'"):
        request_vars("GET", "x", None, **WHERE)
