"""The worker's side of the scoreboard: publish liveness and counters, ask to be retired."""

from __future__ import annotations

import logging
import os
import random
import time

from .config import Config
from .scoreboard import Scoreboard, Slot, WorkerStatus
from .worker import Worker

__all__ = ("WorkerHooks",)

log = logging.getLogger("muxwsgi.error")


class WorkerHooks:
    """Called by the worker: ``ready()`` once it accepts, ``tick(worker)`` every second."""

    def __init__(self, config: Config, scoreboard: Scoreboard, index: int) -> None:
        self.config = config
        self.scoreboard = scoreboard
        self.index = index
        self.worker: Worker | None = None
        self.generation = scoreboard.read(index).generation
        self.status = WorkerStatus.BOOTING
        self.retire_reason = 0
        self.harakiri_count = 0
        self.started = time.monotonic()
        # Jitter spreads the restarts of workers that started together (gunicorn's lesson).
        jitter = config.max_requests_jitter
        self.max_requests = config.max_requests + (random.randint(0, jitter) if jitter else 0)

    def ready(self) -> None:
        self.status = WorkerStatus.READY
        self._publish(None)

    def tick(self, worker: Worker) -> None:
        runner = worker.runner
        now = time.monotonic()
        config = self.config
        if worker.stopping:
            self.status = WorkerStatus.DRAINING
        elif runner is not None and self.status is WorkerStatus.READY:
            if self.max_requests and runner.requests >= self.max_requests:
                self._retire(1)
            elif config.max_worker_lifetime and now - self.started > config.max_worker_lifetime:
                self._retire(2)
        if runner is not None and config.harakiri and not worker.stopping:
            oldest = runner.oldest_start()
            if oldest and now - oldest > config.harakiri:
                self.harakiri_count += 1
                self._retire(4)
                worker.harakiri(now)
                self.status = WorkerStatus.DRAINING
        self._publish(worker)

    def _retire(self, reason: int) -> None:
        self.status = WorkerStatus.RETIRE
        self.retire_reason = reason

    def _publish(self, worker: Worker | None) -> None:
        runner = worker.runner if worker is not None else None
        ctx = worker.ctx if worker is not None else None
        self.scoreboard.write(
            self.index,
            Slot(
                pid=os.getpid(),
                generation=self.generation,
                status=self.status,
                heartbeat=time.monotonic(),
                requests=runner.requests if runner else 0,
                exceptions=runner.exceptions if runner else 0,
                connections=len(ctx.connections) if ctx else 0,
                streams=runner.active if runner else 0,
                oldest_request=runner.oldest_start() if runner else 0.0,
                response_time=runner.response_time() if runner else 0.0,
                harakiri_count=self.harakiri_count,
                retire_reason=self.retire_reason,
            ),
        )
