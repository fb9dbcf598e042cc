"""Random frame sequences against a live server (hypothesis): whatever arrives, the worker
survives, logs no internal error, keeps its memory flat and keeps serving a healthy client.

Each example is a fresh connection: the opening, then random frames, some well formed
(requests for real routes, bodies, resets, window updates, pings, settings) and some not
(unknown types, random flags and stream ids, random payloads), then a PING as a barrier: once
its ACK (or the close) arrives, the server has handled everything before it. Bounded in CI;
for a long run::

    HYPOTHESIS_PROFILE=long MUXWSGI_HOSTILE_LONG=1 pytest tests/hostile/test_fuzz.py
"""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Iterator

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from muxwsgi import FrameType
from muxwsgi._frames import split_frames

from ..core.helpers import frame, preface
from ..muxclient import vars_for
from ..servers import ServerProcess, start
from .kit import Healthy, get, log_problems, rss_kib

pytestmark = pytest.mark.slow

LONG = os.environ.get("MUXWSGI_HOSTILE_LONG") == "1"
EXAMPLES = 5000 if LONG else 500
BARRIER = b"barrier!"
PATHS = ["/hello", "/echo", "/stream?n=3&size=100", "/input-error", "/environ", "/raise",
         "/raise-midstream", "/held?n=50&size=1000", "/nowhere"]  # fmt: skip

stream_ids = st.one_of(st.sampled_from([1, 3, 5, 7, 9]), st.integers(0, 2**32 - 1))
u32 = st.integers(0, 2**32 - 1)


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["headers", "data", "reset", "window", "ping", "settings",
                                 "goaway", "raw", "raw"]))  # fmt: skip
    sid = draw(stream_ids)
    flags = draw(st.sampled_from([0, 1, 0xFF]))
    if kind == "headers":
        path = draw(st.sampled_from(PATHS))
        extra = draw(st.dictionaries(st.sampled_from(["CONTENT_LENGTH", "HTTP_X", "UWSGI_FILE",
                                                      "MUXWSGI_TIMEOUT_MS", ""]),
                                     st.sampled_from(["", "0", "5", "1e3", "a\rb", "99"]),
                                     max_size=2))  # fmt: skip
        payload = msgpack.packb(
            [x for kv in {**vars_for("POST", path), **extra}.items() for x in kv]
        )
        if draw(st.booleans()):
            payload = payload[: draw(st.integers(0, len(payload)))]
        return frame(FrameType.HEADERS, flags, sid, payload)
    if kind == "data":
        return frame(FrameType.DATA, flags, sid, draw(st.binary(max_size=300)))
    if kind == "reset":
        return frame(FrameType.RESET, 0, sid, struct.pack("<I", draw(st.integers(0, 20))))
    if kind == "window":
        return frame(FrameType.WINDOW_UPDATE, 0, draw(st.sampled_from([0, 1, 3])),
                     struct.pack("<I", draw(u32)))  # fmt: skip
    if kind == "ping":
        return frame(
            FrameType.PING,
            draw(st.sampled_from([0, 1])),
            0,
            draw(st.binary(min_size=8, max_size=8)),
        )
    if kind == "settings":
        pairs = draw(st.lists(st.tuples(st.integers(0, 8), u32), max_size=4))
        return frame(FrameType.SETTINGS, 0, 0, b"".join(struct.pack("<HI", *p) for p in pairs))
    if kind == "goaway":
        return frame(FrameType.GOAWAY, 0, 0, struct.pack("<II", draw(u32), draw(u32)))
    ftype = draw(st.integers(0, 255))
    return frame(ftype, flags, sid, draw(st.binary(max_size=64)))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start("tests.hostile.apps:app", "--threads", "8",
                log_dir=tmp_path_factory.mktemp("fuzz"))  # fmt: skip
    yield srv
    srv.stop()


def play(address: tuple[str, int], script: bytes) -> None:
    """Send ``script`` and the barrier PING; read until its ACK or the server's close."""
    ping = frame(FrameType.PING, 0, 0, BARRIER)
    with socket.create_connection(address, timeout=10) as sock:
        try:
            sock.sendall(preface() + frame(FrameType.SETTINGS, 1, 0) + script + ping)
        except OSError:
            return  # closed on us mid-script: an outcome like any other
        received = b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(1 << 16)
            except (ConnectionResetError, TimeoutError):
                return
            if not chunk:
                return
            received += chunk
            found, _ = split_frames(received)
            if any(f.type == FrameType.PING and f.flags & 1 and f.payload == BARRIER
                   for f in found):  # fmt: skip
                return
        raise AssertionError("the server neither answered the barrier PING nor closed")


def test_random_frames(server: ServerProcess) -> None:
    (worker,) = server.worker_pids()
    get(server.address, "/hello")
    rss_before = rss_kib(worker)

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=not LONG)
    @given(st.lists(frames(), max_size=12))
    def run(script: list[bytes]) -> None:
        play(server.address, b"".join(script))

    with Healthy(server.address) as healthy:
        run()
        healthy.check(healthy.ok)
    rss_after = rss_kib(worker)
    print(f"\nhostile-fuzz examples={EXAMPLES} rss_before_kib={rss_before} "
          f"rss_after_kib={rss_after}")  # fmt: skip
    assert server.worker_pids() == [worker]
    assert log_problems(server.log()) == []
    assert rss_after - rss_before < 16 * 1024
