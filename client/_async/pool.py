"""Multiplexed connections to one or more endpoints: the I/O around the balancer's decisions
(client/_balancing.py says how connections and endpoints are chosen)."""

from __future__ import annotations

import dataclasses
import time

from .._balancing import RESOLVE_RETRY, SPARE_CHECK_INTERVAL, Balancer, EndpointState
from .._config import ClientConfig
from .._exceptions import ConnectError, ConnectTimeout, NotMuxWSGIError, PoolTimeout
from .._models import Endpoint, remaining
from .._primitives import AsyncBackground, AsyncEvent, AsyncGuard, async_resolve
from .connection import AsyncMuxConnection

__all__ = ("AsyncPool",)


class AsyncPool(Balancer[AsyncMuxConnection]):
    def __init__(
        self, endpoints: list[Endpoint], background: AsyncBackground, config: ClientConfig
    ) -> None:
        super().__init__(endpoints, config.max_connections_per_endpoint)
        self._background = background
        self._config = config
        self._guard = AsyncGuard()  # no block under it awaits
        self._changed = AsyncEvent()  # a stream finished, or a connection opened or died

    async def acquire(self, deadline: float | None) -> AsyncMuxConnection:
        """A connection with room for one more stream, reserved for the caller.

        Raises PoolTimeout when none frees up in time, ConnectError (or NotMuxWSGIError) when
        no endpoint can be reached.
        """
        while True:
            if self._names and self._resolve_due():
                await self._resolve()
            failed: Exception | None = None
            target: EndpointState[AsyncMuxConnection] | None = None
            spare: list[EndpointState[AsyncMuxConnection]] = []
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

    async def _open(self, state: EndpointState[AsyncMuxConnection], deadline: float | None) -> None:
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
                state.connect_failed(exc)
                self._changed.set()
            if isinstance(exc, NotMuxWSGIError):
                raise  # a configuration error, not a passing fault
            return
        with self._guard:
            state.connected(conn)
            self._changed.set()

    async def _open_in_background(self, state: EndpointState[AsyncMuxConnection]) -> None:
        try:
            await self._open(state, None)
        except Exception:  # _open ejected the endpoint; a request that needs it will report it
            pass

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
            self._resolved(wanted)
            self._changed.set()

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
