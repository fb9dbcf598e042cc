"""A worker process: one event loop serving the inherited listening sockets, plus a pool of
application threads (:class:`~muxwsgi.server.dispatch.AppRunner`).

The loop thread never runs application code. A tick every second enforces the connections'
timeouts, reports liveness to the master through the scoreboard, and finishes a graceful stop
once nothing is in flight (or the graceful timeout passed).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import ssl
import sys
import time
from collections.abc import Callable

from ._types import WSGIApplication
from .config import Config
from .dispatch import AppRunner
from .logs import AccessLog, reopen_logs
from .protocols.base import ServerContext
from .protocols.detect import DetectProtocol, parse_allow_from
from .protocols.mux import connection_config
from .scoreboard import Balance
from .sockets import Acceptor, Listener

__all__ = ("APP_LOAD_ERROR", "WORKER_BOOT_ERROR", "Worker")

log = logging.getLogger("muxwsgi.error")

#: Exit codes that tell the master not to respawn (gunicorn's convention).
WORKER_BOOT_ERROR = 3
APP_LOAD_ERROR = 4


def new_event_loop(choice: str) -> asyncio.AbstractEventLoop:
    """uvloop when asked for or available ("auto"), else asyncio's default loop."""
    if choice in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise
        else:
            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
            return loop
    return asyncio.new_event_loop()


class Worker:
    """Serve ``listeners`` with the WSGI application from ``load_app`` until told to stop.

    ``on_tick`` (set by the master) is called every second with the worker; it publishes the
    worker's liveness and counters. ``tls`` is the master's TLS context (server/tls.py), made
    before the fork so that every worker shares its session ticket keys; None: no TLS.
    ``balance`` (the worker's figure in the master's scoreboard) makes it accept only while it
    holds no more than its share of the connections (:class:`~.sockets.Acceptor`); None: it
    accepts whatever it can, as ``loop.create_server`` does.
    ``run()`` returns the process exit code.
    """

    def __init__(
        self,
        config: Config,
        listeners: list[Listener],
        load_app: Callable[[], WSGIApplication],
        *,
        on_tick: Callable[[Worker], None] | None = None,
        on_ready: Callable[[], None] | None = None,
        tls: ssl.SSLContext | None = None,
        balance: Balance | None = None,
    ) -> None:
        self.config = config
        self.tls = tls
        self.balance = balance
        self.listeners = listeners
        self.load_app = load_app
        self.on_tick = on_tick
        self.on_ready = on_ready
        self.ctx: ServerContext | None = None
        self.runner: AppRunner | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._servers: list[asyncio.AbstractServer] = []
        self._acceptors: list[Acceptor] = []
        self._stop_deadline: float | None = None
        self._exit_code = 0
        self.started = time.monotonic()
        self.stopping = False
        self._stuck = 0  # application calls abandoned by harakiri

    def run(self) -> int:
        try:
            app = self.load_app()
            if self.config.opentelemetry:  # an optional dependency: imported only when asked for
                from .otel import with_spans

                app = with_spans(app)
        except Exception as exc:
            print(f"muxwsgi: {exc}", file=sys.stderr, flush=True)
            return APP_LOAD_ERROR
        loop = self.loop = new_event_loop(self.config.loop)
        asyncio.set_event_loop(loop)
        runner = self.runner = AppRunner(
            app,
            loop,
            threads=self.config.threads,
            send_buffer_size=self.config.send_buffer_size,
            multiprocess=self.config.workers > 1,
            request_id_header=self.config.request_id_header,
            access_log=AccessLog(self.config),
        )
        ctx = self.ctx = ServerContext(self.config, runner, loop)
        core_config = connection_config(self.config)
        allowed = parse_allow_from(self.config.allow_from)
        tls, tls_only = self.tls, self.config.tls_only

        def protocol() -> DetectProtocol:
            return DetectProtocol(ctx, core_config, allowed, tls=tls, tls_only=tls_only)

        try:
            for listener in self.listeners:
                if self.balance is None:
                    server = loop.run_until_complete(
                        loop.create_server(
                            protocol, sock=listener.sock, backlog=self.config.backlog
                        )
                    )
                    self._servers.append(server)
                    continue
                listener.sock.listen(self.config.backlog)  # as create_server does
                acceptor = Acceptor(
                    loop,
                    listener.sock,
                    protocol,
                    self.balance,
                    lambda: len(ctx.connections),
                    backlog=self.config.backlog,
                )
                acceptor.start()
                self._acceptors.append(acceptor)
        except Exception as exc:
            print(f"muxwsgi: worker cannot serve: {exc}", file=sys.stderr, flush=True)
            return WORKER_BOOT_ERROR
        loop.call_soon(self._started)
        # Everything alive now (the application, its modules, the loop, ours) lives as long
        # as the worker: move it out of the collector's reach. Otherwise every full collection
        # walks all of it, and a request's allocations trigger them often enough that they
        # show up as a large share of a busy worker's profile.
        gc.freeze()
        try:
            loop.run_forever()
        finally:
            self._close(loop)
        return self._exit_code

    def _started(self) -> None:
        """The loop runs: handle signals, then tell the master this worker is ready.

        Not before the loop runs: uvloop learns of a signal only while it runs (its wakeup
        fd is made then), so a stop the master sent between add_signal_handler() and
        run_forever() was recorded and never acted on, and the worker served on until the
        master killed it (with whatever requests it had). Until now a signal has its default
        action: a worker stopped while it boots ends at once, as it did before."""
        loop = self.loop
        assert loop is not None
        for signum, handler in (
            (signal.SIGTERM, self.graceful_stop),
            (signal.SIGINT, self.fast_stop),
            (signal.SIGQUIT, self.fast_stop),
        ):
            loop.add_signal_handler(signum, handler)
        # The master handles these; a worker must not die of them.
        for signum in (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU):
            loop.add_signal_handler(signum, lambda: None)
        loop.add_signal_handler(signal.SIGUSR1, reopen_logs)
        self._tick()
        if self.on_ready is not None:
            self.on_ready()

    # ---------------------------------------------------------------- stopping

    def graceful_stop(self) -> None:
        """Stop accepting, tell every connection to finish (mux: GOAWAY), exit once drained."""
        if self.stopping or self.ctx is None:
            return
        self.stopping = True
        self.ctx.draining = True
        self._stop_deadline = time.monotonic() + self.config.graceful_timeout
        self._stop_accepting()
        for conn in list(self.ctx.connections):
            conn.shutdown()

    def harakiri(self, now: float) -> None:
        """A request outran ``harakiri``: this worker must be replaced, since a Python thread
        cannot be killed. Its stuck streams are aborted; requests not yet started are refused
        (REFUSED_STREAM: safe for the client to retry elsewhere); the rest get a graceful
        stop; then the process exits with the stuck threads in it."""
        if self.stopping or self.runner is None or self.ctx is None:
            return
        stuck = self.runner.stuck(now, self.config.harakiri)
        log.error(
            "harakiri: %d request(s) ran longer than %gs; replacing this worker",
            len(stuck),
            self.config.harakiri,
        )
        self._stuck = len(stuck)
        for exchange in stuck:
            log.error("harakiri: aborting %s", exchange.describe())
            exchange.sink.abort_response(exchange, "harakiri")
            exchange.cancel()
        for conn in list(self.ctx.connections):
            conn.refuse_unstarted()
            conn.flush()
        # Refused requests queued behind a stuck call would count as in flight until the
        # graceful timeout: the worker exits once only the stuck calls remain.
        self.runner.withdraw_cancelled()
        self.graceful_stop()

    def fast_stop(self) -> None:
        if self.loop is not None:
            self.loop.stop()

    def _tick(self) -> None:
        assert self.loop is not None and self.ctx is not None and self.runner is not None
        self.runner.drain()  # results posted without a wake-up (AppRunner.post_quiet)
        now = time.monotonic()
        for conn in list(self.ctx.connections):
            try:
                conn.check_timeouts(now)
            except Exception:
                log.exception("internal error checking a connection's timeouts")
        for acceptor in self._acceptors:
            acceptor.tick()
        if self.on_tick is not None:
            self.on_tick(self)
        if self.stopping:
            # Calls abandoned by harakiri never finish: do not wait for them.
            # Lingering connections are waited for too: stopping the loop would close them
            # with their peers' bytes unread, which sends the RST that lingering avoids.
            busy = self.runner.active > self._stuck or any(
                (c.busy or c.draining_idle or c.lingering)
                for c in self.ctx.connections
                if not self._stuck
            )
            assert self._stop_deadline is not None
            if not busy or now > self._stop_deadline:
                if busy:
                    log.warning(
                        "graceful timeout: abandoning %d requests in flight", self.runner.active
                    )
                self.loop.stop()
                return
        self.loop.call_later(1.0 if not self.stopping else 0.05, self._tick)

    def _close(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.ctx is not None:
            for conn in list(self.ctx.connections):
                conn.close()
        self._stop_accepting()
        try:
            loop.run_until_complete(asyncio.sleep(0))
        finally:
            loop.close()
        if self.runner is not None and not self.runner.active:
            self.runner.stop(timeout=1.0)

    def _stop_accepting(self) -> None:
        for server in self._servers:
            server.close()
        for acceptor in self._acceptors:
            acceptor.close()

    @property
    def pid(self) -> int:
        return os.getpid()
