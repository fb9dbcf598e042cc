"""Multiplexed connections to one or more endpoints: the I/O around the balancer's decisions
(client/_balancing.py says how connections and endpoints are chosen), and the reading of host
names (client/_discovery.py says where their addresses come from)."""

from __future__ import annotations

from .._balancing import RESOLVE_RETRY, SPARE_CHECK_INTERVAL, Balancer, EndpointState
from .._config import ClientConfig
from .._discovery import AsyncResolver, endpoints_of
from .._exceptions import ConnectError, ConnectTimeout, NotMuxWSGIError, PoolTimeout
from .._metrics import ClientMetrics, EndpointStats, RequestCounts
from .._models import Endpoint, remaining
from .._primitives import AsyncBackground, AsyncEvent, AsyncGuard, async_resolve, async_sleep
from .connection import AsyncMuxConnection, _monotonic

__all__ = ("AsyncPool",)


class AsyncPool(Balancer[AsyncMuxConnection]):
    def __init__(
        self,
        endpoints: list[Endpoint],
        background: AsyncBackground,
        config: ClientConfig,
        resolver: AsyncResolver | None = None,
    ) -> None:
        super().__init__(endpoints, config)
        self._background = background
        self._resolver = resolver
        self._guard = AsyncGuard()  # no block under it awaits
        self._changed = AsyncEvent()  # a stream finished, a connection opened or died, ...
        self._resolve_soon = AsyncEvent()  # a failure asks for the names to be read again
        self._discovering = False  # the task (or thread) reading the names runs
        self._closed = False

    async def acquire(
        self, deadline: float | None, avoid: EndpointStats | None = None
    ) -> AsyncMuxConnection:
        """A connection with room for one more stream, reserved for the caller; one not of
        the ``avoid`` endpoint (where a request just failed) if another has room.

        Raises PoolTimeout when none frees up in time, ConnectError (or NotMuxWSGIError) when
        no endpoint can be reached.
        """
        reread = False  # every endpoint failed once: the names were read again
        while True:
            if self._names and not self._discovering:
                self._discovering = True
                self._background.spawn(self._discover)
            failed: Exception | None = None
            target: EndpointState[AsyncMuxConnection] | None = None
            spare: list[EndpointState[AsyncMuxConnection]] = []
            with self._guard:
                now = _monotonic()
                # A few times a second is enough to look for dead connections and endpoints
                # without one, unless no connection has room (then the answer matters now).
                due = now >= self._next_spare_check or now >= self._next_return
                conn = self._pick(now) if avoid is None else self._least(self._ready, avoid)
                idle = self._prune(now) if conn is None or due else []
                if conn is None:  # the prune may have found some (an ejection that ended)
                    conn = self._pick(now)
                if conn is not None:
                    conn.outstanding += 1
                    if due:
                        self._next_spare_check = now + SPARE_CHECK_INTERVAL
                        spare = self._unconnected(now)
                        for state in spare:
                            state.opening = True
                else:
                    target = self._to_open(now)
                    if target is not None:
                        target.opening = True
                    else:
                        failed = self._all_failed(now)
                        if failed is None:
                            self._changed.clear()
                resolutions = self._resolutions
            for retired in idle:
                await retired.aclose()
            if conn is not None:
                for state in spare:
                    self._background.spawn(self._open_in_background, state)
                return conn
            if failed is not None:
                if not self._names or reread:
                    raise failed
                reread = True  # every address failing: read the names again before giving up
                self._resolve_soon.set()
                while self._resolutions == resolutions:
                    self._changed.clear()
                    if self._resolutions != resolutions:
                        break
                    if not await self._changed.wait(remaining(deadline)):
                        raise failed
                continue
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
                state.endpoint, self._background, self._config, timeout, state.stats
            )
        except (ConnectError, ConnectTimeout, NotMuxWSGIError) as exc:
            with self._guard:
                self._connect_failed(state, exc, _monotonic())
                self._changed.set()
            self._resolve_soon.set()
            if isinstance(exc, NotMuxWSGIError):
                raise  # a configuration error, not a passing fault
            return
        with self._guard:
            if self._closed:
                state.opening = False
            else:
                self._connected(state, conn, _monotonic())
                conn.on_change = self._connection_changed
            self._changed.set()
        if self._closed:
            await conn.aclose()

    async def _open_in_background(self, state: EndpointState[AsyncMuxConnection]) -> None:
        try:
            await self._open(state, None)
        except Exception:  # _open counted it; a request that needs it will report it
            pass

    def _connection_changed(self, conn: AsyncMuxConnection) -> None:
        """``conn`` got a GOAWAY or died (called by its reader, or the writer that failed): it
        takes no more streams; a death without a GOAWAY is a failure of its endpoint. Either
        may mean the endpoint is leaving: the names are read again soon."""
        with self._guard:
            now = _monotonic()
            state = self._state_of(conn)
            if state is not None and conn.failed:
                state.last_error = conn.error
                self._failed(state, now)
            self._refresh(now)
            self._changed.set()
        self._resolve_soon.set()

    # ---------------------------------------------------------------- names

    async def _discover(self) -> None:
        """Read the names now, then every resolve_interval, and sooner when a failure asks
        (at most once per RESOLVE_RETRY), until the pool closes."""
        interval = self._config.resolve_interval
        while not self._closed:
            self._resolve_soon.clear()
            await self._resolve()
            await self._resolve_soon.wait(interval)
            pause = min(RESOLVE_RETRY, interval) - (_monotonic() - self._resolved_at)
            if pause > 0 and not self._closed:
                await async_sleep(pause)

    async def _resolve(self) -> None:
        """Read the addresses of every host name; add endpoints that appeared and retire those
        that went. A name that fails to resolve, or resolves to nothing, keeps the addresses it
        had (or, having none, stays a name: connecting to it then says why it fails)."""
        self._resolved_at = _monotonic()
        wanted: list[Endpoint] = []
        for target in self._targets:
            if not target.is_name:
                wanted.append(target)
                continue
            try:
                if self._resolver is not None:
                    found = endpoints_of(target, await self._resolver(target.host, target.port))
                else:
                    found = endpoints_of(target, await async_resolve(target.host, target.port))
            except Exception:  # a user's resolver may raise anything: keep what we had
                found = []
            if not found:
                self._resolution_errors += 1
                found = [s.endpoint for s in self._states if s.endpoint.host == target.host]
            wanted.extend(found or [target])
        with self._guard:
            self._resolved(wanted, _monotonic())
            self._changed.set()

    # ---------------------------------------------------------------- the rest

    async def release(self, conn: AsyncMuxConnection) -> None:
        """The caller's stream on ``conn`` is finished (successfully or not)."""
        with self._guard:
            conn.outstanding -= 1
            # Only a dead connection or a retired endpoint's has anything to prune.
            idle = self._prune(_monotonic()) if self._retiring or conn.closed else []
            self._changed.set()
        for retired in idle:
            await retired.aclose()

    def metrics(self, counts: RequestCounts) -> ClientMetrics:
        with self._guard:
            return self._metrics(counts)

    async def aclose(self) -> None:
        self._closed = True
        self._resolve_soon.set()  # the names' reader leaves its wait
        for conn in self.connections:
            await conn.aclose()
        for state in self._states:
            state.connections.clear()
        self._ready = []
