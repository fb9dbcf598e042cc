"""The pool's decisions, without I/O: which connection takes a stream, which endpoint gets a
new connection, which endpoints are left out for a while. Both flavours' pools inherit them
and add the I/O (opening, resolving, closing).

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

import random
import time
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from ._exceptions import ConnectError
from ._models import Endpoint

__all__ = ("Balanced", "Balancer", "EndpointState")

BACKOFF_INITIAL = 1.0
BACKOFF_MULTIPLIER = 1.6
BACKOFF_JITTER = 0.2
BACKOFF_MAX = 120.0
RESOLVE_INTERVAL = 30.0
RESOLVE_RETRY = 1.0
#: How often a request looks for endpoints without a connection (to open one beside it).
SPARE_CHECK_INTERVAL = 0.1


class Balanced(Protocol):
    """What the balancer reads of a connection."""

    #: Streams reserved by the pool and not yet finished (the balancing figure).
    outstanding: int

    @property
    def usable(self) -> bool:
        """Whether new streams may go to it."""

    @property
    def capacity(self) -> int:
        """How many more streams the server allows on it now."""

    @property
    def closed(self) -> bool:
        """Whether it is dead (for good)."""


C = TypeVar("C", bound=Balanced)


@dataclass
class EndpointState(Generic[C]):
    """One endpoint (an address) and its connections, and whether it is left out now."""

    endpoint: Endpoint
    connections: list[C] = field(default_factory=list)
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

    def connected(self, conn: C) -> None:
        """A connection opened: the endpoint is back, whatever failed before."""
        self.opening = False
        self.failures = 0
        self.ejected_until = 0.0
        self.connections.append(conn)

    def connect_failed(self, error: Exception) -> None:
        """A connection failed to open: eject the endpoint for the next backoff."""
        self.opening = False
        self.failures += 1
        self.last_error = error
        backoff = min(BACKOFF_MAX, BACKOFF_INITIAL * BACKOFF_MULTIPLIER ** (self.failures - 1))
        backoff *= 1 + random.uniform(-BACKOFF_JITTER, BACKOFF_JITTER)
        self.ejected_until = time.monotonic() + backoff


class Balancer(Generic[C]):
    """The endpoints, their connections and the choices between them. Holds no lock: the pool
    calls it under its guard."""

    def __init__(self, endpoints: list[Endpoint], max_connections_per_endpoint: int) -> None:
        self._targets = endpoints
        self._limit = max_connections_per_endpoint
        self._names = any(endpoint.is_name for endpoint in endpoints)
        self._states: list[EndpointState[C]] = (
            [] if self._names else [EndpointState(e) for e in endpoints]
        )
        self._resolved_at = -RESOLVE_INTERVAL
        self._next_spare_check = 0.0
        #: Some endpoint is retired (see _prune): a release may leave one of its connections
        #: idle, to be closed at once.
        self._retiring = False

    @property
    def connections(self) -> list[C]:
        return [conn for state in self._states for conn in state.connections]

    def drop(self) -> None:
        """Forget every connection without touching it (after fork: the parent's sockets)."""
        for state in self._states:
            state.connections.clear()
            state.opening = False

    def _pick(self) -> C | None:
        """The connection with room for a stream and the fewest outstanding, if any."""
        now = time.monotonic()
        best: C | None = None
        for state in self._states:
            if state.ejected_until > now or state.retired:
                continue
            for conn in state.connections:
                if conn.capacity > 0 and (best is None or conn.outstanding < best.outstanding):
                    best = conn
        return best

    def _prune(self) -> list[C]:
        """Forget dead connections; return the idle ones of retired endpoints, to be closed."""
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
            self._states = [s for s in self._states if s.connections or not s.retired]
            self._retiring = any(state.retired for state in self._states)
        return idle

    def _unconnected(self) -> list[EndpointState[C]]:
        """Endpoints that may take streams but have no usable connection, none opening."""
        now = time.monotonic()
        return [s for s in self._states if s.may_connect(now) and not s.usable]

    def _to_open(self) -> EndpointState[C] | None:
        """The endpoint to open a connection to, when no connection has room."""
        now = time.monotonic()
        candidates = [s for s in self._states if s.may_connect(now) and s.usable < self._limit]
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

    def _resolve_due(self) -> bool:
        since = time.monotonic() - self._resolved_at
        if since >= RESOLVE_INTERVAL:
            return True
        return since >= RESOLVE_RETRY and self._all_failed() is not None

    def _resolved(self, wanted: list[Endpoint]) -> None:
        """The names were read again: ``wanted`` are the endpoints now. Add those that
        appeared; retire those that went."""
        known = {state.endpoint: state for state in self._states}
        for state in self._states:
            state.retired = state.endpoint not in wanted
        self._retiring = any(state.retired for state in self._states)
        for endpoint in dict.fromkeys(wanted):
            if endpoint not in known:
                self._states.append(EndpointState(endpoint))
