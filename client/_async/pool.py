"""Multiplexed connections to one or more endpoints, balanced by least outstanding streams.

Per endpoint a few connections (``max_connections_per_endpoint``): a new one opens when every
existing one is at the server's MAX_CONCURRENT_STREAMS. An endpoint that fails to connect (or
whose connections die) is ejected for a backoff that grows as gRPC's does: 1 s, x1.6, jitter
±20%, capped at 120 s; it comes back on the next success.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

from .._exceptions import ConnectError, ConnectTimeout, NotMuxWSGIError, PoolTimeout
from .._models import Endpoint
from .._primitives import AsyncBackground, AsyncEvent, AsyncGuard
from .connection import AsyncMuxConnection, remaining

__all__ = ("AsyncPool",)

BACKOFF_INITIAL = 1.0
BACKOFF_MULTIPLIER = 1.6
BACKOFF_JITTER = 0.2
BACKOFF_MAX = 120.0


@dataclass
class _EndpointState:
    endpoint: Endpoint
    connections: list[AsyncMuxConnection] = field(default_factory=list)
    opening: bool = False
    failures: int = 0
    ejected_until: float = 0.0
    last_error: Exception | None = None

    def eject(self, error: Exception) -> None:
        self.failures += 1
        self.last_error = error
        backoff = min(BACKOFF_MAX, BACKOFF_INITIAL * BACKOFF_MULTIPLIER ** (self.failures - 1))
        backoff *= 1 + random.uniform(-BACKOFF_JITTER, BACKOFF_JITTER)
        self.ejected_until = time.monotonic() + backoff


class AsyncPool:
    def __init__(self, endpoints: list[Endpoint], background: AsyncBackground, config: Any) -> None:
        self._states = [_EndpointState(endpoint) for endpoint in endpoints]
        self._background = background
        self._config = config
        self._guard = AsyncGuard()  # no block under it awaits
        self._changed = AsyncEvent()  # a stream finished, or a connection opened or died

    @property
    def connections(self) -> list[AsyncMuxConnection]:
        return [conn for state in self._states for conn in state.connections]

    async def acquire(self, deadline: float | None) -> AsyncMuxConnection:
        """A connection with room for one more stream, reserved for the caller.

        Raises PoolTimeout when none frees up in time, ConnectError (or NotMuxWSGIError) when
        no endpoint can be reached.
        """
        while True:
            with self._guard:
                self._prune()
                conn = self._pick()
                if conn is not None:
                    conn.outstanding += 1
                    return conn
                target = self._to_open()
                if target is not None:
                    target.opening = True
                else:
                    failed = self._all_failed()
                    if failed is not None:
                        raise failed
                    self._changed.clear()
            if target is not None:
                await self._open(target, deadline)
                continue
            if not await self._changed.wait(remaining(deadline)):
                raise PoolTimeout("no connection could take the request before the deadline")

    async def _open(self, state: _EndpointState, deadline: float | None) -> None:
        timeout = self._config.connect_timeout
        left = remaining(deadline)
        if left is not None:
            timeout = min(timeout, max(0.0, left))
        try:
            conn = await AsyncMuxConnection.open(
                state.endpoint, self._background, self._config, timeout
            )
        except (ConnectError, ConnectTimeout, NotMuxWSGIError) as exc:
            with self._guard:
                state.opening = False
                state.eject(exc)
                self._changed.set()
            if isinstance(exc, NotMuxWSGIError):
                raise  # a configuration error, not a passing fault
            return
        with self._guard:
            state.opening = False
            state.failures = 0
            state.ejected_until = 0.0
            state.connections.append(conn)
            self._changed.set()

    def _prune(self) -> None:
        for state in self._states:
            dead = [c for c in state.connections if c.closed and not c.outstanding]
            for conn in dead:
                state.connections.remove(conn)

    def _pick(self) -> AsyncMuxConnection | None:
        now = time.monotonic()
        best: AsyncMuxConnection | None = None
        for state in self._states:
            if state.ejected_until > now:
                continue
            for conn in state.connections:
                if conn.capacity > 0 and (best is None or conn.outstanding < best.outstanding):
                    best = conn
        return best

    def _to_open(self) -> _EndpointState | None:
        now = time.monotonic()
        limit = self._config.max_connections_per_endpoint
        candidates = [
            s
            for s in self._states
            if not s.opening
            and s.ejected_until <= now
            and len([c for c in s.connections if c.usable]) < limit
        ]
        if not candidates:
            return None
        return min(candidates, key=lambda s: (len(s.connections), s.failures))

    def _all_failed(self) -> Exception | None:
        """Every endpoint is ejected and none is opening or has a live connection."""
        now = time.monotonic()
        if any(s.opening or s.ejected_until <= now or s.connections for s in self._states):
            return None
        errors = "; ".join(str(s.last_error) for s in self._states if s.last_error)
        return ConnectError(f"no endpoint reachable: {errors}")

    async def release(self, conn: AsyncMuxConnection) -> None:
        """The caller's stream on ``conn`` is finished (successfully or not)."""
        with self._guard:
            conn.outstanding -= 1
            self._prune()
            self._changed.set()

    async def aclose(self) -> None:
        for conn in self.connections:
            await conn.aclose()
        for state in self._states:
            state.connections.clear()

    def drop(self) -> None:
        """Forget every connection without touching it (after fork: the parent's sockets)."""
        for state in self._states:
            state.connections.clear()
            state.opening = False
