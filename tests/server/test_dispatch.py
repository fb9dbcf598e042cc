"""The application thread pool (server/dispatch.py): threads are woken only when a request
would otherwise find none awake, and no request waits for a thread while one is parked."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

from muxwsgi.server.dispatch import AppRunner
from muxwsgi.server.exchange import EMPTY_INPUT, Exchange, call_now
from muxwsgi.server.wsgi import ResponseHead

RELEASE = threading.Event()


def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    if environ["PATH_INFO"] == "/block":
        RELEASE.wait(30)
    start_response("200 OK", [("Content-Length", "0")])
    return [b""]


class Answers:
    """A sink that lives on the application thread: it files each answered path."""

    tls_environ = None

    def __init__(self) -> None:
        self.paths: queue.SimpleQueue[str] = queue.SimpleQueue()

    def respond(self, exchange: Exchange, head: ResponseHead, body: bytes) -> None:
        self.paths.put(exchange.environ["PATH_INFO"])

    def respond_now(self, exchange: Exchange, head: ResponseHead, body: bytes) -> bool:
        return False

    def send_head(self, exchange: Exchange, head: ResponseHead) -> None:
        raise AssertionError("a list body is answered whole")

    def send_chunk(self, exchange: Exchange, chunk: bytes) -> None:
        raise AssertionError("a list body is answered whole")

    def end_response(self, exchange: Exchange) -> None:
        raise AssertionError("a list body is answered whole")

    def abort_response(self, exchange: Exchange, reason: str) -> None:
        raise AssertionError(reason)

    def done(self, exchange: Exchange) -> None:
        raise AssertionError("respond ends the exchange")


@pytest.fixture
def runner() -> Iterator[AppRunner]:
    RELEASE.clear()
    loop = asyncio.new_event_loop()
    runner = AppRunner(app, loop, threads=2, send_buffer_size=4096, multiprocess=False)
    yield runner
    RELEASE.set()
    runner.stop(5.0)
    loop.close()


def request(runner: AppRunner, answers: Answers, path: str) -> Exchange:
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path}
    return Exchange(runner, answers, 0, environ, EMPTY_INPUT, None, "test", post=call_now)


def wait_parked(runner: AppRunner, count: int) -> None:
    deadline = time.monotonic() + 10
    while len(runner._parked) < count:
        assert time.monotonic() < deadline, "the threads never parked"
        time.sleep(0.001)


def test_a_request_behind_a_blocked_call_gets_a_thread_of_its_own(runner: AppRunner) -> None:
    """Both threads parked; two requests queued at once wake one thread, which takes the
    first (it blocks). The second must not wait for it: the thread that took the first and
    left the second queued wakes the other, with no further request to do it."""
    wait_parked(runner, 2)
    answers = Answers()
    runner.submit(request(runner, answers, "/block"))
    runner.submit(request(runner, answers, "/fast"))
    assert answers.paths.get(timeout=10) == "/fast"
    assert answers.paths.empty()  # /block is still in its call
    RELEASE.set()
    assert answers.paths.get(timeout=10) == "/block"


def test_no_request_is_lost_between_a_submit_and_a_thread_parking(runner: AppRunner) -> None:
    """Requests submitted while threads finish calls and park, at every spacing: each one is
    answered (a lost wake-up would leave one queued with every thread parked)."""
    answers = Answers()
    total = 0
    for pause in (0.0, 0.00001, 0.0001, 0.001):
        for _ in range(100):
            runner.submit(request(runner, answers, "/fast"))
            total += 1
            if pause:
                time.sleep(pause)
    for _ in range(total):
        assert answers.paths.get(timeout=10) == "/fast"
