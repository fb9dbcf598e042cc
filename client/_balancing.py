"""The pool's decisions, without I/O: which connection takes a stream, which endpoint gets a
new connection, which endpoints are left out for a while. Both flavours' pools inherit them
and add the I/O (opening, resolving, closing).

Connections. Per endpoint a few (``max_connections_per_endpoint``): a new one opens when every
existing one is at the server's MAX_CONCURRENT_STREAMS. Every endpoint gets a connection as
soon as the pool is used (opened in the background while the request goes to one that is up),
so that the balancer has all of them to choose from.

Balancing (``balancing``). "peak_ewma": power of two choices (two connections drawn at random,
the cheaper one wins) over Finagle's peak EWMA cost, the endpoint's decayed latency x (streams
in flight + 1): a slow endpoint gets a small share, a loaded one fewer, and a drawing costs two
figures, not a scan. "least_outstanding": the connection with the fewest streams in flight,
ties taken in turn. With one connection there is nothing to choose and nothing is computed.

Failures. A connection attempt that fails holds the endpoint's next attempt back as gRPC's
connection backoff does (1 s, x1.6 per consecutive failure, jitter ±20%, at most 120 s).
``ejection_failures`` consecutive failures (attempts that fail, connections that die without a
GOAWAY) eject the endpoint, as Envoy's outlier detection does: no new streams, no new
connections, for ``ejection_time``, doubled per consecutive ejection up to
``max_ejection_time``; never more than ``max_ejection_percent`` of the endpoints at once (one
may always be, unless it is the only one). A response ends both series.

Names. A host name is an endpoint per address it resolves to (gRPC's resolver and balancer
split). An address that appears gets a connection in the background; one that disappears
stops taking new streams, and its connections close once their streams are done.
"""

from __future__ import annotations

import math
import random
import time
from typing import Generic, Protocol, TypeVar

from ._config import ClientConfig
from ._exceptions import ConnectError
from ._metrics import ClientMetrics, EndpointMetrics, EndpointStats, Histogram, RequestCounts
from ._models import Endpoint

__all__ = ("Balanced", "Balancer", "EndpointState")

BACKOFF_INITIAL = 1.0
BACKOFF_MULTIPLIER = 1.6
BACKOFF_JITTER = 0.2
BACKOFF_MAX = 120.0
#: The least time between two readings of the names that a failure asks for (gRPC waits 30 s,
#: too long for a rolling restart, whose pods all change address within seconds).
RESOLVE_RETRY = 1.0
#: How often a request looks for dead connections, endpoints without a connection (to open one
#: beside it) and ejections that ended.
SPARE_CHECK_INTERVAL = 0.1

_monotonic = time.monotonic
_random = random.random


class Balanced(Protocol):
    """What the balancer reads of a connection."""

    #: Streams reserved by the pool and not yet finished (the balancing figure).
    outstanding: int
    #: Its endpoint's figures (shared by the endpoint's connections).
    stats: EndpointStats

    @property
    def usable(self) -> bool:
        """Whether new streams may go to it."""

    @property
    def capacity(self) -> int:
        """How many more streams the server allows on it now."""

    @property
    def closed(self) -> bool:
        """Whether it is dead (for good)."""

    @property
    def failed(self) -> bool:
        """Whether it died without a GOAWAY (a failure of its endpoint)."""


C = TypeVar("C", bound=Balanced)


class EndpointState(Generic[C]):
    """One endpoint (an address), its connections, and whether it is left out now. (A plain
    class: the compiled build has no generic dataclasses.)"""

    __slots__ = (
        "connect_failures",
        "connections",
        "ejected_until",
        "endpoint",
        "last_error",
        "opening",
        "retired",
        "retry_at",
        "stats",
    )

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.stats = EndpointStats()
        self.connections: list[C] = []
        self.opening = False
        #: Consecutive connection attempts that failed (the backoff grows with them).
        self.connect_failures = 0
        #: No connection attempt before this time (the backoff after a failed one).
        self.retry_at = 0.0
        self.ejected_until = 0.0
        self.last_error: Exception | None = None
        #: No longer among the addresses of its name: takes no new streams.
        self.retired = False

    def may_connect(self, now: float) -> bool:
        """Whether a new connection may be opened to it now."""
        return (
            not self.opening
            and not self.retired
            and self.retry_at <= now
            and self.ejected_until <= now
        )

    def takes_streams(self, now: float) -> bool:
        return not self.retired and self.ejected_until <= now

    @property
    def usable(self) -> int:
        """How many of its connections may take new streams."""
        return sum(1 for c in self.connections if c.usable)

    def describe(self, now: float) -> str:
        if self.retired:
            return "draining"
        if self.ejected_until > now:
            return "ejected"
        if self.usable:
            return "ready"
        if self.retry_at > now:
            return "backoff"
        return "connecting"


class Balancer(Generic[C]):
    """The endpoints, their connections and the choices between them. Holds no lock: the pool
    calls it under its guard."""

    def __init__(self, endpoints: list[Endpoint], config: ClientConfig) -> None:
        self._targets = endpoints
        self._config = config
        self._limit = config.max_connections_per_endpoint
        self._ewma = config.balancing == "peak_ewma"
        self._names = any(endpoint.is_name for endpoint in endpoints)
        self._states: list[EndpointState[C]] = (
            [] if self._names else [EndpointState(e) for e in endpoints]
        )
        #: The connections new streams may go to (of endpoints neither ejected nor retired):
        #: what a pick draws from, rebuilt by _refresh when that changes.
        self._ready: list[C] = []
        #: When an ejection ends (the ready list must then be rebuilt).
        self._next_return = math.inf
        self._next_spare_check = 0.0
        self._turn = 0  # least_outstanding: where the next scan starts (ties taken in turn)
        self._resolved_at = -math.inf
        self._resolutions = 0
        self._resolution_errors = 0
        #: Names are resolved (or there are none): before that there is nothing to pick from.
        self._resolved_once = not self._names
        #: Some endpoint is retired (see _prune): a release may leave one of its connections
        #: idle, to be closed at once.
        self._retiring = False
        #: Figures of endpoints that left the pool (their totals must not go down).
        self._gone = Histogram()
        self._gone_ejections = 0

    @property
    def connections(self) -> list[C]:
        return [conn for state in self._states for conn in state.connections]

    def drop(self) -> None:
        """Forget every connection without touching it (after fork: the parent's sockets)."""
        for state in self._states:
            state.connections.clear()
            state.opening = False
        self._ready = []

    # ---------------------------------------------------------------- picking

    def _pick(self, now: float) -> C | None:
        """A connection with room for a stream (see the module's docstring), or None."""
        ready = self._ready
        count = len(ready)
        if count == 1:
            conn = ready[0]
            return conn if conn.capacity > 0 else None
        if not count:
            return None
        if self._ewma:
            first = int(_random() * count)
            second = int(_random() * (count - 1))
            a, b = ready[first], ready[second + 1 if second >= first else second]
            if a.capacity > 0:
                if b.capacity <= 0 or a.stats.cost(a.outstanding, now) <= b.stats.cost(
                    b.outstanding, now
                ):
                    return a
                return b
            if b.capacity > 0:
                return b
        return self._least(ready, None)

    def _least(self, ready: list[C], avoid: EndpointStats | None) -> C | None:
        """The connection with room and the fewest outstanding, ties taken in turn; not of
        the ``avoid`` endpoint unless no other has room."""
        count = len(ready)
        if not count:
            return None
        self._turn = start = (self._turn + 1) % count
        best: C | None = None
        fallback: C | None = None
        for index in range(start, start + count):
            conn = ready[index % count]
            if conn.capacity <= 0:
                continue
            if conn.stats is avoid:
                if fallback is None or conn.outstanding < fallback.outstanding:
                    fallback = conn
            elif best is None or conn.outstanding < best.outstanding:
                best = conn
        return best if best is not None else fallback

    def _refresh(self, now: float) -> None:
        """Rebuild the ready list: after a connection opened, died or got a GOAWAY, an
        endpoint was ejected or came back, or the names changed."""
        self._ready = [
            conn
            for state in self._states
            if state.takes_streams(now)
            for conn in state.connections
            if conn.usable
        ]
        self._next_return = min(
            (s.ejected_until for s in self._states if s.ejected_until > now), default=math.inf
        )

    # ---------------------------------------------------------------- housekeeping

    def _prune(self, now: float) -> list[C]:
        """Forget dead connections and retired endpoints that have none left; rebuild the
        ready list; return the idle connections of retired endpoints, to be closed."""
        idle: list[C] = []
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
            kept: list[EndpointState[C]] = []
            for state in self._states:
                if state.connections or not state.retired:
                    kept.append(state)
                else:
                    self._gone = self._gone + state.stats.histogram()
                    self._gone_ejections += state.stats.ejections
            self._states = kept
            self._retiring = any(state.retired for state in self._states)
        self._refresh(now)
        return idle

    def _unconnected(self, now: float) -> list[EndpointState[C]]:
        """Endpoints that may take streams but have no usable connection, none opening."""
        return [s for s in self._states if s.may_connect(now) and not s.usable]

    def _to_open(self, now: float) -> EndpointState[C] | None:
        """The endpoint to open a connection to, when no connection has room."""
        candidates = [s for s in self._states if s.may_connect(now) and s.usable < self._limit]
        if not candidates:
            return None
        return min(candidates, key=lambda s: (len(s.connections), s.connect_failures))

    def _all_failed(self, now: float) -> Exception | None:
        """Every endpoint is failing: none opening, none with a connection, none that may be
        tried now (the error names each one's last failure)."""
        if not self._resolved_once:
            return None
        live = [s for s in self._states if not s.retired]
        if any(s.opening or s.connections or s.may_connect(now) for s in live):
            return None
        errors = "; ".join(str(s.last_error) for s in live if s.last_error)
        return ConnectError(f"no endpoint reachable: {errors or 'no address'}")

    # ---------------------------------------------------------------- failures

    def _state_of(self, conn: C) -> EndpointState[C] | None:
        for state in self._states:
            if state.stats is conn.stats:
                return state
        return None

    def _connected(self, state: EndpointState[C], conn: C, now: float) -> None:
        state.opening = False
        state.connect_failures = 0
        state.retry_at = 0.0
        state.connections.append(conn)
        self._refresh(now)

    def _connect_failed(self, state: EndpointState[C], error: Exception, now: float) -> None:
        """A connection attempt failed: hold the next one back (gRPC's backoff); count a
        failure of the endpoint."""
        state.opening = False
        state.last_error = error
        state.connect_failures += 1
        backoff = BACKOFF_INITIAL * BACKOFF_MULTIPLIER ** (state.connect_failures - 1)
        backoff = min(BACKOFF_MAX, backoff) * (1 + random.uniform(-BACKOFF_JITTER, BACKOFF_JITTER))
        state.retry_at = now + backoff
        self._failed(state, now)

    def _failed(self, state: EndpointState[C], now: float) -> None:
        """One more consecutive failure of ``state``'s endpoint: eject it at the threshold,
        unless that would eject more than max_ejection_percent of the endpoints."""
        stats = state.stats
        stats.failures += 1
        stats.failed += 1
        config = self._config
        if stats.failures < config.ejection_failures or state.ejected_until > now:
            return
        live = [s for s in self._states if not s.retired]
        if len(live) < 2 or not config.max_ejection_percent:
            return  # the only endpoint is better than none
        allowed = max(1, len(live) * config.max_ejection_percent // 100)
        if sum(1 for s in live if s.ejected_until > now) >= allowed:
            return
        duration = min(config.max_ejection_time, config.ejection_time * 2.0**stats.in_row)
        state.ejected_until = now + duration
        stats.failures = 0
        stats.in_row += 1
        stats.ejections += 1
        self._refresh(now)

    # ---------------------------------------------------------------- names

    def _resolved(self, wanted: list[Endpoint], now: float) -> None:
        """The names were read again: ``wanted`` are the endpoints now. Add those that
        appeared; retire those that went (and take back those that came back)."""
        known = {state.endpoint for state in self._states}
        for state in self._states:
            state.retired = state.endpoint not in wanted
        self._retiring = any(state.retired for state in self._states)
        for endpoint in dict.fromkeys(wanted):
            if endpoint not in known:
                self._states.append(EndpointState(endpoint))
        self._resolutions += 1
        self._resolved_once = True
        self._refresh(now)

    # ---------------------------------------------------------------- metrics

    def _metrics(self, counts: RequestCounts) -> ClientMetrics:
        now = _monotonic()
        endpoints = tuple(
            EndpointMetrics(
                endpoint=str(state.endpoint),
                state=state.describe(now),
                connections=sum(1 for c in state.connections if not c.closed),
                outstanding=sum(c.outstanding for c in state.connections),
                latency=state.stats.histogram(),
                failures=state.stats.failed,
                ejections=state.stats.ejections,
                ewma=state.stats.ewma,
            )
            for state in self._states
        )
        return ClientMetrics(
            requests=counts.requests,
            errors=dict(counts.errors),
            retries=dict(counts.retries),
            endpoints=endpoints,
            gone=self._gone,
            gone_ejections=self._gone_ejections,
            resolutions=self._resolutions,
            resolution_errors=self._resolution_errors,
        )
