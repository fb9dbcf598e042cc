"""The master's decisions, apart from processes: which workers to start, drain or kill, and when
to exit.

:class:`Supervisor` is a state machine in the style of the protocol core: the arbiter tells it
what happened (a signal arrived, a worker became ready or exited, time passed) and carries out
the actions it returns (:class:`Spawn`, :class:`Stop`, :class:`Kill`, :class:`Exit`). It never
forks, signals, sleeps or reads the clock, so any sequence of events can be played against it
without a process (``tests/server/test_supervision.py`` does, at random).

It has one goal: ``target`` workers ready, all of the newest generation. Every event updates the
worker table, then :meth:`Supervisor._converge` compares the table with the goal and returns
what closes the gap. Signals compose because none of them starts a procedure of its own: HUP
only starts a new generation, TTIN and TTOU only move the target, and a HUP in the middle of a
reload moves that reload on to the newest generation instead of queuing another one.

The rules, in the order they are applied:

1. A worker still booting for an older generation is stopped: it has served nothing yet.
2. While more workers are ready than the target, one is drained: an outdated one first (older
   generation, or asked to be recycled), else the oldest. No other rule drains a serving
   worker, so none is retired before its replacement is ready.
3. Booting workers are stopped while more than ``target`` are current, or the pool is over
   ``target + SURPLUS`` (TTOU while they boot).
4. Workers are started while fewer than ``target`` are current (booting or ready, of the newest
   generation), and while the pool, outdated serving workers included, stays within ``target``,
   plus SURPLUS while something is being replaced: a reload replaces one worker at a time.

A worker that fails before it is ready (its application does not import, or it is not ready
within READY_TIMEOUT) while older workers serve ends the reload it was part of: they keep
serving, and the next HUP tries again. When no worker is ready at all, an import error stops
the master: respawning cannot fix it. Workers that die soon after their start are respawned
after an exponential backoff; after CRASH_LOOP_LIMIT such deaths in a row, with no worker
serving steadily, the master gives up.

TERM (graceful) and INT or QUIT (fast) win over all of this: every worker is told to stop, none
is started, stragglers are killed at the deadline, and the master exits once the last is gone.

Readiness (:meth:`Supervisor.not_ready`, the stats endpoint's ``/readyz``) follows from the
same table: the pool is ready while ``target`` workers serve and it is not stopping. Rule 2 is
why a reload, recycling or TTOU never makes it unready: a serving worker is drained only while
more than ``target`` serve. TTIN raises the target before its worker is ready; readiness keeps
asking for the target the pool last reached until then, so adding capacity never takes the
server out of a load balancer.
"""

from __future__ import annotations

import enum
import logging
import math
from dataclasses import dataclass

from .worker import APP_LOAD_ERROR, WORKER_BOOT_ERROR

__all__ = (
    "CRASH_LOOP_LIMIT",
    "MAX_BACKOFF",
    "READY_TIMEOUT",
    "SURPLUS",
    "Action",
    "Exit",
    "Kill",
    "Phase",
    "Spawn",
    "Stop",
    "Supervisor",
    "WorkerState",
)

log = logging.getLogger("muxwsgi.error")

#: Replacements booting at once during a reload or recycling, beyond the target.
SURPLUS = 1
#: How long a new worker may take to become ready before it is killed.
READY_TIMEOUT = 60.0
#: A worker that dies within this many seconds of its start (or before it is ready) died
#: "quickly": it counts toward the crash-loop guard and its replacement waits a backoff.
QUICK_DEATH = 5.0
CRASH_LOOP_LIMIT = 5
#: The longest backoff between two quick deaths and the next start.
MAX_BACKOFF = 10.0
#: A draining worker is killed this long after ``graceful_timeout`` if it has not exited.
KILL_MARGIN = 5.0
#: How long a fast stop (INT, QUIT, or a fatal error) waits before it kills.
FAST_STOP_TIMEOUT = 2.0
#: During a stop, how long after the last kill to wait for the processes to be reaped.
REAP_TIMEOUT = 5.0


class Phase(enum.Enum):
    BOOTING = "booting"  # started, not ready yet
    READY = "ready"  # serving
    STOPPING = "stopping"  # told to stop (drain, fast stop) or killed


@dataclass(eq=False)
class WorkerState:
    """One worker as the supervisor sees it."""

    id: int
    generation: int
    #: When it was started (the caller's clock, e.g. ``time.monotonic()``).
    started: float
    #: Known once the caller reports it with :meth:`Supervisor.forked`; for the log.
    pid: int = 0
    phase: Phase = Phase.BOOTING
    #: Why it should be replaced ("" while it should not), e.g. "max-requests".
    recycle: str = ""
    #: When the supervisor acts on it next: killed if still booting (READY_TIMEOUT) or still
    #: there after it was told to stop. Infinite while it serves, and once it is killed.
    deadline: float = math.inf
    stop_requested: float = 0.0
    killed: bool = False


@dataclass(frozen=True)
class Spawn:
    """Start worker ``worker`` of ``generation``; then report its pid with ``forked()``."""

    worker: int
    generation: int


@dataclass(frozen=True)
class Stop:
    """Tell a worker to stop: gracefully (TERM: finish what it has) or fast (QUIT)."""

    worker: int
    fast: bool = False


@dataclass(frozen=True)
class Kill:
    """Kill a worker (SIGKILL)."""

    worker: int


@dataclass(frozen=True)
class Exit:
    """The master is done: exit with ``code``. ``message``, if any, is for stderr."""

    code: int
    message: str = ""


Action = Spawn | Stop | Kill | Exit


class Supervisor:
    """The worker table and the decisions about it.

    Each event method takes the current time and returns the actions to carry out, in order.
    After any event, :meth:`wakeup` says when :meth:`tick` must be called at the latest if
    nothing else happens; it is ``None`` or later than the time of the event, so a caller
    that sleeps until then never spins.
    """

    def __init__(self, target: int, *, graceful_timeout: float, limit: int) -> None:
        """``limit`` bounds the workers alive at once, draining ones included (one
        scoreboard slot each)."""
        self.target = target
        self.graceful_timeout = graceful_timeout
        self.limit = limit
        self.workers: dict[int, WorkerState] = {}
        self.generation = 0
        #: The newest generation that failed to start while older ones served (-1: none).
        #: Its reload is over: its older workers count as current until the next HUP.
        self.failed_generation = -1
        #: Workers started again after an unexpected death.
        self.respawns = 0
        #: Quick deaths in a row.
        self.crashes = 0
        self.stopping = False
        self.fast = False
        #: Set once :class:`Exit` has been returned; nothing happens after that.
        self.done = False
        self._exit = Exit(0)
        self._last_kill = -math.inf
        self._last_crash = -math.inf
        self._backoff_until = -math.inf
        self._retry_at: float | None = None  # a start deferred by the backoff
        self._next_id = 1
        #: The workers that must serve for the pool to be ready: the target it last reached
        #: (or the first one), lowered at once by TTOU, raised by TTIN only once reached.
        self._ready_floor = target

    # ---------------------------------------------------------------- events

    def tick(self, now: float) -> list[Action]:
        """Time passed: act on deadlines and backoffs (and start the first workers)."""
        return self._converge(now)

    def reload(self, now: float) -> list[Action]:
        """HUP: replace every worker by one of a new generation, one at a time."""
        if self.stopping:
            return []
        self.generation += 1
        log.info(
            "HUP: rolling reload to generation %d (%d worker(s) to replace)",
            self.generation,
            self.serving(),
        )
        return self._converge(now)

    def scale(self, delta: int, now: float) -> list[Action]:
        """TTIN (+1) or TTOU (-1): move the target, never below one worker."""
        name = "TTIN" if delta > 0 else "TTOU"
        target = self.target + delta
        if self.stopping or target < 1:
            return []
        if target + SURPLUS > self.limit:
            log.warning("%s: %d worker(s) at most", name, self.limit - SURPLUS)
            return []
        self.target = target
        self._ready_floor = min(self._ready_floor, target)
        log.info("%s: %d worker(s)", name, target)
        return self._converge(now)

    def stop(self, now: float, *, fast: bool) -> list[Action]:
        """TERM (graceful: workers finish what they have) or INT/QUIT (fast). A fast stop
        overrides a graceful one in progress; anything else during a stop is ignored."""
        return self._begin_stop(now, fast=fast) + self._converge(now)

    def forked(self, worker: int, pid: int) -> None:
        """The caller started worker ``worker`` (a :class:`Spawn`) as process ``pid``."""
        state = self.workers.get(worker)
        if state is not None:
            state.pid = pid
            log.info("worker %d started (generation %d)", pid, state.generation)

    def ready(self, worker: int, now: float) -> list[Action]:
        """The worker reports it is serving."""
        state = self.workers.get(worker)
        if state is None or state.phase is not Phase.BOOTING:
            return []
        state.phase = Phase.READY
        state.deadline = math.inf
        return self._converge(now)

    def recycle(self, worker: int, reason: str, now: float) -> list[Action]:
        """A serving worker should be replaced (max-requests, lifetime, RSS, it drains on its
        own): start its replacement, drain it once that is ready."""
        state = self.workers.get(worker)
        if state is None or state.phase is not Phase.READY or state.recycle or self.stopping:
            return []
        state.recycle = reason
        log.info("worker %d: %s; replacing it", state.pid, reason)
        return self._converge(now)

    def kill(self, worker: int, reason: str, now: float) -> list[Action]:
        """A worker failed a liveness check (``reason`` says which): kill it."""
        state = self.workers.get(worker)
        if state is None or state.killed or self.done:
            return []
        log.error("worker %d %s; killing it", state.pid, reason)
        return [self._kill(state, now), *self._converge(now)]

    def exited(self, worker: int, code: int, now: float) -> list[Action]:
        """The worker's process is gone: ``code`` is its exit status, negative for a signal
        (``os.waitstatus_to_exitcode``)."""
        state = self.workers.pop(worker, None)
        if state is None or self.done:
            return []
        expected = state.phase is Phase.STOPPING or (state.recycle and code == 0)
        if self.stopping or expected:
            log.info("worker %d exited (%s)", state.pid, "killed" if state.killed else _how(code))
            return self._converge(now)
        return self._failed(state, code, now) + self._converge(now)

    # ---------------------------------------------------------------- queries

    def wakeup(self) -> float | None:
        """When :meth:`tick` must be called next, if no other event comes first."""
        if self.done:
            return None
        times = [w.deadline for w in self.workers.values() if not w.killed]
        if self._retry_at is not None:
            times.append(self._retry_at)
        if self.stopping and self.workers and all(w.killed for w in self.workers.values()):
            times.append(self._last_kill + REAP_TIMEOUT)
        soonest = min(times, default=math.inf)
        return None if soonest == math.inf else soonest

    def serving(self) -> int:
        """Workers ready and not told to stop: those accepting connections."""
        return sum(1 for w in self.workers.values() if w.phase is Phase.READY)

    def not_ready(self) -> str:
        """Why the server should not be sent new traffic, in a few words; "" when it should:
        it is not stopping, and as many workers serve as the target (the target before a
        TTIN whose worker is not ready yet)."""
        if self.stopping:
            return "stopping"
        serving = self.serving()
        if serving < self._ready_floor:
            return f"{serving} of {self.target} worker(s) ready"
        return ""

    def is_current(self, state: WorkerState) -> bool:
        """Whether ``state`` belongs in the goal: not to be recycled, and of the newest
        generation (or of any, once the newest failed to start)."""
        return not state.recycle and (
            state.generation == self.generation or self.failed_generation == self.generation
        )

    # ---------------------------------------------------------------- decisions

    def _converge(self, now: float) -> list[Action]:
        if self.done:
            return []
        self._retry_at = None
        actions: list[Action] = []
        for state in list(self.workers.values()):
            if not state.killed and now >= state.deadline:
                if state.phase is Phase.BOOTING:
                    actions.append(self._kill(state, now))
                    actions += self._failed(state, None, now)
                    continue
                log.warning(
                    "worker %d did not stop in %.0fs; killing it",
                    state.pid,
                    now - state.stop_requested,
                )
                actions.append(self._kill(state, now))
        if self.stopping:
            return actions + self._converge_stop(now)

        current: list[WorkerState] = []  # booting or ready, in the goal
        outdated: list[WorkerState] = []  # ready, to be replaced
        for state in self.workers.values():
            if state.phase is Phase.STOPPING:
                continue
            if self.is_current(state):
                current.append(state)
            elif state.phase is Phase.BOOTING:  # rule 1
                actions.append(self._stop(state, now, "outdated before it was ready"))
            else:
                outdated.append(state)

        # Rule 2: outdated first, then by generation and age.
        ready = sorted(
            (w for w in current + outdated if w.phase is Phase.READY),
            key=lambda w: (self.is_current(w), w.generation, w.started),
        )
        for state in ready[: max(0, len(ready) - self.target)]:
            reason = (
                f"more than {self.target} worker(s)"
                if self.is_current(state)
                else state.recycle or f"replaced by generation {self.generation}"
            )
            actions.append(self._stop(state, now, reason))
            (current if state in current else outdated).remove(state)

        # Rule 3: the newest booting ones first.
        booting = sorted((w for w in current if w.phase is Phase.BOOTING), key=lambda w: w.started)
        while booting and (
            len(current) > self.target or len(current) + len(outdated) > self.target + SURPLUS
        ):
            state = booting.pop()
            actions.append(self._stop(state, now, f"more than {self.target} worker(s)"))
            current.remove(state)

        # Rule 4.
        ceiling = self.target + (SURPLUS if outdated else 0)
        while (
            len(current) < self.target
            and len(current) + len(outdated) < ceiling
            and len(self.workers) < self.limit
        ):
            if now < self._backoff_until:
                self._retry_at = self._backoff_until
                break
            state = WorkerState(self._next_id, self.generation, now, deadline=now + READY_TIMEOUT)
            self._next_id += 1
            self.workers[state.id] = state
            current.append(state)
            actions.append(Spawn(state.id, state.generation))
        if self.serving() >= self.target:
            self._ready_floor = self.target
        return actions

    def _converge_stop(self, now: float) -> list[Action]:
        if self.workers:
            if now < self._last_kill + REAP_TIMEOUT or not all(
                w.killed for w in self.workers.values()
            ):
                return []
            log.error("%d worker(s) still there after SIGKILL; exiting", len(self.workers))
        self.done = True
        return [self._exit]

    def _failed(self, state: WorkerState, code: int | None, now: float) -> list[Action]:
        """A worker died that was not told to (``code``: its exit status), or was just killed
        for not becoming ready in time (``code`` None)."""
        never_ready = state.phase is Phase.BOOTING or code is None
        ready = [w for w in self.workers.values() if w.phase is Phase.READY]
        if code is None:
            what = f"was not ready in {READY_TIMEOUT:g}s (killed)"
        elif never_ready and code == APP_LOAD_ERROR:
            what = "could not load the application"  # the worker printed why
        elif never_ready and code == WORKER_BOOT_ERROR:
            what = "failed to boot"
        else:
            what = f"died unexpectedly ({_how(code)}) after {now - state.started:.1f}s"
        if never_ready and code in (APP_LOAD_ERROR, WORKER_BOOT_ERROR) and not ready:
            log.error("worker %d %s; stopping", state.pid, what)
            return self._begin_stop(now, fast=True, code=code)
        self.respawns += 1
        older = sum(1 for w in ready if w.generation < state.generation)
        abandoned = (
            never_ready
            and older > 0
            and state.generation == self.generation
            and self.failed_generation < self.generation
        )
        if abandoned:
            self.failed_generation = state.generation
            log.error(
                "worker %d %s: the reload to generation %d is abandoned; %d worker(s) of "
                "older generations keep serving (send HUP again once it is fixed)",
                state.pid,
                what,
                state.generation,
                older,
            )
        if not never_ready and now - state.started >= QUICK_DEATH:
            self.crashes = 0
            log.warning("worker %d %s; respawning", state.pid, what)
            return []
        # A quick death. The streak is over if a worker started since the last one has
        # been up long enough.
        if any(w.started > self._last_crash and now - w.started >= QUICK_DEATH for w in ready):
            self.crashes = 0
        self.crashes += 1
        self._last_crash = now
        steady = any(now - w.started >= QUICK_DEATH for w in ready)
        if self.crashes >= CRASH_LOOP_LIMIT and not steady:
            message = (
                f"workers keep dying right after they start ({self.crashes} in a row); "
                "giving up. See the errors above."
            )
            log.error("worker %d %s; %s", state.pid, what, message)
            return self._begin_stop(now, fast=True, code=1, message=message)
        delay = min(MAX_BACKOFF, 0.1 * 2 ** min(self.crashes, 10))
        self._backoff_until = now + delay
        if not abandoned:
            log.warning("worker %d %s; respawning in %.1fs", state.pid, what, delay)
        return []

    def _begin_stop(
        self, now: float, *, fast: bool, code: int = 0, message: str = ""
    ) -> list[Action]:
        if self.done or (self.stopping and (self.fast or not fast)):
            return []
        if not self.stopping:
            self._exit = Exit(code, message)
        self.stopping = True
        self.fast = fast
        return [self._stop(w, now, "", fast=fast) for w in self.workers.values() if not w.killed]

    def _stop(self, state: WorkerState, now: float, reason: str, *, fast: bool = False) -> Stop:
        if reason:
            log.info(
                "worker %d (generation %d): %s; stopping it", state.pid, state.generation, reason
            )
        state.phase = Phase.STOPPING
        state.stop_requested = now
        state.deadline = now + (FAST_STOP_TIMEOUT if fast else self.graceful_timeout + KILL_MARGIN)
        return Stop(state.id, fast)

    def _kill(self, state: WorkerState, now: float) -> Kill:
        self._last_kill = now
        state.phase = Phase.STOPPING
        state.killed = True
        state.deadline = math.inf
        return Kill(state.id)


def _how(code: int) -> str:
    return f"signal {-code}" if code < 0 else f"code {code}"
