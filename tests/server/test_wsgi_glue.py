"""The server's PEP 3333 pieces without sockets: environ, start_response, header checks, input."""

from __future__ import annotations

import io
import sys
import threading
import time

import pytest

from muxwsgi.server.exchange import CancelFlag, ClientDisconnected, EmptyInput, InputStream
from muxwsgi.server.wsgi import (
    MAGIC_VARS,
    FileWrapper,
    HeadersError,
    StartResponse,
    check_headers,
    constant_environ,
    prepare_environ,
    status_code,
)

from ..core.helpers import spec

CONSTANTS = constant_environ(errors=sys.stderr, multiprocess=True)


def environ_from(vars: dict[str, str]) -> dict[str, object]:
    return prepare_environ(
        dict(vars),
        wsgi_input=EmptyInput(),
        constants=CONSTANTS,
        server_name="srv",
        server_port="80",
    )


def test_environ_from_nginx_vars() -> None:
    env = environ_from(
        {"REQUEST_METHOD": "POST", "PATH_INFO": "/a b", "QUERY_STRING": "x=1", "CONTENT_TYPE": "",
         "CONTENT_LENGTH": "", "HTTP_HOST": "h", "REQUEST_SCHEME": "https"}
    )  # fmt: skip
    assert env["REQUEST_METHOD"] == "POST"
    assert env["SCRIPT_NAME"] == ""
    assert env["PATH_INFO"] == "/a b"
    assert "CONTENT_LENGTH" not in env and "CONTENT_TYPE" not in env  # nginx's empty values
    assert env["wsgi.url_scheme"] == "https"
    assert env["wsgi.version"] == (1, 0)
    assert env["wsgi.multiprocess"] is True and env["wsgi.multithread"] is True
    assert env["SERVER_NAME"] == "srv" and env["SERVER_PORT"] == "80"


@pytest.mark.parametrize(
    ("https", "scheme"), [("on", "https"), ("1", "https"), ("off", "http"), ("", "http")]
)
def test_url_scheme_from_https_var(https: str, scheme: str) -> None:
    assert environ_from({"HTTPS": https})["wsgi.url_scheme"] == scheme


def test_http_duplicates_of_cgi_keys_are_dropped() -> None:
    """nginx sends both CONTENT_LENGTH (uwsgi_params) and HTTP_CONTENT_LENGTH (the header)."""
    env = environ_from({"CONTENT_LENGTH": "5", "HTTP_CONTENT_LENGTH": "5",
                        "CONTENT_TYPE": "a/b", "HTTP_CONTENT_TYPE": "a/b"})  # fmt: skip
    assert "HTTP_CONTENT_LENGTH" not in env and "HTTP_CONTENT_TYPE" not in env
    assert env["CONTENT_LENGTH"] == "5" and env["CONTENT_TYPE"] == "a/b"


@spec("H-9")
def test_magic_uwsgi_vars_are_removed() -> None:
    env = environ_from({name: "/tmp/evil.py" for name in MAGIC_VARS} | {"UWSGI_OTHER": "kept"})
    assert not any(name in env for name in MAGIC_VARS)
    assert env["UWSGI_OTHER"] == "kept"  # data, never acted on


@pytest.mark.parametrize(
    ("status", "parsed"), [("200 OK", (200, "OK")), ("404 Not Found", (404, "Not Found")),
                           ("599", (599, "")), ("200 ", (200, ""))],
)  # fmt: skip
def test_status_accepted(status: str, parsed: tuple[int, str]) -> None:
    assert status_code(status) == parsed


@pytest.mark.parametrize(
    "status", ["200OK", "20 OK", "2000 OK", "099 x", "200 OK\r\nX: y", "200 O\x00K", b"200 OK", 200]
)
def test_status_refused(status: object) -> None:
    with pytest.raises(HeadersError):
        status_code(status)


@pytest.mark.parametrize(
    "headers",
    [
        [("X-A", "b\r\nSet-Cookie: x=1")],
        [("X-A", "b\nc")],
        [("X-A", "nul\x00")],
        [("Bad Name", "v")],
        [("X:A", "v")],
        [("", "v")],
        [("X-A", "\u20ac")],
        [("X-A",)],
        [["X-A", "v"]],
        [("X-A", 5)],
        (("X-A", "v"),),
    ],
)
def test_headers_refused(headers: object) -> None:
    with pytest.raises(HeadersError):
        check_headers(headers)
    with pytest.raises(HeadersError):  # and still refused when asked again (no caching of bad)
        check_headers(headers)


def test_headers_accepted_and_cached() -> None:
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("X-Tab", "a\tb")]
    check_headers(headers)
    check_headers(headers)


def test_start_response_rules() -> None:
    start = StartResponse(lambda data: None)
    start("200 OK", [("Content-Length", "5")])
    assert start.head is not None and start.head.content_length == 5
    with pytest.raises(AssertionError):
        start("200 OK", [])  # twice without exc_info
    try:
        raise KeyError("x")
    except KeyError:
        start("500 Oops", [], sys.exc_info())  # replaces the head before it is sent
    assert start.head.status == 500
    start.head_sent = True
    try:
        raise KeyError("late")
    except KeyError:
        with pytest.raises(KeyError, match="late"):  # too late: re-raised
            start("500 Oops", [], sys.exc_info())


@pytest.mark.parametrize("value", ["-1", "1e3", "5, 5", " 5", "99999999999999999999"])
def test_invalid_content_length_header_refused(value: str) -> None:
    with pytest.raises(HeadersError):
        StartResponse(lambda data: None)("200 OK", [("Content-Length", value)])


def test_file_wrapper() -> None:
    raw = io.BytesIO(b"x" * 2500)
    wrapper = FileWrapper(raw, 1000)
    assert [len(b) for b in wrapper] == [1000, 1000, 500]
    wrapper.close()
    assert raw.closed


def test_cancel_flag_is_event_like() -> None:
    flag = CancelFlag()
    assert not flag.is_set() and flag.wait(0.01) is False and not flag.fired
    threading.Timer(0.05, flag.set).start()
    assert flag.wait(5) is True and flag.is_set() and flag.fired


def wait_in_a_crowd(waiters: int, hang_guard: float) -> list[bool | None]:
    """Start ``waiters`` threads on one CancelFlag at once, set it, and return what each
    wait() returned (None: still waiting after ``hang_guard`` seconds)."""
    flag = CancelFlag()
    start = threading.Barrier(waiters + 1)
    entered = [False] * waiters
    results: list[bool | None] = [None] * waiters

    def wait(index: int) -> None:
        start.wait()
        entered[index] = True
        results[index] = flag.wait(60)

    threads = [threading.Thread(target=wait, args=(i,), daemon=True) for i in range(waiters)]
    for thread in threads:
        thread.start()
    start.wait()
    while not all(entered):
        time.sleep(0)
    flag.set()
    deadline = time.monotonic() + hang_guard
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return results


def test_cancel_flag_wakes_every_waiter_of_a_crowd() -> None:
    """Many threads start waiting at once, then the flag is set: every one of them returns.

    The threads are switched as often as the interpreter allows, so that some of them meet
    inside wait() while the flag has no condition yet (where a wake-up was once lost). The
    hang guard only catches a lost wake-up: a woken waiter returns at once."""
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for _ in range(200):
            assert wait_in_a_crowd(16, hang_guard=10.0) == [True] * 16, "a waiter missed set()"
    finally:
        sys.setswitchinterval(switch)


# ---------------------------------------------------------------- wsgi.input


def fed_input(
    *chunks: bytes, eof: bool = True, timeout: float = 5.0
) -> tuple[InputStream, list[int]]:
    consumed: list[int] = []
    stream = InputStream(consumed.append, timeout)
    for chunk in chunks:
        stream.feed(chunk)
    if eof:
        stream.feed_eof()
    return stream, consumed


def test_input_read_sizes_and_backpressure_reports() -> None:
    stream, consumed = fed_input(b"hello ", b"wor", b"ld\nsecond line\n")
    assert stream.read(3) == b"hel"
    assert stream.readline() == b"lo world\n"
    assert stream.read() == b"second line\n"
    assert stream.read() == b"" and stream.read(10) == b""
    assert sum(consumed) == len(b"hello world\nsecond line\n")


def test_input_iteration_and_readlines() -> None:
    stream, _ = fed_input(b"a\nb", b"\nc")
    assert list(stream) == [b"a\n", b"b\n", b"c"]
    stream, _ = fed_input(b"a\nb\nc\n")
    assert stream.readlines() == [b"a\n", b"b\n", b"c\n"]
    stream, _ = fed_input(b"abcdef\n")
    assert stream.readline(3) == b"abc"


def test_input_blocks_until_data_arrives() -> None:
    stream, _ = fed_input(eof=False)
    threading.Timer(0.05, lambda: (stream.feed(b"late"), stream.feed_eof())).start()
    started = time.monotonic()
    assert stream.read() == b"late"
    assert time.monotonic() - started >= 0.04


def test_input_fails_when_the_client_goes_away() -> None:
    stream, _ = fed_input(b"part", eof=False)
    threading.Timer(0.05, stream.fail, ("the client reset the stream",)).start()
    assert stream.read(4) == b"part"
    with pytest.raises(ClientDisconnected, match="reset"):
        stream.read(1)


@spec("L-4")
def test_input_idle_timeout() -> None:
    stream, _ = fed_input(eof=False, timeout=0.1)
    with pytest.raises(ClientDisconnected, match="no request body bytes"):
        stream.read()
