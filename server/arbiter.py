"""The master process: binds the sockets, forks workers, supervises them, handles signals.

Modelled on gunicorn's arbiter, with uWSGI's and granian's lessons:

- the master binds every socket before forking and never closes them until it exits, so a
  reload never refuses a connection; it never imports the application (workers do, after the
  fork), so a reload re-imports the code; and it never runs an event loop;
- signal handlers only queue the signal and wake the main loop through a pipe; the loop
  dispatches to ``handle_<name>`` methods;
- HUP is a rolling reload: a new worker is started and must report READY before an old one is
  told to drain, one at a time;
- a worker that dies at boot with APP_LOAD_ERROR stops the master at once (respawning cannot
  fix an import error); one that keeps dying right after its start trips the crash-loop guard;
- liveness (heartbeat), per-request timeout (harakiri), recycling (max-requests, lifetime,
  RSS) and the stats endpoint all read the shared scoreboard.
"""

from __future__ import annotations

import errno
import logging
import os
import random
import select
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any

from .scoreboard import Scoreboard, Slot, WorkerStatus
from .sockets import BindError, Listener, bind
from .worker import APP_LOAD_ERROR, WORKER_BOOT_ERROR, Worker

__all__ = ("Arbiter", "run")

log = logging.getLogger("muxwsgi.error")

#: Retire reasons a worker writes into its slot.
RETIRE_REASONS = {1: "max-requests", 2: "max-worker-lifetime", 3: "reload-on-rss", 4: "harakiri"}
#: A worker that dies within this many seconds of its start counts toward the crash-loop guard.
QUICK_DEATH = 5.0
CRASH_LOOP_LIMIT = 5
#: How long a new worker may take to report READY during a rolling reload.
READY_TIMEOUT = 60.0


def _set_title(title: str) -> None:
    try:
        import setproctitle
    except ImportError:
        return
    setproctitle.setproctitle(title)


@dataclass
class WorkerInfo:
    pid: int
    index: int
    generation: int
    spawned: float
    #: Set when the master told it to drain (TERM) or kill (KILL), with the time.
    stopping: float = 0.0
    killed: bool = False


class Arbiter:
    SIGNALS = ("HUP", "TERM", "INT", "QUIT", "TTIN", "TTOU", "USR1", "CHLD")

    def __init__(self, config: Any) -> None:
        self.config = config
        self.listeners: list[Listener] = []
        self.workers: dict[int, WorkerInfo] = {}
        self.target = config.workers
        self.generation = 0
        self.respawns = 0
        self.crashes = 0
        self.exit_code: int | None = None
        self.stopping = False
        self._stop_deadline = 0.0
        self._signals: list[int] = []
        self._wake_r = self._wake_w = -1
        self._reload_queue: list[int] = []  # old workers still to replace in a rolling reload
        self._waiting_for: int | None = None  # the new worker a reload step waits for
        self._waiting_since = 0.0
        self._backoff_until = 0.0
        self.scoreboard = Scoreboard(max(64, 4 * config.workers))
        self.stats_server: Any = None
        self.started = time.time()

    # ---------------------------------------------------------------- main loop

    def run(self) -> int:
        try:
            for spec in self.config.bind:
                listener = bind(
                    spec, backlog=self.config.backlog, unix_mode=self.config.unix_socket_mode
                )
                self.listeners.append(listener)
                log.info("listening on %s", listener.address)
        except BindError as exc:
            print(f"muxwsgi: {exc}", file=sys.stderr, flush=True)
            self._close_listeners()
            return 1
        if self.config.stats:
            from .stats import StatsServer

            try:
                self.stats_server = StatsServer(self, self.config.stats)
                log.info("stats on %s", self.stats_server.listener.address)
            except BindError as exc:
                print(f"muxwsgi: stats: {exc}", file=sys.stderr, flush=True)
                self._close_listeners()
                return 1
        self._write_pid_file()
        self._install_signals()
        _set_title(f"muxwsgi: master [{self.config.app}]")
        log.info("master %d: starting %d worker(s)", os.getpid(), self.target)
        try:
            while self.exit_code is None:
                self._spawn_missing()
                self._wait(1.0)
                self._handle_signals()
                self._reap()
                self._check_workers()
                self._step_reload()
                if self.stopping and (not self.workers or time.monotonic() > self._stop_deadline):
                    self._kill_all()
                    if self.exit_code is None:
                        self.exit_code = 0
        finally:
            self._shutdown()
        return self.exit_code

    def _wait(self, timeout: float) -> None:
        readable = [self._wake_r]
        if self.stats_server is not None:
            readable.append(self.stats_server.fileno())
        try:
            ready, _, _ = select.select(readable, [], [], timeout)
        except InterruptedError:
            return
        if self._wake_r in ready:
            try:
                while os.read(self._wake_r, 4096):
                    pass
            except BlockingIOError:
                pass
        if self.stats_server is not None and self.stats_server.fileno() in ready:
            self.stats_server.handle_one()

    # ---------------------------------------------------------------- signals

    def _install_signals(self) -> None:
        self._wake_r, self._wake_w = os.pipe()
        for fd in (self._wake_r, self._wake_w):
            os.set_blocking(fd, False)
        for name in self.SIGNALS:
            signal.signal(getattr(signal, f"SIG{name}"), self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:
        # Signal handler: no logging, no work; queue it and wake the loop (gunicorn's rule).
        if len(self._signals) < 10:
            self._signals.append(signum)
        try:
            os.write(self._wake_w, b"!")
        except OSError:
            pass

    def _handle_signals(self) -> None:
        while self._signals:
            signum = self._signals.pop(0)
            name = signal.Signals(signum).name[3:].lower()
            getattr(self, f"handle_{name}")()

    def handle_chld(self) -> None:
        pass  # reaping happens on every loop turn

    def handle_hup(self) -> None:
        """Rolling reload: replace every worker, one at a time, new before old."""
        if self.stopping:
            return
        log.info("HUP: rolling reload of %d worker(s)", len(self.workers))
        self.generation += 1
        self._reload_queue = [
            pid for pid, info in self.workers.items() if info.generation < self.generation
        ]

    def handle_term(self) -> None:
        """Graceful stop: workers stop accepting, finish what they have, then exit."""
        if self.stopping:
            return
        log.info("TERM: graceful stop (up to %gs)", self.config.graceful_timeout)
        self.stopping = True
        self._stop_deadline = time.monotonic() + self.config.graceful_timeout + 5.0
        self._close_listeners()  # new connections are refused from now on
        for info in self.workers.values():
            self._signal(info, signal.SIGTERM)

    def handle_int(self) -> None:
        """Fast stop."""
        log.info("fast stop")
        self.stopping = True
        self._stop_deadline = time.monotonic() + 2.0
        for info in self.workers.values():
            self._signal(info, signal.SIGQUIT)

    handle_quit = handle_int

    def handle_ttin(self) -> None:
        self.target += 1
        log.info("TTIN: %d worker(s)", self.target)

    def handle_ttou(self) -> None:
        if self.target <= 1:
            return
        self.target -= 1
        log.info("TTOU: %d worker(s)", self.target)
        oldest = min(self._live(), key=lambda info: info.spawned, default=None)
        if oldest is not None:
            self._retire(oldest)

    def handle_usr1(self) -> None:
        """Reopen log files (after logrotate moved them)."""
        from .logs import reopen_logs

        reopen_logs()
        for info in self.workers.values():
            self._signal(info, signal.SIGUSR1)

    # ---------------------------------------------------------------- workers

    def _live(self) -> list[WorkerInfo]:
        return [info for info in self.workers.values() if not info.stopping]

    def _spawn_missing(self) -> None:
        if self.stopping or time.monotonic() < self._backoff_until:
            return
        while len(self._live()) < self.target and self._waiting_for is None:
            self._spawn()

    def _spawn(self) -> WorkerInfo | None:
        index = self.scoreboard.free_index()
        if index is None:
            log.error("no free scoreboard slot: cannot start another worker")
            return None
        self.scoreboard.write(index, Slot(status=WorkerStatus.BOOTING, generation=self.generation))
        pid = os.fork()
        if pid == 0:  # the child
            code = WORKER_BOOT_ERROR
            try:
                code = self._worker_main(index)
            except BaseException:
                log.exception("worker crashed")
            finally:
                os._exit(code)
        info = WorkerInfo(pid, index, self.generation, time.monotonic())
        self.workers[pid] = info
        slot = self.scoreboard.read(index)
        slot.pid = pid
        self.scoreboard.write(index, slot)
        log.info("worker %d started (generation %d)", pid, self.generation)
        return info

    def _worker_main(self, index: int) -> int:
        """Runs in the forked child: become a worker and return its exit code."""
        for name in self.SIGNALS:
            signal.signal(getattr(signal, f"SIG{name}"), signal.SIG_DFL)
        os.close(self._wake_r)
        os.close(self._wake_w)
        if self.stats_server is not None:
            self.stats_server.listener.sock.close()  # only our copy: the path is the master's
        _set_title(f"muxwsgi: worker [{self.config.app}]")
        random.seed()
        from .importer import import_app
        from .worker_hooks import WorkerHooks

        hooks = WorkerHooks(self.config, self.scoreboard, index)
        worker = Worker(
            self.config,
            self.listeners,
            lambda: import_app(
                self.config.app, wsgi_file=self.config.wsgi_file, chdir=self.config.chdir
            ),
            on_tick=hooks.tick,
            on_ready=hooks.ready,
        )
        hooks.worker = worker
        return worker.run()

    def _signal(self, info: WorkerInfo, signum: int) -> None:
        if signum in (signal.SIGTERM, signal.SIGQUIT) and not info.stopping:
            info.stopping = time.monotonic()
        try:
            os.kill(info.pid, signum)
        except ProcessLookupError:
            pass

    def _retire(self, info: WorkerInfo) -> None:
        """Drain a worker gracefully (its replacement, if any, is started by the loop)."""
        self._signal(info, signal.SIGTERM)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            info = self.workers.pop(pid, None)
            if info is None:
                continue
            self.scoreboard.clear(info.index)
            code = os.waitstatus_to_exitcode(status)
            if self._waiting_for == pid:
                self._waiting_for = None
            if code == APP_LOAD_ERROR:
                # The worker printed why; respawning cannot fix an import error.
                log.error("worker %d could not load the application; stopping", pid)
                self.exit_code = APP_LOAD_ERROR
                self._begin_fast_stop()
                return
            if code == WORKER_BOOT_ERROR:
                log.error("worker %d failed to boot; stopping", pid)
                self.exit_code = WORKER_BOOT_ERROR
                self._begin_fast_stop()
                return
            if info.stopping or self.stopping:
                log.info("worker %d exited (%s)", pid, "killed" if info.killed else f"code {code}")
                continue
            self.respawns += 1
            lived = time.monotonic() - info.spawned
            log.warning(
                "worker %d died unexpectedly (%s) after %.1fs; respawning",
                pid,
                f"signal {-code}" if code < 0 else f"code {code}",
                lived,
            )
            if lived < QUICK_DEATH:
                self.crashes += 1
                if self.crashes >= CRASH_LOOP_LIMIT:
                    print(
                        f"muxwsgi: workers keep dying right after they start ({self.crashes} in a "
                        "row); giving up. See the errors above.",
                        file=sys.stderr,
                        flush=True,
                    )
                    self.exit_code = 1
                    self._begin_fast_stop()
                    return
                # Exponential backoff (0.2 s, 0.4 s, ...): respawning must not spin.
                self._backoff_until = time.monotonic() + min(10.0, 0.1 * 2**self.crashes)
            else:
                self.crashes = 0

    def _begin_fast_stop(self) -> None:
        self.stopping = True
        self._stop_deadline = time.monotonic() + 2.0
        for info in self.workers.values():
            self._signal(info, signal.SIGQUIT)

    def _check_workers(self) -> None:
        """Liveness, harakiri backstop, recycling requests, and stop escalation."""
        now = time.monotonic()
        config = self.config
        for info in list(self.workers.values()):
            slot = self.scoreboard.read(info.index)
            if info.stopping:
                grace = config.graceful_timeout + 5.0
                if not info.killed and now - info.stopping > grace:
                    log.warning("worker %d did not stop in %gs; killing it", info.pid, grace)
                    self._kill(info)
                continue
            if slot.status is WorkerStatus.BOOTING:
                if now - info.spawned > READY_TIMEOUT:
                    log.error(
                        "worker %d did not become ready in %gs; killing it", info.pid, READY_TIMEOUT
                    )
                    self._kill(info)
                continue
            if (
                slot.status is WorkerStatus.READY
                and self.crashes
                and now - info.spawned > QUICK_DEATH
            ):
                self.crashes = 0
            if config.heartbeat_timeout and now - slot.heartbeat > config.heartbeat_timeout:
                log.error(
                    "worker %d missed its heartbeat for %gs (its event loop is stuck); killing it",
                    info.pid,
                    config.heartbeat_timeout,
                )
                self._kill(info)
                continue
            if (
                config.harakiri
                and slot.oldest_request
                and now - slot.oldest_request > config.harakiri + 10.0
            ):
                # The worker retires itself at `harakiri`; this is the backstop.
                log.error(
                    "worker %d: a request has run %.0fs; killing the worker",
                    info.pid,
                    now - slot.oldest_request,
                )
                self._kill(info)
                continue
            reason = self._recycle_reason(info, slot, now)
            if reason and self._waiting_for is None and not self._reload_queue:
                log.info("worker %d: %s; replacing it", info.pid, reason)
                self._replace(info)

    def _recycle_reason(self, info: WorkerInfo, slot: Slot, now: float) -> str:
        if slot.status is WorkerStatus.RETIRE:
            return RETIRE_REASONS.get(slot.retire_reason, "retire requested")
        config = self.config
        if config.max_worker_lifetime and now - info.spawned > config.max_worker_lifetime:
            return "max-worker-lifetime"
        if config.reload_on_rss:
            rss = worker_rss_mib(info.pid)
            if rss is not None and rss > config.reload_on_rss:
                return f"reload-on-rss ({rss:.0f} MiB)"
        return ""

    def _replace(self, old: WorkerInfo) -> None:
        """Start a replacement; the old worker drains once the new one is READY."""
        self._reload_queue.insert(0, old.pid)

    def _step_reload(self) -> None:
        """Advance a rolling replacement by one step when possible."""
        if self.stopping:
            self._reload_queue.clear()
            return
        if self._waiting_for is not None:
            info = self.workers.get(self._waiting_for)
            if info is None:
                self._waiting_for = None  # it died: the loop respawns; try the step again
                return
            status = self.scoreboard.read(info.index).status
            if status is WorkerStatus.READY:
                self._waiting_for = None
                if self._reload_queue:
                    old = self.workers.get(self._reload_queue.pop(0))
                    if old is not None:
                        self._retire(old)
            elif time.monotonic() - self._waiting_since > READY_TIMEOUT:
                log.error(
                    "reload: the new worker is not ready after %gs; keeping the old ones",
                    READY_TIMEOUT,
                )
                self._waiting_for = None
                self._reload_queue.clear()
            return
        while self._reload_queue and self._reload_queue[0] not in self.workers:
            self._reload_queue.pop(0)
        if not self._reload_queue:
            return
        new = self._spawn()
        if new is not None:
            self._waiting_for = new.pid
            self._waiting_since = time.monotonic()

    def _kill(self, info: WorkerInfo) -> None:
        info.killed = True
        if not info.stopping:
            info.stopping = time.monotonic()
        try:
            os.kill(info.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def _kill_all(self) -> None:
        for info in self.workers.values():
            self._kill(info)
        deadline = time.monotonic() + 5.0
        while self.workers and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.01)

    # ---------------------------------------------------------------- files and sockets

    def _write_pid_file(self) -> None:
        if self.config.pid_file:
            with open(self.config.pid_file, "w") as f:
                f.write(f"{os.getpid()}\n")

    def _close_listeners(self) -> None:
        for listener in self.listeners:
            listener.close()
            if listener.address.family == "unix":
                try:
                    os.unlink(listener.address.path)
                except OSError as exc:
                    if exc.errno != errno.ENOENT:
                        log.warning("cannot remove %s: %s", listener.address.path, exc)
        self.listeners = []

    def _shutdown(self) -> None:
        self._close_listeners()
        if self.stats_server is not None:
            self.stats_server.close()
        if self.config.pid_file:
            try:
                os.unlink(self.config.pid_file)
            except OSError:
                pass
        log.info("master %d: exiting", os.getpid())


def worker_rss_mib(pid: int) -> float | None:
    """A process's resident set size in MiB, from /proc (None where /proc does not tell)."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)


def run(config: Any) -> int:
    """Run the master until it stops; return the process exit code."""
    from .logs import setup_logging

    setup_logging(config)
    return Arbiter(config).run()
