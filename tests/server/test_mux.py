"""The server over a real multiplexed connection (a raw client on the core, real sockets)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import muxwsgi
from muxwsgi import ErrorCode

from ..core.helpers import spec
from ..muxclient import RawMux, Reply
from ..servers import ServerProcess, start, until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log_dir = tmp_path_factory.mktemp("mux")
    # The raw app: several routes break PEP 3333 on purpose, to see what the server does.
    # tests/server/test_validated.py runs the compliant routes under wsgiref's validator.
    srv = start("tests.server.apps:app", "--threads", "16", "--limit-post", "4m",
                log_dir=log_dir)  # fmt: skip
    yield srv
    srv.stop()


@pytest.fixture
def mux(server: ServerProcess) -> Iterator[RawMux]:
    client = RawMux(server.address)
    yield client
    client.close()


def test_hello(mux: RawMux) -> None:
    reply = mux.request("GET", "/hello")
    assert (reply.status, reply.body) == (200, b"Hello, World!")
    assert reply.header("content-length") == "13"


@spec("C-2")
def test_one_hundred_concurrent_streams_and_a_slow_one(mux: RawMux) -> None:
    """A slow stream never delays the others on the same connection."""
    slow = mux.send("GET", "/sleep?s=1.5")
    fast = [mux.send("GET", f"/environ?i={i}") for i in range(99)]
    replies = mux.wait(*fast)
    assert all(r.status == 200 for r in replies)
    assert sorted(json.loads(r.body)["QUERY_STRING"] for r in replies) == sorted(
        f"i={i}" for i in range(99)
    )
    assert not mux.replies[slow].finished  # still sleeping when all the others are done
    assert mux.wait(slow)[0].body == b"slept"


def test_environ_over_mux(mux: RawMux) -> None:
    env = json.loads(mux.request("GET", "/environ?x=1", HTTP_X_THING="v").body)
    assert env["muxwsgi.protocol"] == "mux"
    assert env["HTTP_X_THING"] == "v"
    assert env["QUERY_STRING"] == "x=1"
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["wsgi.input_terminated"] is True


def test_upload_and_echo(mux: RawMux) -> None:
    payload = os.urandom(3 << 20)  # larger than every window: flow control both ways
    reply = mux.request("POST", "/echo", payload)
    assert reply.status == 200
    assert reply.header("x-sha256") == hashlib.sha256(payload).hexdigest()
    assert reply.body == payload


def test_input_read_in_pieces_and_lines(mux: RawMux) -> None:
    body = b"".join(b"line %d\n" % i for i in range(2000))
    assert mux.request("POST", "/sha256", body).body == (
        f"{len(body)} {hashlib.sha256(body).hexdigest()}".encode()
    )
    assert mux.request("POST", "/echo-lines", b"a\nbb\nccc").body == b"<a><bb><ccc>"


def test_streamed_response(mux: RawMux) -> None:
    reply = mux.request("GET", "/stream?n=200&size=1000")
    assert reply.status == 200 and len(reply.body) == 200_000
    assert reply.body[-1000:-994] == b"000199"


def test_write_callable_and_file_wrapper(mux: RawMux) -> None:
    assert mux.request("GET", "/write").body == b"written directly"
    source = (Path(__file__).parent / "apps.py").read_bytes()
    assert mux.request("GET", "/file").body == source


def test_exc_info_replaces_the_head(mux: RawMux) -> None:
    reply = mux.request("GET", "/exc-info")
    assert (reply.status, reply.body) == (503, b"replaced")


@pytest.mark.parametrize("path", ["/raise", "/bad-header", "/bad-status", "/twice"])
def test_application_errors_become_500_and_the_connection_lives(mux: RawMux, path: str) -> None:
    reply = mux.request("GET", path)
    assert reply.status == 500
    assert b"never" not in reply.body
    assert mux.request("GET", "/hello").status == 200


def test_error_mid_stream_resets_the_stream(mux: RawMux) -> None:
    reply = mux.request("GET", "/raise-midstream")
    assert reply.status == 200 and reply.reset == ErrorCode.INTERNAL_ERROR
    assert reply.body == b"first "
    assert mux.request("GET", "/hello").status == 200


def test_content_length_is_honoured(mux: RawMux) -> None:
    short = mux.request("GET", "/short-content-length")
    assert short.body == b"12345" and short.ended  # the excess never reaches the wire
    long = mux.request("GET", "/long-content-length")
    assert long.reset == ErrorCode.INTERNAL_ERROR  # cannot be completed: aborted
    assert mux.request("GET", "/hello").status == 200


def test_iterable_close_is_always_called(mux: RawMux) -> None:
    mux.request("GET", "/closing?tag=normal")
    mux.request("GET", "/raise-midstream")
    closed = json.loads(mux.request("GET", "/closed").body)
    assert "normal" in closed and "midstream" in closed


def test_reset_cancels_the_application(mux: RawMux) -> None:
    sid = mux.send("GET", "/wait-cancel")
    until(lambda: mux.request("GET", "/waiting").body == b"1", what="the call waiting")
    mux.conn.reset_stream(sid, ErrorCode.CANCEL)
    mux.flush()
    cancels = until(lambda: json.loads(mux.request("GET", "/cancels").body), 5)
    assert cancels[-1] is True  # environ["muxwsgi.cancelled"] was set by the RESET


@spec("T-2")
def test_expired_deadline_is_not_run(mux: RawMux) -> None:
    # Fill every thread with slow requests so that the next one waits past its deadline.
    slow = [mux.send("GET", "/sleep?s=0.6") for _ in range(16)]
    late = mux.send("GET", "/hello", MUXWSGI_TIMEOUT_MS="100")
    reply = mux.wait(late)[0]
    assert reply.reset == ErrorCode.DEADLINE_EXCEEDED
    mux.wait(*slow)
    before = time.monotonic()  # one clock for all processes: CLOCK_MONOTONIC
    deadline = float(mux.request("GET", "/deadline", MUXWSGI_TIMEOUT_MS="5000").body)
    # 5 s from when the server read the request: bracketed by our send and our receive (a
    # busy machine widens the bracket; it cannot push the deadline out of it).
    assert before + 5.0 - 0.01 <= deadline <= time.monotonic() + 5.0 + 0.01


def test_body_over_limit_post_is_refused(mux: RawMux) -> None:
    big = b"x" * (5 << 20)
    sid = mux.conn.send_request(
        {"REQUEST_METHOD": "POST", "PATH_INFO": "/echo", "CONTENT_LENGTH": str(len(big))}
    )
    mux.replies[sid] = Reply(sid)
    mux.flush()
    reply = mux.wait(sid)[0]
    assert reply.status == 413
    assert mux.request("GET", "/hello").status == 200


@spec("C-3")
def test_running_calls_are_bounded_by_threads(server: ServerProcess, mux: RawMux) -> None:
    """16 threads: 32 half-second sleeps take two rounds, however many streams are open."""
    started = time.monotonic()
    replies = mux.wait(*[mux.send("GET", "/sleep?s=0.5") for _ in range(32)])
    elapsed = time.monotonic() - started
    assert all(r.status == 200 for r in replies)
    assert elapsed >= 1.0  # two rounds of 0.5 s: never more than 16 at once


def test_head_has_no_body(mux: RawMux) -> None:
    reply = mux.request("HEAD", "/hello")
    assert reply.status == 200 and reply.body == b"" and reply.header("content-length") == "13"


def test_server_keepalive_ping(mux: RawMux) -> None:
    mux.conn.ping(b"keepaliv")
    mux.flush()
    deadline = time.monotonic() + 5
    while not any(type(e) is muxwsgi.PingAcknowledged for e in mux.events):
        assert time.monotonic() < deadline
        mux.pump(1)
