"""Run WSGI calls on a fixed pool of threads; bring their results back to the loop in batches.

Why batches: handing each request to a thread with ``loop.run_in_executor`` and waking the loop
once per result costs a future, a callback and a self-pipe write per request, several times
the rest of a small request's server CPU. Here application threads take work from a
``SimpleQueue`` (a C queue) and append their results to a deque; the loop is woken once per
*batch* (the first result schedules a drain; the rest ride along), handles every result, and
writes each connection's output once.

The pool size bounds the number of *running* application calls, whatever the number of open
streams: a stream reset by the client frees its protocol slot at once, but its call keeps its
thread until it returns (the lesson of HTTP/2 "rapid reset", PROTOCOL.md [C-3]).

Why not wake a thread per request: under the GIL, threads that run Python take turns, so a
thread woken for a short call mostly waits for the GIL that another one holds, and each such
wait is a futex sleep and wake-up on both sides. So a thread that returns from a call takes
the next request itself, and a parked thread is woken only when a request would otherwise
have no thread awake to take it: at submit, when none is awake between calls, and when the
last awake thread takes a request and leaves others queued (its call may block). A request
thus waits for a thread only while every thread is in a call, as with a thread per request.
Behind nginx with keep-alive (hello, 2 workers x 8 threads), this took server CPU per request
from 106-115 to 69-73 µs on the pure-Python build (benchmarks/README.md).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Final, TypeVarTuple

from ._types import WSGIApplication
from .exchange import Exchange
from .interfaces import Flushable
from .logs import AccessLog
from .wsgi import ErrorStream, constant_environ

__all__ = ("AppRunner",)

log = logging.getLogger("muxwsgi.error")
_Args = TypeVarTuple("_Args")
#: post_quiet results that wake the loop after all (one wake-up per this many requests).
_QUIET_BATCH: Final = 64


class AppRunner:
    """A worker's application thread pool and its channel back to the event loop.

    Loop thread: :meth:`submit` exchanges; add protocols with output to :attr:`dirty` while
    handling a result. Application threads: :meth:`post` results (a callable and its
    arguments, run on the loop in order).
    """

    def __init__(
        self,
        app: WSGIApplication,
        loop: asyncio.AbstractEventLoop,
        *,
        threads: int,
        send_buffer_size: int,
        multiprocess: bool,
        server_name: str = "localhost",
        server_port: str = "",
        request_id_header: str = "X-Request-ID",
        access_log: AccessLog | None = None,
    ) -> None:
        self.app = app
        self.environ_constants = constant_environ(errors=ErrorStream(), multiprocess=multiprocess)
        self.send_buffer_size = send_buffer_size
        #: The environ key of the incoming request-id header (X-Request-ID -> HTTP_X_REQUEST_ID).
        self.request_id_var = "HTTP_" + request_id_header.upper().replace("-", "_")
        # Generated ids: a random per-worker prefix and a counter. Unique enough to follow a
        # request through logs, and without a syscall per request (os.urandom would be one).
        self._id_prefix = os.urandom(6).hex() + "-"
        self._id_counter = itertools.count(1)
        self.access_log = access_log if access_log is not None and access_log.enabled else None
        self.multiprocess = multiprocess
        self.server_name = server_name
        self.server_port = server_port
        self._loop = loop
        #: Exchanges waiting for a thread (None: a thread's order to exit). With the counts
        #: below, guarded by _mutex: a thread parks and is woken in one step under it.
        self._jobs: deque[Exchange | None] = deque()
        self._mutex = threading.Lock()
        #: Threads awake and not in a call (in _next): each takes the next request without a
        #: wake-up.
        self._searching = 0
        #: Parked threads' indexes, the last parked on top (its stack is likely still cached).
        self._parked: list[int] = []
        #: Each thread's own lock, held while it is parked; releasing it wakes the thread.
        self._wakers = [threading.Lock() for _ in range(threads)]
        for waker in self._wakers:
            waker.acquire()
        self._results: deque[tuple[Callable[..., None], tuple[object, ...]]] = deque()
        self._wakeup_pending = False
        #: Protocols that queued output while results were handled; flushed once per batch.
        self.dirty: set[Flushable] = set()
        #: Exchanges submitted and not yet done (queued or running).
        self.active = 0
        self.requests = 0
        self.exceptions = 0
        # Per application thread: when its current call started (0.0: idle), the exchange,
        # and the total time spent in calls. One list entry per thread, so no locking.
        self._starts = [0.0] * threads
        self._current: list[Exchange | None] = [None] * threads
        self._busy_time = [0.0] * threads
        self._threads = [
            threading.Thread(target=self._work, args=(i,), name=f"muxwsgi-app-{i}", daemon=True)
            for i in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    # ---------------------------------------------------------------- loop side

    def submit(self, exchange: Exchange) -> None:
        """Queue ``exchange`` for an application thread; wake a parked one only if no thread
        is awake between calls to take it (see the module's docstring)."""
        self.active += 1
        with self._mutex:
            self._jobs.append(exchange)
            if not self._searching and self._parked:
                self._wake_one()

    def _wake_one(self) -> None:
        """Wake the parked thread on top (holding _mutex, with a parked thread)."""
        self._searching += 1
        self._wakers[self._parked.pop()].release()

    def withdraw_cancelled(self) -> None:
        """Take back the queued exchanges whose streams are gone (e.g. refused after a
        harakiri) and end them on the loop now, as a thread would on taking them. Behind a
        stuck call they would never reach a thread, and would hold :attr:`active` (and so the
        worker's exit) until the graceful timeout. Loop thread."""
        jobs = self._jobs  # changed in place: parked threads hold this very deque
        with self._mutex:
            gone = [job for job in jobs if job is not None and job.cancelled.fired]
            if gone:
                kept = [job for job in jobs if job is None or not job.cancelled.fired]
                jobs.clear()
                jobs.extend(kept)
        for exchange in gone:
            exchange.sink.done(exchange)

    def new_request_id(self) -> str:
        # hex() rather than an f-string's ":x": compiled, the format spec is a generic
        # format() call, 390 against 150 ns (pure Python, 160 against 150).
        return self._id_prefix + hex(next(self._id_counter))[2:]

    def done(self, exchange: Exchange) -> None:
        """An exchange finished on its thread (called by the protocols' ``respond`` and
        ``done``, see :class:`~muxwsgi.server.interfaces.Sink`)."""
        self.active -= 1
        self.requests += 1
        if self.access_log is not None and exchange.started:
            env = exchange.environ
            end = exchange.finished or time.monotonic()
            self.access_log.log(
                environ=env,
                status=exchange.status,
                size=exchange.sent_bytes,
                duration=end - exchange.started,
                protocol=exchange.protocol_name,
                stream_id=exchange.key,
                request_id=env.get("muxwsgi.request_id", "-"),
            )

    def drain(self) -> None:
        """Handle the results waiting without a wake-up (see post_quiet); the worker's tick
        calls this, so none waits more than about a second."""
        if self._results:
            self._drain()

    def _drain(self) -> None:
        # Clear the flag first: a result appended while we drain either gets popped below or
        # schedules a new drain; none is left behind (see post()).
        self._wakeup_pending = False
        results = self._results
        popleft = results.popleft
        while results:
            func, args = popleft()
            try:
                func(*args)
            except Exception:
                log.exception("internal error while handling an application result")
        dirty = self.dirty
        while dirty:
            dirty.pop().flush()

    def oldest_start(self) -> float:
        """When the longest-running application call started (monotonic); 0.0 if none."""
        running = [start for start in self._starts if start]
        return min(running) if running else 0.0

    def stuck(self, now: float, limit: float) -> list[Exchange]:
        """The exchanges whose application call has run longer than ``limit`` seconds."""
        return [
            exchange
            for start, exchange in zip(self._starts, self._current, strict=True)
            if start and now - start > limit and exchange is not None
        ]

    def response_time(self) -> float:
        """Seconds spent in application calls so far, all threads together."""
        return sum(self._busy_time)

    def stop(self, timeout: float | None = None) -> None:
        """Ask every thread to exit once the queue is empty, and wait up to ``timeout``."""
        with self._mutex:
            self._jobs.extend([None] * len(self._threads))
            while self._parked:
                self._wake_one()
        for thread in self._threads:
            thread.join(timeout)

    # ---------------------------------------------------------------- application threads

    def post(self, func: Callable[[*_Args], None], /, *args: *_Args) -> None:
        """Run ``func(*args)`` on the loop thread, in order with the other posted calls."""
        self._results.append((func, args))
        if not self._wakeup_pending:
            self._wakeup_pending = True
            try:
                self._loop.call_soon_threadsafe(self._drain)
            except RuntimeError:  # the loop is closed: the worker is exiting
                pass

    def post_quiet(self, func: Callable[[*_Args], None], /, *args: *_Args) -> None:
        """Like :meth:`post`, but without waking the loop: for bookkeeping nobody waits for.

        It runs with the next batch, once _QUIET_BATCH are waiting, or at the latest on the
        worker's next tick. A wake-up is a system call on each side (an eventfd write, then
        the loop's read), a large share of a request that needs nothing else from the loop.
        """
        results = self._results
        results.append((func, args))
        if len(results) >= _QUIET_BATCH and not self._wakeup_pending:
            # Bounded: a tick handling a second's worth at once would stall the loop.
            self._wakeup_pending = True
            try:
                self._loop.call_soon_threadsafe(self._drain)
            except RuntimeError:  # the loop is closed: the worker is exiting
                pass

    def _next(self, index: int) -> Exchange | None:
        """The next request for thread ``index`` (starting, or back from a call); parks the
        thread while there is none."""
        jobs, mutex, waker = self._jobs, self._mutex, self._wakers[index]
        mutex.acquire()
        self._searching += 1
        while not jobs:
            self._searching -= 1
            self._parked.append(index)
            mutex.release()
            waker.acquire()  # until _wake_one, which counted this thread as searching again
            mutex.acquire()
        exchange = jobs.popleft()
        self._searching -= 1
        if jobs and not self._searching and self._parked:
            # The others queued would wait for this call, which may block: one more thread.
            self._wake_one()
        mutex.release()
        return exchange

    def _work(self, index: int) -> None:
        starts, current, busy = self._starts, self._current, self._busy_time
        clock = time.monotonic
        while True:
            exchange = self._next(index)
            if exchange is None:
                return
            current[index] = exchange
            starts[index] = started = clock()
            try:
                exchange.run()
            except BaseException:
                log.exception("internal error in an application thread")
            finally:
                busy[index] += clock() - started
                starts[index] = 0.0
                current[index] = None
                # Not kept (a body with it) while this thread waits for its next request.
                exchange = None
