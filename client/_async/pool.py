"""Multiplexed connections to one or more endpoints, balanced by least outstanding streams.

Per endpoint a few connections (``max_connections_per_endpoint``): a new one opens when every
existing one is at the server's MAX_CONCURRENT_STREAMS. Every endpoint gets a connection as
soon as the pool is used (opened in the background while the request goes to one that is up),
so that least-outstanding balancing has all of them to choose from. An endpoint that fails to
connect (or whose connections die) is ejected for a backoff that grows as gRPC's does: 1 s,
x1.6, jitter ±20%, capped at 120 s; it comes back on the next success.

A host name is an endpoint per address it resolves to (gRPC's resolver and balancer split):
read at the first request, again every RESOLVE_INTERVAL, and sooner (at most once per
RESOLVE_RETRY) when every address is failing. An address that disappears stops taking new
streams; its connections close once their streams are done.
"""

from __future__ import annotations

import dataclasses
import random
import time
from dataclasses import dataclass, field
from typing import Any

from .._exceptions import ConnectError, ConnectTimeout, NotMuxWSGIError, PoolTimeout
from .._models import Endpoint
from .._primitives import AsyncBackground, AsyncEvent, AsyncGuard, async_resolve
from .connection import AsyncMuxConnection, remaining

__all__ = ("AsyncPool",)

BACKOFF_INITIAL = 1.0
BACKOFF_MULTIPLIER = 1.6
BACKOFF_JITTER = 0.2
BACKOFF_MAX = 120.0
RESOLVE_INTERVAL = 30.0
RESOLVE_RETRY = 1.0
#: How often a request looks for endpoints without a connection (to open one beside it).
SPARE_CHECK_INTERVAL = 0.1


@dataclass
class _EndpointState:
    endpoint: Endpoint
    connections: list[AsyncMuxConnection] = field(default_factory=list)
    opening: bool = False
    failures: int = 0
    ejected_until: float = 0.0
    last_error: Exception | None = None
    #: No longer among the addresses of its name: takes no new streams.
    retired: bool = False

    def may_connect(self, now: float) -> bool:
        """Whether a new connection may be opened to it now (none opening, not retired or
        ejected)."""
        return not self.opening and not self.retired and self.ejected_until <= now

    @property
    def usable(self) -> int:
        """How many of its connections may take new streams."""
        return sum(1 for c in self.connections if c.usable)

    def eject(self, error: Exception) -> None:
        self.failures += 1
        self.last_error = error
        backoff = min(BACKOFF_MAX, BACKOFF_INITIAL * BACKOFF_MULTIPLIER ** (self.failures - 1))
        backoff *= 1 + random.uniform(-BACKOFF_JITTER, BACKOFF_JITTER)
        self.ejected_until = time.monotonic() + backoff


class AsyncPool:
    def __init__(self, endpoints: list[Endpoint], background: AsyncBackground, config: Any) -> None:
        self._targets = endpoints
        self._names = any(endpoint.is_name for endpoint in endpoints)
        self._states = [] if self._names else [_EndpointState(e) for e in endpoints]
        self._resolved_at = -RESOLVE_INTERVAL
        self._next_spare_check = 0.0
        #: Some endpoint is retired (see _prune): a release may leave one of its connections
        #: idle, to be closed at once.
        self._retiring = False
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
            if self._names and self._resolve_due():
                await self._resolve()
            failed: Exception | None = None
            target: _EndpointState | None = None
            spare: list[_EndpointState] = []
            with self._guard:
                now = time.monotonic()
                # A few times a second is enough to look for dead connections and endpoints
                # without one, unless no connection has room (then the answer matters now).
                due = now >= self._next_spare_check
                conn = self._pick()
                idle = self._prune() if conn is None or due else []
                if conn is not None:
                    conn.outstanding += 1
                    if due:
                        self._next_spare_check = now + SPARE_CHECK_INTERVAL
                        spare = self._unconnected()
                        for state in spare:
                            state.opening = True
                else:
                    target = self._to_open()
                    if target is not None:
                        target.opening = True
                    else:
                        failed = self._all_failed()
                        if failed is None:
                            self._changed.clear()
            for retired in idle:
                await retired.aclose()
            if conn is not None:
                for state in spare:
                    self._background.spawn(self._open_in_background, state)
                return conn
            if failed is not None:
                if self._names and time.monotonic() - self._resolved_at >= RESOLVE_RETRY:
                    continue  # every address failing: read the name again before giving up
                raise failed
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

    async def _open_in_background(self, state: _EndpointState) -> None:
        try:
            await self._open(state, None)
        except Exception:  # _open ejected the endpoint; a request that needs it will report it
            pass

    def _unconnected(self) -> list[_EndpointState]:
        """Endpoints that may take streams but have no usable connection, none opening."""
        now = time.monotonic()
        return [s for s in self._states if s.may_connect(now) and not s.usable]

    def _resolve_due(self) -> bool:
        since = time.monotonic() - self._resolved_at
        if since >= RESOLVE_INTERVAL:
            return True
        return since >= RESOLVE_RETRY and self._all_failed() is not None

    async def _resolve(self) -> None:
        """Read the addresses of every host name; add endpoints that appeared and retire those
        that went. A name that fails to resolve keeps the addresses it had (or, having none,
        stays a name: connecting to it then says why it fails)."""
        self._resolved_at = time.monotonic()  # first, so that concurrent callers don't repeat it
        wanted: list[Endpoint] = []
        for target in self._targets:
            if not target.is_name:
                wanted.append(target)
                continue
            try:
                addresses = await async_resolve(target.host, target.port)
            except OSError:
                had = [s.endpoint for s in self._states if s.endpoint.host == target.host]
                wanted.extend(had or [target])
                continue
            wanted.extend(dataclasses.replace(target, address=a) for a in addresses)
        with self._guard:
            known = {state.endpoint: state for state in self._states}
            for state in self._states:
                state.retired = state.endpoint not in wanted
            self._retiring = any(state.retired for state in self._states)
            for endpoint in dict.fromkeys(wanted):
                if endpoint not in known:
                    self._states.append(_EndpointState(endpoint))
            self._changed.set()

    def _prune(self) -> list[AsyncMuxConnection]:
        """Forget dead connections; return the idle ones of retired endpoints, to be closed."""
        idle: list[AsyncMuxConnection] = []
        retired = False
        for state in self._states:
            retired = retired or state.retired
            for conn in [c for c in state.connections if not c.outstanding]:
                if conn.closed:
                    state.connections.remove(conn)
                elif state.retired:
                    state.connections.remove(conn)
                    idle.append(conn)
        if retired:
            self._states = [s for s in self._states if s.connections or not s.retired]
            self._retiring = any(state.retired for state in self._states)
        return idle

    def _pick(self) -> AsyncMuxConnection | None:
        now = time.monotonic()
        best: AsyncMuxConnection | None = None
        for state in self._states:
            if state.ejected_until > now or state.retired:
                continue
            for conn in state.connections:
                if conn.capacity > 0 and (best is None or conn.outstanding < best.outstanding):
                    best = conn
        return best

    def _to_open(self) -> _EndpointState | None:
        now = time.monotonic()
        limit = self._config.max_connections_per_endpoint
        candidates = [s for s in self._states if s.may_connect(now) and s.usable < limit]
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
            # Only a dead connection or a retired endpoint's has anything to prune.
            idle = self._prune() if self._retiring or conn.closed else []
            self._changed.set()
        for retired in idle:
            await retired.aclose()

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
