"""Request bodies: read by the event loop before the application runs, or streamed on an upload
slot (server/bodies.py). ``wsgi.input`` behaves the same either way, over mux, HTTP/1.1 and
classic uwsgi; the upload slots' bookkeeping is tested without I/O."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from collections.abc import Iterator

import pytest

from benchmarks.stall import request_head
from muxwsgi import ErrorCode
from muxwsgi.server.bodies import RequestBody, UploadSlots
from muxwsgi.server.exchange import ClientDisconnected

from ..muxclient import RawMux, Reply, vars_for
from ..servers import ServerProcess, start

PROTOCOLS = ("mux", "http", "uwsgi")
BOUND = 64 * 1024
#: Bodies read in full before the application is called, and bodies streamed to it.
SIZES = {"buffered": 1000, "exactly-the-bound": BOUND, "streamed": 3 * BOUND + 123}


# ---------------------------------------------------------------- upload slots, without I/O


def test_slots_start_at_once_while_free_and_queue_past_the_budget() -> None:
    slots = UploadSlots(total=2, per_connection=2)
    started: list[str] = []
    assert slots.acquire("a", lambda: started.append("a1")) is None
    assert slots.acquire("b", lambda: started.append("b1")) is None
    ticket = slots.acquire("c", lambda: started.append("c1"))
    assert ticket is not None and started == ["a1", "b1"] and slots.in_use == 2
    slots.release("a")
    assert started == ["a1", "b1", "c1"] and slots.in_use == 2


def test_a_connection_at_its_share_waits_while_others_go_first() -> None:
    slots = UploadSlots(total=4, per_connection=2)
    started: list[str] = []
    for name in ("a1", "a2", "a3", "a4"):
        slots.acquire("a", lambda n=name: started.append(n))
    assert started == ["a1", "a2"]
    slots.acquire("b", lambda: started.append("b1"))  # a's queued requests do not block b
    assert started == ["a1", "a2", "b1"] and slots.in_use == 3
    slots.release("a")
    assert started == ["a1", "a2", "b1", "a3"]  # a's next, in order
    slots.release("b")
    # a4 waits while a holds its share, though half the budget is free.
    assert started == ["a1", "a2", "b1", "a3"] and slots.in_use == 2
    slots.release("a")
    assert started[-1] == "a4" and slots.in_use == 2


def test_a_withdrawn_request_never_starts() -> None:
    slots = UploadSlots(total=1, per_connection=1)
    started: list[str] = []
    slots.acquire("a", lambda: started.append("a"))
    ticket = slots.acquire("b", lambda: started.append("b"))
    slots.acquire("c", lambda: started.append("c"))
    assert ticket is not None
    slots.withdraw(ticket)
    slots.release("a")
    assert started == ["a", "c"] and slots.in_use == 1


def test_a_start_that_releases_at_once_hands_the_slot_on() -> None:
    slots = UploadSlots(total=1, per_connection=1)
    started: list[str] = []

    def start_and_finish() -> None:  # the request turned out to be gone: slot given back
        started.append("b")
        slots.release("b")

    slots.acquire("a", lambda: started.append("a"))
    slots.acquire("b", start_and_finish)
    slots.acquire("c", lambda: started.append("c"))
    slots.release("a")
    assert started == ["a", "b", "c"] and slots.in_use == 1


def test_a_body_streams_once_it_outgrows_the_bound() -> None:
    small, large, unknown = RequestBody(10, 100), RequestBody(1000, 100), RequestBody(None, 100)
    for body in (small, large, unknown):
        body.feed(b"x" * 10)
    assert not (small.outgrown or large.outgrown or unknown.outgrown)
    large.feed(b"x" * 90)
    unknown.feed(b"x" * 90)
    assert large.outgrown and unknown.outgrown
    small.end()
    assert small.buffered_input().read() == b"x" * 10


def test_a_streamed_body_starts_with_what_was_buffered() -> None:
    body = RequestBody(None, 4)
    body.feed(b"ab")
    body.feed(b"cd\nef")
    consumed: list[int] = []
    stream = body.stream_input(consumed.append, timeout=5)
    body.feed(b"gh\n")
    body.end()
    assert stream.readline() == b"abcd\n" and list(stream) == [b"efgh\n"]
    assert sum(consumed) == body.size == 10


def test_a_streamed_body_that_fails_raises_in_the_reader() -> None:
    body = RequestBody(100, 4)
    body.feed(b"abcde")
    stream = body.stream_input(lambda size: None, timeout=5)
    body.fail("gone")
    assert stream.read(5) == b"abcde"
    with pytest.raises(ClientDisconnected):
        stream.read(1)


# ---------------------------------------------------------------- wsgi.input over the wire


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # The validated app: wsgiref's validator checks wsgi.input's use on both sides.
    srv = start("tests.server.apps:validated_app", "--body-buffer-size", str(BOUND),
                "--limit-post", "1m", "--initial-window-size", "256k",
                log_dir=tmp_path_factory.mktemp("bodies"))  # fmt: skip
    yield srv
    srv.stop()


def post(server: ServerProcess, protocol: str, path: str, body: bytes) -> tuple[int, bytes]:
    """One POST on a fresh connection: (status, body)."""
    if protocol == "mux":
        client = RawMux(server.address)
        try:
            reply = client.request("POST", path, body)
        finally:
            client.close()
        return reply.status, reply.body
    with socket.create_connection(server.address, timeout=30) as sock:
        sock.sendall(request_head(protocol, path, len(body)) + body)
        answer = b"".join(iter(lambda: sock.recv(65536), b""))
    head_bytes, _, content = answer.partition(b"\r\n\r\n")
    return int(head_bytes.split(b" ", 2)[1]), content


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_wsgi_input_reads_the_same_buffered_or_streamed(
    server: ServerProcess, protocol: str, size: str
) -> None:
    """read(n) to the end, readline and iteration, read() of everything, and CONTENT_LENGTH as
    sent: whether the body was read before the application or streams to it."""
    length = SIZES[size]
    body = os.urandom(length)
    status, echoed = post(server, protocol, "/echo", body)  # read(65536) until b""
    assert status == 200 and echoed == body
    status, digest = post(server, protocol, "/sha256", body)  # read(8192) pieces
    assert (status, digest) == (200, f"{length} {hashlib.sha256(body).hexdigest()}".encode())
    lines = b"".join(b"line %d\n" % i for i in range(length // 8))
    status, joined = post(server, protocol, "/echo-lines", lines)  # iteration: readline
    assert status == 200 and joined == b"".join(b"<line %d>" % i for i in range(length // 8))
    status, environ = post(server, protocol, "/environ", body)
    assert status == 200 and json.loads(environ)["CONTENT_LENGTH"] == str(length)


LIMIT = 1 << 20


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_declared_body_over_limit_post_is_refused(server: ServerProcess, protocol: str) -> None:
    """413 from the head alone: no body byte is read."""
    if protocol == "mux":
        client = RawMux(server.address)
        try:
            sid = client.conn.send_request(
                vars_for("POST", "/echo", CONTENT_LENGTH=str(LIMIT + 1)), end_stream=False
            )
            client.replies[sid] = Reply(sid)
            client.flush()
            assert client.wait(sid)[0].status == 413
        finally:
            client.close()
        return
    with socket.create_connection(server.address, timeout=30) as sock:
        sock.sendall(request_head(protocol, "/echo", LIMIT + 1))
        answer = b"".join(iter(lambda: sock.recv(65536), b""))
    assert answer.split(b" ", 2)[1] == b"413", answer[:200]


def test_a_mux_body_of_unknown_length_over_limit_post_is_reset(server: ServerProcess) -> None:
    client = RawMux(server.address)
    try:
        reply = client.request("POST", "/echo", b"x" * (LIMIT + 65536), CONTENT_LENGTH="")
        assert reply.reset == ErrorCode.CANCEL and reply.status == 0
        assert client.request("GET", "/hello").body == b"Hello, World!"
    finally:
        client.close()


def test_a_chunked_body_over_limit_post_is_cut(server: ServerProcess) -> None:
    """No length to check up front. Past the bound the application reads the body as it
    arrives; once it passes the limit the connection is closed (mid-request, no status can
    be sent after what the application may have written) and its read raises."""
    chunk = b"%x\r\n%b\r\n" % (65536, b"x" * 65536)
    with socket.create_connection(server.address, timeout=30) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        try:
            for _ in range(LIMIT // 65536 + 2):
                sock.sendall(chunk)
        except OSError:
            pass  # closed under our feet: the answer was sent first
        try:
            answer = b"".join(iter(lambda: sock.recv(65536), b""))
        except ConnectionResetError:
            answer = b""
    assert b" 200 " not in answer, answer[:200]


@pytest.mark.parametrize("size", ["buffered", "streamed"])
def test_expect_100_continue_is_sent_by_the_server_before_it_reads(
    server: ServerProcess, size: str
) -> None:
    """The client waits for "100 Continue" before it sends the body: the server sends it when
    it starts reading that body (before the application runs, which reads it later)."""
    body = os.urandom(SIZES[size])
    with socket.create_connection(server.address, timeout=30) as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n"
            b"Expect: 100-continue\r\nConnection: close\r\n\r\n" % len(body)
        )
        interim = b""
        while b"\r\n\r\n" not in interim:
            chunk = sock.recv(100)
            assert chunk, interim
            interim += chunk
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"), interim
        sock.sendall(body)
        answer = interim.partition(b"\r\n\r\n")[2] + b"".join(iter(lambda: sock.recv(65536), b""))
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(body)


def test_pipelined_bodies_are_answered_in_order(server: ServerProcess) -> None:
    """A request's body behind another request is buffered while that one runs; each is
    answered in turn, the streamed one included."""
    bodies = [os.urandom(n) for n in (10, 3 * BOUND, 0, 500)]
    requests = b"".join(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%b" % (len(b), b)
        for b in bodies
    )
    with socket.create_connection(server.address, timeout=30) as sock:
        sock.sendall(requests + b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        answer = b"".join(iter(lambda: sock.recv(65536), b""))
    assert answer.count(b"HTTP/1.1 200 OK") == 5
    positions = [answer.index(b) for b in bodies if b] + [answer.index(b"Hello, World!")]
    assert positions == sorted(positions)


# ---------------------------------------------------------------- a mux connection's window


@pytest.fixture(scope="module")
def small_windows(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Bodies up to 128 KiB are buffered, and withhold their window until the application is
    done with them; the connection window holds two of them."""
    srv = start("tests.server.apps:app", "--body-buffer-size", "128k", "--body-timeout", "300",
                "--initial-window-size", "128k", "--connection-window-size", "256k",
                log_dir=tmp_path_factory.mktemp("windows"))  # fmt: skip
    yield srv
    srv.stop()


def test_interleaved_uploads_that_fill_the_connection_window_do_not_stall(
    small_windows: ServerProcess,
) -> None:
    """Four 100 KB uploads sent a slice of each in turn: the buffered parts fill the
    connection window before any body is complete. The newest are refused (REFUSED_STREAM:
    never processed) so that the others complete; sent again, they complete too. Without
    that, no body would ever complete and the client could send nothing more."""
    bodies = [os.urandom(100_000) for _ in range(4)]
    client = RawMux(small_windows.address)
    try:
        conn = client.conn
        sids = [conn.send_request(vars_for("POST", "/echo", b), end_stream=False) for b in bodies]
        for sid in sids:
            client.replies[sid] = Reply(sid)
        client.pump(1.0)  # the server's settings
        sent = dict.fromkeys(sids, 0)
        deadline = time.monotonic() + 60  # a hang guard: body-timeout is 300 s
        while any(sent[s] < len(b) for s, b in zip(sids, bodies, strict=True)):
            progress = False
            for sid, body in zip(sids, bodies, strict=True):
                piece = min(20_000, len(body) - sent[sid], conn.outbound_window(sid))
                if piece > 0 and conn.is_open(sid):
                    end = sent[sid] + piece == len(body)
                    conn.send_data(sid, body[sent[sid] : sent[sid] + piece], end_stream=end)
                    sent[sid] += piece
                    progress = True
                elif not conn.is_open(sid):
                    sent[sid] = len(body)  # refused: nothing more to send on it
            client.flush()
            if not progress:
                assert time.monotonic() < deadline, f"stalled with {sent} sent"
                assert client.pump(1.0), "the server closed the connection"
        replies = client.wait(*sids, timeout=60)
        refused = [r for r in replies if r.reset == ErrorCode.REFUSED_STREAM]
        answered = [r for r in replies if r.status == 200]
        assert refused and answered and len(refused) + len(answered) == 4, replies
        for reply in answered:
            assert reply.body == bodies[sids.index(reply.stream_id)]
        for reply in refused:  # safe to send again, one at a time
            body = bodies[sids.index(reply.stream_id)]
            assert client.request("POST", "/echo", body).body == body
    finally:
        client.close()
