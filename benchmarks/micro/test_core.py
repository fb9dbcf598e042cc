"""Core costs, under pytest-benchmark.

    pytest benchmarks/micro --benchmark-only                       # run
    pytest benchmarks/micro --benchmark-only --benchmark-autosave  # save a baseline
    pytest benchmarks/micro --benchmark-only --benchmark-compare   # compare with the last one

One *exchange* is everything the core does for a request: the client encodes a request with
15 nginx vars, the server decodes it, the server encodes a 200 head and a 13-byte body, the
client decodes them. Its target is in benchmarks/README.md ("Micro-benchmarks").
"""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

import muxwsgi
from muxwsgi import Connection, ConnectionConfig, RequestReceived, Role, classic
from muxwsgi._vars import (
    VarsBlock,
    decode_request_vars,
    decode_response_head,
    encode_request_vars,
    encode_response_head,
)

from .requests import NGINX_15, NGINX_BROWSER_28, RESPONSE_BODY, RESPONSE_HEADERS

BATCH = 64


def connected_pair() -> tuple[Connection, Connection]:
    config = ConnectionConfig(connection_window_size=1 << 24)
    client = Connection(Role.CLIENT, config)
    server = Connection(Role.SERVER, config)
    for _ in range(2):
        server.receive_data(client.data_to_send())
        client.receive_data(server.data_to_send())
    return client, server


def exchange(client: Connection, server: Connection, vars: dict[str, str], n: int) -> None:
    for _ in range(n):
        client.send_request(vars, end_stream=True)
    for event in server.receive_data(client.data_to_send()):
        if type(event) is RequestReceived:
            server.send_response(
                event.stream_id, 200, RESPONSE_HEADERS, body=RESPONSE_BODY, end_stream=True
            )
    events = client.receive_data(server.data_to_send())
    assert len(events) == 3 * n  # ResponseReceived, DataReceived, StreamEnded


@pytest.mark.parametrize("n", [1, BATCH], ids=["one", f"batch{BATCH}"])
def test_exchange_15_vars(benchmark: Any, n: int) -> None:
    client, server = connected_pair()
    benchmark.extra_info["exchanges_per_round"] = n
    benchmark(exchange, client, server, NGINX_15, n)


def test_exchange_28_vars_batch(benchmark: Any) -> None:
    client, server = connected_pair()
    benchmark.extra_info["exchanges_per_round"] = BATCH
    benchmark(exchange, client, server, NGINX_BROWSER_28, BATCH)


def test_decode_request_vars_28(benchmark: Any) -> None:
    payload = encode_request_vars(msgpack.Packer().pack, NGINX_BROWSER_28)
    assert benchmark(decode_request_vars, payload, 256) == NGINX_BROWSER_28


def test_decode_classic_vars_28(benchmark: Any) -> None:
    """The same vars as a classic uwsgi vars block: what nginx uwsgi_pass sends."""
    block = classic.encode_vars(NGINX_BROWSER_28)
    assert benchmark(classic.decode_vars, block) == NGINX_BROWSER_28


def test_encode_response_head(benchmark: Any) -> None:
    pack = msgpack.Packer().pack
    benchmark(encode_response_head, pack, 200, "OK", RESPONSE_HEADERS)


def test_encode_request_vars_with_block(benchmark: Any) -> None:
    """A client's request head: the 5 vars that change per request (method, target, length),
    then the VarsBlock of the rest, encoded once (what client requests send)."""
    changing = {k: NGINX_BROWSER_28[k] for k in _CHANGING}
    block = VarsBlock(
        msgpack.packb, {k: v for k, v in NGINX_BROWSER_28.items() if k not in changing}
    )
    payload = benchmark(encode_request_vars, msgpack.Packer().pack, changing, block)
    assert decode_request_vars(payload, 256) == NGINX_BROWSER_28


def test_decode_response_head(benchmark: Any) -> None:
    """A client's side of a response head: the status line and two headers."""
    payload = encode_response_head(msgpack.Packer().pack, 200, "OK", RESPONSE_HEADERS)
    assert benchmark(decode_response_head, payload, 256) == (200, "OK", RESPONSE_HEADERS)


_CHANGING = ("REQUEST_METHOD", "REQUEST_URI", "PATH_INFO", "QUERY_STRING", "CONTENT_LENGTH")


def test_version_is_reported(benchmark: Any) -> None:
    benchmark.extra_info["muxwsgi"] = muxwsgi.__version__
    benchmark(lambda: None)
