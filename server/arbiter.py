"""The master process: binds the sockets, forks workers, supervises them, handles signals.

Modelled on gunicorn's arbiter, with uWSGI's and granian's lessons:

- the master binds every socket before forking (or takes those systemd passed it: socket
  activation) and never closes them until it exits, so a reload never refuses a connection;
  it never imports the application (workers do, after the fork), so a reload re-imports the
  code; and it never runs an event loop;
- signal handlers only queue the signal and wake the main loop through a pipe; the loop
  dispatches to ``handle_<name>`` methods;
- what to do about workers (rolling reload, scaling, respawns, the crash-loop guard, stop
  deadlines) is decided by :class:`~.supervision.Supervisor`, which sees events and returns
  actions; this class turns signals, exits and the scoreboard into those events and carries
  the actions out (fork, kill);
- the master sleeps in ``select`` until a signal, a worker's READY (written to the same pipe),
  a stats request, the supervisor's next deadline or the next scoreboard poll;
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
from collections.abc import Iterable
from dataclasses import dataclass
from types import FrameType

from muxwsgi import __version__, build_description

from .config import Config
from .importer import import_app
from .logs import reopen_logs, setup_logging
from .procfs import rss_mib
from .scoreboard import Scoreboard, Slot, WorkerStatus
from .sockets import BindError, Listener, activated, bind
from .stats import StatsServer
from .supervision import Action, Exit, Kill, Phase, Spawn, Stop, Supervisor, WorkerState
from .tls import ServerTls, TlsConfigError
from .worker import WORKER_BOOT_ERROR, Worker
from .worker_hooks import WorkerHooks

__all__ = ("Arbiter", "run")

log = logging.getLogger("muxwsgi.error")

#: Retire reasons a worker writes into its slot.
RETIRE_REASONS = {1: "max-requests", 2: "max-worker-lifetime", 3: "reload-on-rss", 4: "harakiri"}
#: How often the master reads the scoreboard (heartbeats, recycling) when nothing wakes it.
POLL_INTERVAL = 1.0


def _set_title(title: str) -> None:
    try:
        import setproctitle
    except ImportError:
        return
    setproctitle.setproctitle(title)


@dataclass
class WorkerInfo:
    """A worker process: its record in the supervisor, and its scoreboard slot."""

    state: WorkerState
    index: int

    @property
    def pid(self) -> int:
        return self.state.pid

    @property
    def generation(self) -> int:
        return self.state.generation

    @property
    def started(self) -> float:
        return self.state.started


class Arbiter:
    SIGNALS = ("HUP", "TERM", "INT", "QUIT", "TTIN", "TTOU", "USR1", "CHLD")

    def __init__(self, config: Config) -> None:
        self.config = config
        self.listeners: list[Listener] = []
        self.scoreboard = Scoreboard(max(64, 4 * config.workers))
        self.supervisor = Supervisor(
            config.workers, graceful_timeout=config.graceful_timeout, limit=self.scoreboard.size
        )
        #: By supervisor id; ``_pids`` maps a process id to it.
        self.workers: dict[int, WorkerInfo] = {}
        self._pids: dict[int, int] = {}
        self.exit_code: int | None = None
        self._signals: list[int] = []
        self._signal_numbers = [signal.Signals[f"SIG{name}"] for name in self.SIGNALS]
        self._wake_r = self._wake_w = -1
        self.stats_server: StatsServer | None = None
        self.started = time.time()
        self.tls = ServerTls(config)

    @property
    def target(self) -> int:
        return self.supervisor.target

    @property
    def respawns(self) -> int:
        return self.supervisor.respawns

    def not_ready(self) -> str:
        """Why the server should not be sent traffic, or "" (the stats endpoint's /readyz)."""
        return self.supervisor.not_ready()

    # ---------------------------------------------------------------- main loop

    def run(self) -> int:
        try:
            self.tls.load()
        except TlsConfigError as exc:
            print(f"muxwsgi: {exc}", file=sys.stderr, flush=True)
            return 1
        try:
            self._listen()
        except BindError as exc:
            print(f"muxwsgi: {exc}", file=sys.stderr, flush=True)
            self._close_listeners()
            return 1
        if self.config.stats:
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
        log.info("muxwsgi %s, %s", __version__, build_description)
        log.info("master %d: starting %d worker(s)", os.getpid(), self.target)
        try:
            self._execute(self.supervisor.tick(time.monotonic()))
            while self.exit_code is None:
                self._wait()
                now = time.monotonic()
                self._handle_signals(now)
                self._reap(now)
                self._check_workers(now)
                self._execute(self.supervisor.tick(now))
        finally:
            self._shutdown()
        return self.exit_code

    def _listen(self) -> None:
        """Take the sockets systemd passed (all of them, as gunicorn does), or bind --bind."""
        self.listeners = activated()
        if self.listeners:
            log.info(
                "socket activation: %d socket(s) passed by the service manager; --bind is not used",
                len(self.listeners),
            )
        else:
            for spec in self.config.bind:
                self.listeners.append(
                    bind(spec, backlog=self.config.backlog, unix_mode=self.config.unix_socket_mode)
                )
        for listener in self.listeners:
            log.info("listening on %s", listener.address)

    def _wait(self) -> None:
        """Sleep until a signal, a worker's READY, a stats request, the supervisor's next
        deadline, or the next scoreboard poll."""
        timeout = POLL_INTERVAL
        wakeup = self.supervisor.wakeup()
        if wakeup is not None:
            timeout = min(timeout, max(0.0, wakeup - time.monotonic()))
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

    def _execute(self, actions: Iterable[Action]) -> None:
        """Carry out the supervisor's decisions."""
        for action in actions:
            match action:
                case Spawn():
                    self._spawn(action)
                case Stop(worker=worker, fast=fast):
                    self._send(worker, signal.SIGQUIT if fast else signal.SIGTERM)
                case Kill(worker=worker):
                    self._send(worker, signal.SIGKILL)
                case Exit(code=code, message=message):
                    if message:
                        print(f"muxwsgi: {message}", file=sys.stderr, flush=True)
                    self.exit_code = code

    # ---------------------------------------------------------------- signals

    def _install_signals(self) -> None:
        self._wake_r, self._wake_w = os.pipe()
        for fd in (self._wake_r, self._wake_w):
            os.set_blocking(fd, False)
        for signum in self._signal_numbers:
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Signal handler: no logging, no work; queue it and wake the loop (gunicorn's rule).
        if len(self._signals) < 10:
            self._signals.append(signum)
        self._wake()

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"!")
        except OSError:
            pass  # full: the loop wakes anyway

    def _handle_signals(self, now: float) -> None:
        while self._signals:
            signum = self._signals.pop(0)
            name = signal.Signals(signum).name[3:].lower()
            getattr(self, f"handle_{name}")(now)

    def handle_chld(self, now: float) -> None:
        pass  # reaping happens on every loop turn

    def handle_hup(self, now: float) -> None:
        """Rolling reload: replace every worker, one at a time, new before old."""
        self.tls.reload()  # the new workers serve the certificate files as they are now
        self._execute(self.supervisor.reload(now))

    def handle_term(self, now: float) -> None:
        """Graceful stop: workers stop accepting, finish what they have, then exit."""
        if self.supervisor.stopping:
            return
        log.info("TERM: graceful stop (up to %gs)", self.config.graceful_timeout)
        # New connections are refused from now on; a socket systemd passed stays open in systemd,
        # where they wait for the next start. /readyz says 503 from now on (supervisor.stopping).
        self._close_listeners()
        self._execute(self.supervisor.stop(now, fast=False))

    def handle_int(self, now: float) -> None:
        """Fast stop."""
        log.info("fast stop")
        self._execute(self.supervisor.stop(now, fast=True))

    handle_quit = handle_int

    def handle_ttin(self, now: float) -> None:
        self._execute(self.supervisor.scale(+1, now))

    def handle_ttou(self, now: float) -> None:
        self._execute(self.supervisor.scale(-1, now))

    def handle_usr1(self, now: float) -> None:
        """Reopen log files (after logrotate moved them)."""
        reopen_logs()
        for info in self.workers.values():
            self._kill_pid(info.pid, signal.SIGUSR1)

    # ---------------------------------------------------------------- workers

    def _spawn(self, action: Spawn) -> None:
        index = self.scoreboard.free_index()
        # The supervisor keeps no more workers than there are slots.
        assert index is not None, "scoreboard full"
        self.scoreboard.write(
            index, Slot(status=WorkerStatus.BOOTING, generation=action.generation)
        )
        # Signals stay blocked across the fork: the child must not run the master's handlers
        # before it has put the default ones back.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, self._signal_numbers)
        try:
            pid = os.fork()
        except OSError as exc:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
            log.error("cannot start a worker: %s", exc)
            self.scoreboard.clear(index)
            self._execute(
                self.supervisor.exited(action.worker, WORKER_BOOT_ERROR, time.monotonic())
            )
            return
        if pid == 0:  # the child
            code = WORKER_BOOT_ERROR
            try:
                code = self._worker_main(index, blocked)
            except BaseException:
                log.exception("worker crashed")
            finally:
                os._exit(code)
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        self.supervisor.forked(action.worker, pid)
        state = self.supervisor.workers[action.worker]
        self.workers[action.worker] = WorkerInfo(state, index)
        self._pids[pid] = action.worker
        slot = self.scoreboard.read(index)
        slot.pid = pid
        self.scoreboard.write(index, slot)

    def _worker_main(self, index: int, sigmask: Iterable[int]) -> int:
        """Runs in the forked child: become a worker and return its exit code."""
        for signum in self._signal_numbers:
            signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, sigmask)
        os.close(self._wake_r)
        if self.stats_server is not None:
            self.stats_server.listener.sock.close()  # only our copy: the path is the master's
        _set_title(f"muxwsgi: worker [{self.config.app}]")
        random.seed()
        hooks = WorkerHooks(self.config, self.scoreboard, index)

        def ready() -> None:
            hooks.ready()
            self._wake()  # the master acts on READY at once (a reload's next step)
            os.close(self._wake_w)

        worker = Worker(
            self.config,
            self.listeners,
            lambda: import_app(
                self.config.app, wsgi_file=self.config.wsgi_file, chdir=self.config.chdir
            ),
            on_tick=hooks.tick,
            on_ready=ready,
            tls=self.tls.context,
            balance=self.scoreboard.balance(index) if self.config.balance_connections else None,
        )
        hooks.worker = worker
        return worker.run()

    def _send(self, worker: int, signum: int) -> None:
        info = self.workers.get(worker)
        if info is not None:
            self._kill_pid(info.pid, signum)

    @staticmethod
    def _kill_pid(pid: int, signum: int) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    def _reap(self, now: float) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self._pids.pop(pid, None)
            if worker is None:
                continue
            info = self.workers.pop(worker)
            self.scoreboard.clear(info.index)
            self._execute(self.supervisor.exited(worker, os.waitstatus_to_exitcode(status), now))

    def _check_workers(self, now: float) -> None:
        """Read the scoreboard: readiness, liveness (heartbeat, harakiri backstop), recycling."""
        for worker, info in list(self.workers.items()):
            phase = info.state.phase
            if phase is Phase.STOPPING:
                continue
            slot = self.scoreboard.read(info.index)
            if phase is Phase.BOOTING:
                if slot.status is not WorkerStatus.BOOTING:
                    self._execute(self.supervisor.ready(worker, now))
                continue
            failure = self._liveness_failure(slot, now)
            if failure:
                self._execute(self.supervisor.kill(worker, failure, now))
                continue
            reason = self._recycle_reason(info, slot, now)
            if reason and not info.state.recycle:
                self._execute(self.supervisor.recycle(worker, reason, now))

    def _liveness_failure(self, slot: Slot, now: float) -> str:
        config = self.config
        if config.heartbeat_timeout and now - slot.heartbeat > config.heartbeat_timeout:
            return (
                f"missed its heartbeat for {config.heartbeat_timeout:g}s (its event loop is stuck)"
            )
        if (
            config.harakiri
            and slot.oldest_request
            and now - slot.oldest_request > config.harakiri + 10.0
        ):
            # The worker retires itself at `harakiri`; this is the backstop.
            return f"has run a request for {now - slot.oldest_request:.0f}s"
        return ""

    def _recycle_reason(self, info: WorkerInfo, slot: Slot, now: float) -> str:
        if slot.status in (WorkerStatus.RETIRE, WorkerStatus.DRAINING):
            # DRAINING: it stops on its own (harakiri, or a TERM not from us).
            return RETIRE_REASONS.get(slot.retire_reason, "draining on its own")
        config = self.config
        if config.max_worker_lifetime and now - info.started > config.max_worker_lifetime:
            return "max-worker-lifetime"
        if config.reload_on_rss:
            rss = rss_mib(info.pid)
            if rss is not None and rss > config.reload_on_rss:
                return f"reload-on-rss ({rss:.0f} MiB)"
        return ""

    # ---------------------------------------------------------------- files and sockets

    def _write_pid_file(self) -> None:
        if self.config.pid_file:
            with open(self.config.pid_file, "w") as f:
                f.write(f"{os.getpid()}\n")

    def _close_listeners(self) -> None:
        for listener in self.listeners:
            listener.close()
            if listener.address.family == "unix" and not listener.activated:
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


def run(config: Config) -> int:
    """Run the master until it stops; return the process exit code."""
    setup_logging(config)
    return Arbiter(config).run()
