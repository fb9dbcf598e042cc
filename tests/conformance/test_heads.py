"""PROTOCOL.md §5: request heads (msgpack vars), CONTENT_LENGTH, bodies and deadlines."""

from __future__ import annotations

import json

import msgpack
import pytest

from .conftest import Connector
from .peer import Peer, app_saw, spec
from .wire import E, S, T, data, get, head_payload, headers, request_vars

pytestmark = pytest.mark.slow


def marked(case: str, method: str = "GET", path: str = "/hello", **extra: str) -> dict[str, str]:
    """Request vars that the application records (see app_saw)."""
    return request_vars(method, path, HTTP_X_CASE=case, **extra)


def flat(vars_: dict[str, str]) -> list[str]:
    return [x for pair in vars_.items() for x in pair]


# ---------------------------------------------------------------- [H-1]

GOOD = head_payload(request_vars())
MALFORMED = {
    "empty": b"",
    "not-msgpack": b"\xc1",
    "trailing-bytes": GOOD + b"\x00",
    "two-arrays": GOOD + GOOD,
    "odd-length": head_payload([*flat(request_vars()), "HTTP_X_ALONE"]),
    "map": msgpack.packb(request_vars()),
    "str-not-array": msgpack.packb("REQUEST_METHOD"),
    "nested-array": head_payload(["REQUEST_METHOD", ["GET"]]),
    "int-value": head_payload(["SERVER_PORT", 80]),
    "nil-value": head_payload(["REQUEST_METHOD", None]),
    "bin-name": head_payload([b"REQUEST_METHOD", "GET"]),
    "bin-value": head_payload(["REQUEST_METHOD", b"GET"]),
    "invalid-utf8": b"\x92\xa2\xff\xfe\xa1a",
}


@spec("H-1", "X-3")
@pytest.mark.parametrize("payload", MALFORMED.values(), ids=MALFORMED.keys())
def test_H1_a_malformed_request_head_is_a_stream_error(peer: Peer, payload: bytes) -> None:
    peer.send(headers(1, payload), get(3))
    peer.stream_error(1, E.PROTOCOL_ERROR)
    assert peer.response(3).status == 200


@spec("H-1")
def test_H1_an_empty_array_is_a_valid_head(peer: Peer) -> None:
    peer.send(headers(1, []))
    reply = peer.response(1)
    assert reply.reset is None and reply.status == 404  # no PATH_INFO: the app's "not found"


@spec("H-1", "H-3")
def test_H1_the_response_head_is_well_formed(peer: Peer) -> None:
    """The response side of [H-1] and [H-3] is checked on every frame the server sends
    (peer.py); here once more, explicitly."""
    reply = peer.request(1, "/hello")
    assert reply.status == 200 and reply.reason == "OK"
    assert ("Content-Length", "19") in reply.fields


# ---------------------------------------------------------------- [H-2] [H-3]


@spec("H-2")
def test_H2_a_duplicate_var_is_a_stream_error_and_keeps_neither(peer: Peer) -> None:
    items = [*flat(marked("h2-dup", "GET", "/environ")), "HTTP_X_CASE", "h2-dup"]
    peer.send(headers(1, items))
    peer.stream_error(1, E.PROTOCOL_ERROR)
    assert not app_saw(peer.address, "h2-dup")


@spec("H-2")
def test_H2_names_are_compared_exactly(peer: Peer) -> None:
    vars_ = {**request_vars("GET", "/environ"), "content_length": "5", "Http_Host": "other"}
    peer.send(headers(1, vars_))  # END_STREAM: content_length is not CONTENT_LENGTH
    environ = json.loads(peer.response(1).body)
    assert (environ["content_length"], environ["Http_Host"]) == ("5", "other")
    assert environ["HTTP_HOST"] == "conformance"


BAD_TEXT = {
    "empty-name": ("", "x"),
    "cr-in-value": ("HTTP_X_A", "a\rb"),
    "lf-in-value": ("HTTP_X_A", "a\nSet-Cookie: x"),
    "nul-in-value": ("HTTP_X_A", "a\0b"),
    "cr-in-name": ("HTTP_X\rA", "a"),
    "nul-in-name": ("HTTP\0X", "a"),
    "above-u00ff-in-value": ("HTTP_X_A", "\u20ac"),
    "above-u00ff-in-name": ("HTTP_X_\u0100", "a"),
}


@spec("H-3", "X-3")
@pytest.mark.parametrize(("name", "value"), BAD_TEXT.values(), ids=BAD_TEXT.keys())
def test_H3_forbidden_text_is_a_stream_error(peer: Peer, name: str, value: str) -> None:
    case = f"h3-{abs(hash((name, value)))}"
    peer.send(headers(1, [*flat(marked(case)), name, value]))
    peer.stream_error(1, E.PROTOCOL_ERROR)
    assert not app_saw(peer.address, case)


@spec("H-3")
def test_H3_latin1_text_is_carried_as_is(peer: Peer) -> None:
    peer.send(headers(1, {**request_vars("GET", "/environ"), "HTTP_X_LATIN": "caf\xe9 \xff"}))
    assert json.loads(peer.response(1).body)["HTTP_X_LATIN"] == "caf\xe9 \xff"


# ---------------------------------------------------------------- [H-4]


def padded(size: int) -> bytes:
    """A valid request head of exactly ``size`` bytes."""
    base = request_vars()
    pad = size - len(head_payload({**base, "HTTP_X_PAD": ""}))
    for extra in range(4):  # the str header grows with the value
        payload = head_payload({**base, "HTTP_X_PAD": "p" * (pad - extra)})
        if len(payload) == size:
            return payload
    raise AssertionError(size)


@spec("H-4", "X-3")
def test_H4_a_head_larger_than_max_headers_size(peer: Peer) -> None:
    limit = peer.server_settings[S.MAX_HEADERS_SIZE]
    peer.send(headers(1, padded(limit)))
    assert peer.response(1).status == 200
    peer.send(headers(3, padded(limit + 1)))
    peer.stream_error(3, E.HEADERS_TOO_LARGE)


@spec("H-4")
def test_H4_more_vars_than_max_headers_count(peer: Peer) -> None:
    limit = peer.server_settings[S.MAX_HEADERS_COUNT]
    base = request_vars()
    fill = {f"HTTP_X_{i}": "v" for i in range(limit - len(base))}
    peer.send(headers(1, {**base, **fill}))
    assert peer.response(1).status == 200
    peer.send(headers(3, {**base, **fill, "HTTP_X_ONE_MORE": "v"}))
    peer.stream_error(3, E.HEADERS_TOO_LARGE)


@spec("H-4", "E-5")
def test_H4_until_acknowledged_the_default_max_headers_size_applies(connect: Connector) -> None:
    peer = connect(answer=False)
    assert peer.server_settings[S.MAX_HEADERS_SIZE] < 40000
    peer.send(headers(1, padded(40000)))  # within the default 65535
    assert peer.response(1).status == 200


@spec("H-4")
@pytest.mark.parametrize(
    ("limit", "path"),
    [
        ({S.MAX_HEADERS_COUNT: 10}, "/fields?n=20"),
        ({S.MAX_HEADERS_SIZE: 512}, "/fields?n=5&size=200"),
    ],
    ids=["count", "size"],
)
def test_H4_a_response_head_over_our_limits_is_not_sent(
    connect: Connector, limit: dict[int, int], path: str
) -> None:
    peer = connect(limit)
    assert peer.request(1, path).reset == E.INTERNAL_ERROR
    assert [f for f in peer.log if f.type == T.HEADERS] == []  # and peer.py checks the sizes


# ---------------------------------------------------------------- [H-5]


@spec("H-5", "X-3")
def test_H5_a_second_headers_on_an_open_half(peer: Peer) -> None:
    post = request_vars("POST", "/echo")
    peer.send(headers(1, post, end=False), headers(1, post, end=False))
    peer.send(data(1, b"in flight", end=True))  # the stream is closed by then: ignored ([R-3])
    peer.stream_error(1, E.PROTOCOL_ERROR)


# ---------------------------------------------------------------- [H-6] [H-7] [H-8]

BAD_LENGTHS = ["+1", "-5", " 5", "5 ", "1e3", "0_1", "5, 5", "0x10", "\u0663", "1" * 19, "\uff15"]


@spec("H-6", "X-3")
@pytest.mark.parametrize("value", BAD_LENGTHS)
def test_H6_an_invalid_content_length(peer: Peer, value: str) -> None:
    peer.send(headers(1, {**request_vars("POST", "/echo"), "CONTENT_LENGTH": value}, end=False))
    peer.stream_error(1, E.PROTOCOL_ERROR)


@spec("H-6")
@pytest.mark.parametrize(("value", "body"), [("007", b"seven!!"), ("0", b""), ("", b"undeclared")])
def test_H6_valid_content_lengths(peer: Peer, value: str, body: bytes) -> None:
    peer.send(headers(1, {**request_vars("POST", "/echo"), "CONTENT_LENGTH": value}, end=False))
    peer.send(data(1, body, end=True))
    assert peer.response(1).body == body


@spec("H-7", "X-3")
def test_H7_more_body_than_content_length(peer: Peer) -> None:
    peer.send(headers(1, request_vars("POST", "/echo", 3), end=False), data(1, b"abcd", end=True))
    peer.stream_error(1, E.PROTOCOL_ERROR)


@spec("H-7")
def test_H7_end_stream_before_content_length(peer: Peer) -> None:
    peer.send(headers(1, request_vars("POST", "/echo", 5), end=False), data(1, b"ab", end=True))
    peer.stream_error(1, E.PROTOCOL_ERROR)


@spec("H-7")
def test_H7_headers_with_end_stream_and_a_content_length(peer: Peer) -> None:
    peer.send(headers(1, marked("h7-end", "POST", "/echo", CONTENT_LENGTH="5")))
    peer.stream_error(1, E.PROTOCOL_ERROR)
    assert not app_saw(peer.address, "h7-end")
    peer.send(headers(3, request_vars("POST", "/echo", 0)))  # 0 with END_STREAM is fine
    assert peer.response(3).status == 200


@spec("H-8")
def test_H8_the_body_is_framed_by_data_frames_only(peer: Peer) -> None:
    """A body that looks like a frame stays body; the next frame is read as a frame."""
    smuggled = get(3, "/hello", HTTP_X_CASE="h8-smuggled")
    peer.send(
        headers(1, request_vars("POST", "/echo", len(smuggled)), end=False),
        data(1, smuggled, end=True),
        get(5),
    )
    assert peer.response(1).body == smuggled
    assert peer.response(5).status == 200
    assert not app_saw(peer.address, "h8-smuggled")


@spec("H-9")
def test_H9_uwsgi_vars_are_request_data(peer: Peer) -> None:
    uwsgi = {
        "UWSGI_SCRIPT": "tests.server.apps:app",
        "UWSGI_MODULE": "os",
        "UWSGI_CHDIR": "/",
        "UWSGI_FILE": "/etc/passwd",
        "UWSGI_SCHEME": "https",
    }
    peer.send(headers(1, {**request_vars("GET", "/environ"), **uwsgi}))
    environ = json.loads(peer.response(1).body)  # answered by our application, not another
    assert environ["wsgi.url_scheme"] == "http"
    assert {k: environ[k] for k in uwsgi if k in environ}.items() <= uwsgi.items()  # or dropped


# ---------------------------------------------------------------- §5.1


@spec("T-1", "X-3")
@pytest.mark.parametrize("value", ["1234567890", "-1", "1.5", " 5", "+5", "\u0663", "5ms"])
def test_T1_an_invalid_timeout(peer: Peer, value: str) -> None:
    case = f"t1-{value.encode().hex()}"
    peer.send(headers(1, marked(case, MUXWSGI_TIMEOUT_MS=value)))
    peer.stream_error(1, E.PROTOCOL_ERROR)
    assert not app_saw(peer.address, case)


@spec("T-1")
def test_T1_an_empty_timeout(peer: Peer) -> None:
    peer.send(headers(1, request_vars(MUXWSGI_TIMEOUT_MS="")))
    peer.stream_error(1, E.PROTOCOL_ERROR)


@spec("T-1", "T-2")
def test_T1_a_valid_timeout_is_exposed(peer: Peer) -> None:
    reply = peer.request(1, "/deadline", MUXWSGI_TIMEOUT_MS="999999999")
    assert reply.status == 200
    assert float(reply.body) > 0
    assert peer.request(3, "/deadline").body == b"None"


@spec("T-2")
def test_T2_a_request_past_its_deadline_is_not_started(peer: Peer) -> None:
    peer.send(headers(1, marked("t2-zero", MUXWSGI_TIMEOUT_MS="0")))
    peer.stream_error(1, E.DEADLINE_EXCEEDED)
    assert not app_saw(peer.address, "t2-zero")
    assert peer.streams[1].status is None
    assert [f for f in peer.log if f.type == T.HEADERS] == []
