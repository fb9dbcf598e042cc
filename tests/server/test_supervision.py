"""The master's decisions under any sequence of signals, exits and time (issue 15).

A model-based test: hypothesis plays random sequences of HUP, TTIN, TTOU, TERM, QUIT, workers
becoming ready (or slowly, or never), crashing, being killed (kill -9), recycling, failing
their liveness checks, the application failing to import, and time passing, against
:class:`Supervisor`, with a fake process table in place of fork and kill. Checked at every step:
no serving worker is drained unless as many as the target stay serving, the pool never exceeds
the target plus the surplus, nothing is started once a stop began, and the supervisor never asks
to be woken in the past (the master would spin). At quiet points, once every worker that can
settle has settled: either the master exited (and a signal or a failure explains why), or
exactly ``target`` workers serve, all of the newest generation (or, after a reload that failed
to start, of the generations that kept serving). Readiness (``not_ready``, the stats endpoint's
/readyz) is checked at every step too: never ready while stopping, always ready with ``target``
workers serving, and never lost but by a stop or a failure (a HUP, TTIN, TTOU, recycling or
time passing never take the server out of a load balancer).

The real processes and signals are tested in test_master.py.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from muxwsgi.server.supervision import (
    CRASH_LOOP_LIMIT,
    MAX_BACKOFF,
    READY_TIMEOUT,
    SURPLUS,
    Action,
    Exit,
    Kill,
    Phase,
    Spawn,
    Stop,
    Supervisor,
)
from muxwsgi.server.worker import APP_LOAD_ERROR

LIMIT = 8  # scoreboard slots: small enough for TTIN and draining workers to reach it


@dataclass
class Process:
    """A fake worker process."""

    id: int
    generation: int
    loads: bool  # the application on disk imported when it started
    ready: bool = False
    slow: bool = False  # never becomes ready on its own
    signalled: str = ""  # "TERM" or "QUIT" once told to stop
    killed: bool = False
    liveness_killed: bool = False


class SupervisorMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 1000.0
        self.processes: dict[int, Process] = {}
        self.code_loads = True
        self.stop_requested = False
        self.failures = 0  # crashes, failed starts, timeouts: what may end in a non-zero exit
        self.exit: Exit | None = None
        self.sup = Supervisor(1, graceful_timeout=0, limit=LIMIT)
        self.was_ready = False
        self.failures_seen = 0

    @initialize(workers=st.integers(1, 3), graceful=st.sampled_from([0.0, 5.0, 30.0]))
    def start(self, workers: int, graceful: float) -> None:
        self.sup = Supervisor(workers, graceful_timeout=graceful, limit=LIMIT)
        self.act(self.sup.tick(self.now))

    # ------------------------------------------------------------ the fake process layer

    def serving(self) -> list[Process]:
        return [p for p in self.processes.values() if p.ready and not (p.signalled or p.killed)]

    def alive(self) -> list[Process]:
        """Processes the supervisor has not told to stop (booting or serving)."""
        return [p for p in self.processes.values() if not (p.signalled or p.killed)]

    def act(self, actions: list[Action]) -> None:
        for action in actions:
            assert self.exit is None, f"{action} after {self.exit}"
            match action:
                case Spawn(worker=worker, generation=generation):
                    assert not self.sup.stopping, "a worker started during a stop"
                    assert worker not in self.processes
                    assert generation == self.sup.generation
                    self.processes[worker] = Process(worker, generation, self.code_loads)
                    self.sup.forked(worker, 10_000 + worker)
                case Stop(worker=worker, fast=fast):
                    process = self.processes[worker]
                    assert not process.killed
                    assert fast == self.sup.fast
                    if process.ready and not process.signalled and not self.sup.stopping:
                        # Drained to replace it or to scale down: enough others serve.
                        assert len(self.serving()) - 1 >= self.sup.target, (
                            f"worker {worker} drained with {len(self.serving())} serving "
                            f"and a target of {self.sup.target}"
                        )
                    process.signalled = "QUIT" if fast else "TERM"
                case Kill(worker=worker):
                    process = self.processes[worker]
                    assert not process.killed
                    assert process.signalled or process.liveness_killed or not process.ready, (
                        f"a serving worker killed: {process}"
                    )
                    if not (process.ready or process.signalled or process.liveness_killed):
                        self.failures += 1  # not ready within READY_TIMEOUT: a failed start
                    process.killed = True
                case Exit():
                    assert self.sup.done
                    # Only what did not die of SIGKILL may be left behind.
                    assert all(p.killed for p in self.processes.values())
                    self.exit = action

    def exits(self, process: Process, code: int) -> None:
        del self.processes[process.id]
        self.act(self.sup.exited(process.id, code, self.now))

    def pick(self, candidates: list[Process], index: int) -> Process | None:
        return candidates[index % len(candidates)] if candidates else None

    # ------------------------------------------------------------ signals

    @precondition(lambda self: self.exit is None)
    @rule()
    def hup(self) -> None:
        self.act(self.sup.reload(self.now))

    @precondition(lambda self: self.exit is None)
    @rule(delta=st.sampled_from([1, -1]))
    def ttin_ttou(self, delta: int) -> None:
        self.act(self.sup.scale(delta, self.now))

    @precondition(lambda self: self.exit is None)
    @rule(fast=st.booleans())
    def term_or_quit(self, fast: bool) -> None:
        self.stop_requested = True
        self.act(self.sup.stop(self.now, fast=fast))

    # ------------------------------------------------------------ the code on disk

    @rule(loads=st.booleans())
    def deploy(self, loads: bool) -> None:
        """New code on disk: workers started from now on import it, or fail to."""
        self.code_loads = loads

    # ------------------------------------------------------------ workers

    @precondition(lambda self: self.exit is None)
    @rule(index=st.integers(0, 100))
    def boots(self, index: int) -> None:
        """A booting worker finishes importing: it is ready, or it could not load the app."""
        process = self.pick([p for p in self.alive() if not p.ready and not p.slow], index)
        if process is None:
            return
        if process.loads:
            process.ready = True
            self.act(self.sup.ready(process.id, self.now))
        else:
            self.failures += 1
            self.exits(process, APP_LOAD_ERROR)

    @precondition(lambda self: self.exit is None)
    @rule(index=st.integers(0, 100))
    def boots_slowly(self, index: int) -> None:
        process = self.pick([p for p in self.alive() if not p.ready], index)
        if process is not None:
            process.slow = True

    @precondition(lambda self: self.exit is None)
    @rule(index=st.integers(0, 100), code=st.sampled_from([1, -9, -11, 0]))
    def dies(self, index: int, code: int) -> None:
        """Any worker dies on its own: a crash, kill -9 from outside, a clean exit."""
        process = self.pick(list(self.processes.values()), index)
        if process is not None:
            self.failures += 1
            self.exits(process, code)

    @precondition(lambda self: self.exit is None)
    @rule(index=st.integers(0, 100))
    def stops_as_told(self, index: int) -> None:
        process = self.pick([p for p in self.processes.values() if p.signalled or p.killed], index)
        if process is not None:
            self.exits(process, -9 if process.killed else 0)

    @precondition(lambda self: self.exit is None)
    @rule(index=st.integers(0, 100))
    def asks_to_be_recycled(self, index: int) -> None:
        process = self.pick(self.serving(), index)
        if process is not None:
            self.act(self.sup.recycle(process.id, "max-requests", self.now))

    @precondition(lambda self: self.exit is None)
    @rule(index=st.integers(0, 100))
    def misses_its_heartbeat(self, index: int) -> None:
        process = self.pick(self.serving(), index)
        if process is not None:
            self.failures += 1
            process.liveness_killed = True
            self.act(self.sup.kill(process.id, "missed its heartbeat", self.now))

    @precondition(lambda self: self.exit is None)
    @rule(seconds=st.sampled_from([0.05, 0.3, 1.0, 3.0, 6.0, 30.0, READY_TIMEOUT + 1]))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds
        self.act(self.sup.tick(self.now))

    # ------------------------------------------------------------ invariants

    @invariant()
    def the_pool_stays_bounded(self) -> None:
        if not self.sup.stopping:
            assert len(self.alive()) <= self.sup.target + SURPLUS, (
                f"{len(self.alive())} workers for a target of {self.sup.target}"
            )

    @invariant()
    def the_tables_agree(self) -> None:
        if self.exit is None:
            assert set(self.processes) == set(self.sup.workers)
            for process in self.processes.values():
                state = self.sup.workers[process.id]
                assert (state.phase is Phase.STOPPING) == bool(process.signalled or process.killed)

    @invariant()
    def readiness_follows_the_serving_workers(self) -> None:
        reason = self.sup.not_ready()
        serving = len(self.serving())
        if self.sup.stopping:
            assert reason == "stopping"
        elif serving >= self.sup.target:
            assert reason == "", f"not ready ({reason}) with {serving} serving"
        else:
            assert reason or serving, "ready with no worker serving"
        if self.was_ready and reason:
            assert self.sup.stopping or self.failures > self.failures_seen, (
                f"readiness lost ({reason}) with no stop and no failure"
            )
        self.was_ready = not reason
        self.failures_seen = self.failures

    @invariant()
    def the_master_never_spins(self) -> None:
        wakeup = self.sup.wakeup()
        assert wakeup is None or wakeup > self.now, f"woken at {wakeup} at {self.now}"
        assert self.sup.tick(self.now) == [], "a second look at the same moment acts again"

    # ------------------------------------------------------------ quiescence

    def settle(self, rounds: int) -> bool:
        """Let every worker do what it is bound to (boot, finish stopping) and time pass to
        the supervisor's next deadline, until nothing changes. False if it keeps changing."""
        for _ in range(rounds):
            if self.exit is not None:
                return True
            moving = [p for p in self.processes.values() if p.signalled or p.killed] + [
                p for p in self.alive() if not p.ready and not p.slow
            ]
            if moving:
                process = moving[0]
                if process.signalled or process.killed:
                    self.exits(process, -9 if process.killed else 0)
                elif process.loads:
                    process.ready = True
                    self.act(self.sup.ready(process.id, self.now))
                else:
                    self.failures += 1
                    self.exits(process, APP_LOAD_ERROR)
                continue
            wakeup = self.sup.wakeup()
            if wakeup is None:
                return True
            self.now = wakeup
            self.act(self.sup.tick(self.now))
        return False

    @rule()
    def quiet(self) -> None:
        """Nothing more is sent; every worker settles: the goal is reached, or the master
        exited for a reason."""
        if not self.settle(300):
            # Only a replacement that keeps failing to import, beside workers that serve
            # steadily, retries forever (with a backoff). Fix the code: then it must settle.
            assert not self.code_loads and self.serving()
            self.code_loads = True
            assert self.settle(300), "no quiet point even with code that loads"
        if self.exit is not None:
            if self.exit.code == 0:
                assert self.stop_requested, "exited 0 with no TERM or QUIT"
            else:
                assert self.failures, f"exited {self.exit.code} with no failure"
                if self.exit.code == 1:
                    assert self.sup.crashes >= CRASH_LOOP_LIMIT
            return
        assert not self.sup.stopping
        assert self.sup.not_ready() == ""
        assert self.sup.wakeup() is None, "quiet, yet a deadline is pending"
        assert len(self.processes) == self.sup.target, (
            f"{len(self.processes)} workers for a target of {self.sup.target}"
        )
        assert all(p.ready and not p.signalled for p in self.processes.values())
        if self.sup.failed_generation != self.sup.generation:
            generations = {p.generation for p in self.processes.values()}
            assert generations == {self.sup.generation}, (
                f"generations {generations} after a reload to {self.sup.generation}"
            )
        assert not any(state.recycle for state in self.sup.workers.values())


SupervisorMachine.TestCase.settings = settings(stateful_step_count=60)
TestSupervisor = SupervisorMachine.TestCase


# ---------------------------------------------------------------- scenarios, step by step


def booted(target: int = 2) -> tuple[Supervisor, list[int]]:
    sup = Supervisor(target, graceful_timeout=10, limit=LIMIT)
    spawned = [a.worker for a in sup.tick(0.0) if isinstance(a, Spawn)]
    for worker in spawned:
        assert sup.ready(worker, 0.5) == []
    return sup, spawned


def test_a_hup_storm_keeps_the_pool_at_its_target() -> None:
    """Six HUPs while the first replacement boots: the booting ones of older generations are
    stopped, the serving ones stay until a replacement of the newest generation is ready."""
    sup, old = booted()
    now = 1.0
    booting = []
    for _ in range(6):
        actions = sup.reload(now)
        stopped = [a.worker for a in actions if isinstance(a, Stop)]
        assert stopped == booting  # the previous generation's replacement, never a server
        for worker in stopped:
            assert sup.exited(worker, -15, now) == []  # TERM while importing
        booting = [a.worker for a in actions if isinstance(a, Spawn)]
        assert len(booting) == 1  # one replacement at a time
        now += 0.3
    first = booting[0]
    actions = sup.ready(first, now)
    assert [type(a) for a in actions] == [Stop, Spawn]
    assert actions[0] == Stop(old[0])
    second = actions[1]
    assert isinstance(second, Spawn) and second.generation == 6
    assert sup.ready(second.worker, now) == [Stop(old[1])]
    live = [w for w in sup.workers.values() if w.phase is not Phase.STOPPING]
    assert {(w.id, w.generation) for w in live} == {(first, 6), (second.worker, 6)}


@pytest.fixture
def error_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """The supervisor's log lines (``muxwsgi`` may not propagate: setup_logging)."""
    logger = logging.getLogger("muxwsgi.error")
    logger.addHandler(caplog.handler)
    try:
        yield caplog
    finally:
        logger.removeHandler(caplog.handler)


def test_a_reload_that_cannot_import_keeps_the_old_workers(
    error_log: pytest.LogCaptureFixture,
) -> None:
    sup, old = booted()
    (spawn,) = sup.reload(1.0)
    assert isinstance(spawn, Spawn)
    assert sup.exited(spawn.worker, APP_LOAD_ERROR, 1.5) == []  # no retry, no stop
    assert "the reload to generation 1 is abandoned; 2 worker(s)" in error_log.text
    assert all(sup.workers[w].phase is Phase.READY for w in old)
    assert sup.wakeup() is None
    assert [type(a) for a in sup.reload(2.0)] == [Spawn]  # the next HUP tries again


def test_an_import_error_with_nothing_serving_stops_the_master() -> None:
    sup = Supervisor(3, graceful_timeout=10, limit=LIMIT)
    first, *others = (a.worker for a in sup.tick(0.0) if isinstance(a, Spawn))
    actions = sup.exited(first, APP_LOAD_ERROR, 0.5)
    assert actions == [Stop(w, fast=True) for w in others]
    assert sup.exited(others[0], -3, 0.6) == []
    assert sup.exited(others[1], -3, 0.6) == [Exit(APP_LOAD_ERROR)]


def test_a_worker_slow_to_be_ready_is_killed_and_ends_the_reload() -> None:
    sup, old = booted()
    (spawn,) = sup.reload(1.0)
    assert isinstance(spawn, Spawn)
    assert sup.wakeup() == 1.0 + READY_TIMEOUT
    assert sup.tick(1.0 + READY_TIMEOUT) == [Kill(spawn.worker)]
    assert sup.exited(spawn.worker, -9, 1.0 + READY_TIMEOUT) == []
    assert sup.failed_generation == 1
    assert all(sup.workers[w].phase is Phase.READY for w in old)


def test_term_during_a_reload_wins() -> None:
    sup, old = booted()
    (spawn,) = sup.reload(1.0)
    assert isinstance(spawn, Spawn)
    actions = sup.stop(1.1, fast=False)
    assert sorted(a.worker for a in actions if isinstance(a, Stop)) == [*old, spawn.worker]
    assert sup.ready(spawn.worker, 1.2) == [] and sup.reload(1.3) == []
    assert sup.scale(+1, 1.3) == []
    for worker in old:
        sup.exited(worker, 0, 2.0)
    assert sup.exited(spawn.worker, 0, 2.0) == [Exit(0)]


def test_ttin_and_ttou_during_a_reload_move_its_target() -> None:
    sup, old = booted()
    (first,) = sup.reload(1.0)
    (second,) = sup.scale(+1, 1.1)  # 3 to reach: a second replacement boots beside the first
    assert isinstance(first, Spawn) and isinstance(second, Spawn)
    assert sup.ready(first.worker, 1.2) == []  # 3 ready, the target: none drained
    assert sup.scale(-1, 1.3) == [Stop(old[0])]  # back to 2: the oldest outdated one drains
    assert sup.ready(second.worker, 1.4) == [Stop(old[1])]
    live = [w.id for w in sup.workers.values() if w.phase is Phase.READY]
    assert live == [first.worker, second.worker]


def test_workers_that_keep_dying_at_start_make_the_master_give_up() -> None:
    sup = Supervisor(1, graceful_timeout=10, limit=LIMIT)
    now = 0.0
    actions = sup.tick(now)
    for crash in range(1, CRASH_LOOP_LIMIT + 1):
        (spawn,) = actions
        assert isinstance(spawn, Spawn)
        sup.ready(spawn.worker, now + 0.1)
        now += 0.2
        actions = sup.exited(spawn.worker, 9, now)
        if crash < CRASH_LOOP_LIMIT:
            assert actions == []  # a backoff first, growing
            wakeup = sup.wakeup()
            assert wakeup is not None and wakeup == now + 0.1 * 2**crash
            now = wakeup
            actions = sup.tick(now)
    (exit,) = actions
    assert isinstance(exit, Exit) and exit.code == 1
    assert "keep dying right after they start (5 in a row)" in exit.message


def test_a_replacement_that_keeps_failing_beside_steady_workers_is_retried() -> None:
    sup, old = booted()
    now = 100.0
    (spawn,) = sup.exited(old[0], -11, now)  # lived long: respawned at once
    for _ in range(3 * CRASH_LOOP_LIMIT):
        assert isinstance(spawn, Spawn)
        assert sup.exited(spawn.worker, APP_LOAD_ERROR, now) == []
        assert not sup.stopping  # the other one serves: keep trying, never give up
        wakeup = sup.wakeup()
        assert wakeup is not None and now < wakeup <= now + MAX_BACKOFF
        now = wakeup
        (spawn,) = sup.tick(now)
    assert sup.crashes > CRASH_LOOP_LIMIT


def test_readiness_from_start_to_stop() -> None:
    """Ready once the target serves; TTIN keeps it ready while its worker boots; a serving
    worker's death makes it unready until its replacement serves; TERM at once."""
    sup = Supervisor(2, graceful_timeout=10, limit=LIMIT)
    first, second = (a.worker for a in sup.tick(0.0) if isinstance(a, Spawn))
    assert sup.not_ready() == "0 of 2 worker(s) ready"
    sup.ready(first, 0.1)
    assert sup.not_ready() == "1 of 2 worker(s) ready"
    sup.ready(second, 0.2)
    assert sup.not_ready() == ""
    (third,) = sup.scale(+1, 1.0)
    assert isinstance(third, Spawn)
    assert sup.not_ready() == ""  # two serve, as before the TTIN
    sup.ready(third.worker, 1.1)
    assert sup.not_ready() == ""
    (respawn,) = sup.exited(first, -9, 100.0)  # a serving worker killed: respawned at once
    assert isinstance(respawn, Spawn)
    assert sup.not_ready() == "2 of 3 worker(s) ready"  # the target is 3 now that it was reached
    sup.ready(respawn.worker, 100.5)
    assert sup.not_ready() == ""
    assert sup.scale(-1, 101.0) != []  # one drained: still ready
    assert sup.not_ready() == ""
    sup.stop(102.0, fast=False)
    assert sup.not_ready() == "stopping"


def test_workers_never_ready_are_failures_the_model_counts() -> None:
    """A case hypothesis found: workers killed for not being ready in time, again and again,
    end in the crash-loop exit, which the model must explain by those failures."""
    machine = SupervisorMachine()
    machine.start(workers=2, graceful=0.0)
    machine.time_passes(READY_TIMEOUT + 1)
    machine.time_passes(1.0)
    machine.ttin_ttou(1)
    machine.time_passes(READY_TIMEOUT + 1)
    machine.quiet()
