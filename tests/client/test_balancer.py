"""The pool's decisions without I/O (client/_balancing.py): balancing over simulated time,
ejection and its cap, and names whose addresses change. Connections are stand-ins with the
figures the balancer reads; time is passed in, so nothing here waits."""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass

import pytest

from muxwsgi.client import Endpoint
from muxwsgi.client._balancing import Balancer, EndpointState
from muxwsgi.client._config import ClientConfig
from muxwsgi.client._metrics import EndpointStats, RequestCounts


@dataclass(eq=False)
class Conn:
    stats: EndpointStats
    outstanding: int = 0
    usable: bool = True
    closed: bool = False
    failed: bool = False
    limit: int = 1000

    @property
    def capacity(self) -> int:
        return self.limit - self.outstanding if self.usable else 0


def balancer(count: int, **settings: object) -> tuple[Balancer[Conn], list[EndpointState[Conn]]]:
    endpoints = [Endpoint("mux", f"127.0.0.{i + 2}", 3031) for i in range(count)]
    pool: Balancer[Conn] = Balancer(endpoints, ClientConfig(**settings))  # type: ignore[arg-type]
    states = list(pool._states)
    for state in states:
        pool._connected(state, Conn(state.stats), 0.0)
    return pool, states


def shares(
    balancing: str, latencies: list[float], in_flight: int, seconds: float = 30.0
) -> list[float]:
    """Run ``in_flight`` callers back to back for ``seconds`` of simulated time against
    endpoints that answer in ``latencies``; return each endpoint's share of the requests."""
    random.seed(1)
    pool, states = balancer(len(latencies), balancing=balancing)
    served = [0] * len(latencies)
    index = {id(s.stats): i for i, s in enumerate(states)}
    done: list[tuple[float, int, Conn]] = []

    def send(now: float, caller: int) -> None:
        conn = pool._pick(now)
        assert conn is not None
        conn.outstanding += 1
        heapq.heappush(done, (now + latencies[index[id(conn.stats)]], caller, conn))

    for caller in range(in_flight):
        send(0.0, caller)
    while done[0][0] < seconds:
        now, caller, conn = heapq.heappop(done)
        conn.outstanding -= 1
        latency = latencies[index[id(conn.stats)]]
        conn.stats.answered(latency, now)
        served[index[id(conn.stats)]] += 1
        send(now, caller)
    return [count / sum(served) for count in served]


@pytest.mark.parametrize("in_flight", [1, 4, 16])
def test_peak_ewma_gives_a_slow_endpoint_a_small_share(in_flight: int) -> None:
    # Four endpoints, one 10x slower: under 1/(2N) of the requests, whatever the load.
    result = shares("peak_ewma", [0.01, 0.01, 0.1, 0.01], in_flight)
    assert result[2] < 1 / 8, result
    assert min(result[i] for i in (0, 1, 3)) > 0.25, result  # the others share the rest


def test_least_outstanding_takes_ties_in_turn() -> None:
    # One request at a time: every endpoint has 0 in flight at every choice. Ties go round,
    # so each gets a quarter; blind to latency, the slow one too (why peak_ewma is the default).
    result = shares("least_outstanding", [0.01, 0.01, 0.1, 0.01], 1)
    assert result == pytest.approx([0.25] * 4, abs=0.01)


def test_least_outstanding_prefers_the_least_loaded() -> None:
    pool, states = balancer(3, balancing="least_outstanding")
    conns = [s.connections[0] for s in states]
    conns[0].outstanding, conns[1].outstanding, conns[2].outstanding = 5, 2, 7
    assert all(pool._pick(0.0) is conns[1] for _ in range(10))


def test_a_full_or_unusable_connection_is_not_picked() -> None:
    pool, states = balancer(2)
    full, other = states[0].connections[0], states[1].connections[0]
    full.limit = full.outstanding = 3
    assert all(pool._pick(0.0) is other for _ in range(20))
    other.usable = False
    assert pool._pick(0.0) is None


def test_a_new_endpoint_is_tried_with_one_request_not_flooded() -> None:
    pool, states = balancer(2)
    known, new = states[0].connections[0], states[1].connections[0]
    known.stats.answered(0.05, 0.0)
    new.outstanding = 1  # sent, not answered yet: its cost is the penalty
    assert all(pool._pick(0.0) is known for _ in range(20))


def test_consecutive_failures_eject_for_a_doubling_time() -> None:
    pool, states = balancer(4, ejection_failures=2, ejection_time=1.0, max_ejection_time=3.0)
    first = states[0]
    pool._failed(first, 10.0)
    assert first.describe(10.0) == "ready"  # one failure is not enough
    pool._failed(first, 10.0)
    assert first.describe(10.0) == "ejected" and first.stats.ejections == 1
    assert all(pool._pick(10.0).stats is not first.stats for _ in range(50))  # type: ignore[union-attr]
    assert first.ejected_until == 11.0
    pool._refresh(11.0)  # the ejection ended: back among the choices
    assert first.describe(11.0) == "ready"
    assert any(pool._pick(11.0).stats is first.stats for _ in range(50))  # type: ignore[union-attr]
    for now, length in ((11.0, 2.0), (13.0, 3.0)):  # doubled, then capped at max_ejection_time
        pool._failed(first, now)
        pool._failed(first, now)
        assert first.ejected_until == now + length
    first.stats.answered(0.01, 20.0)  # a response ends the series
    pool._failed(first, 20.0)
    pool._failed(first, 20.0)
    assert first.ejected_until == 21.0


def test_ejection_is_capped() -> None:
    # 10% of 4 endpoints rounds down to 0, but one may always be ejected; never a second.
    pool, states = balancer(4, ejection_failures=1, max_ejection_percent=10)
    for state in states:
        pool._failed(state, 5.0)
    assert [s.describe(5.0) for s in states].count("ejected") == 1
    assert sum(s.stats.failed for s in states) == 4  # every failure is counted all the same
    # Half of them may go at 50%; none at 0%; the only endpoint never.
    pool, states = balancer(4, ejection_failures=1, max_ejection_percent=50)
    for state in states:
        pool._failed(state, 5.0)
    assert [s.describe(5.0) for s in states].count("ejected") == 2
    for count, percent in ((4, 0), (1, 100)):
        pool, states = balancer(count, ejection_failures=1, max_ejection_percent=percent)
        for state in states:
            pool._failed(state, 5.0)
        assert "ejected" not in [s.describe(5.0) for s in states]


def test_a_failed_connection_attempt_backs_off() -> None:
    pool, states = balancer(2)
    state = states[0]
    state.connections.clear()
    for attempt in range(1, 4):
        state.opening = True
        pool._connect_failed(state, ConnectionRefusedError("refused"), 100.0)
        backoff = 1.0 * 1.6 ** (attempt - 1)
        assert backoff * 0.8 <= state.retry_at - 100.0 <= backoff * 1.2
        assert not state.may_connect(100.0) and state.describe(100.0) == "backoff"
    assert state.may_connect(state.retry_at)


def test_addresses_that_change_are_added_and_drained() -> None:
    pool, states = balancer(2)
    old, kept = states
    busy = old.connections[0]
    busy.outstanding = 1
    busy.stats.answered(0.002, 1.0)
    new = Endpoint("mux", "127.0.0.9", 3031)
    pool._resolved([kept.endpoint, new], 2.0)
    assert [s.endpoint for s in pool._states] == [old.endpoint, kept.endpoint, new]
    assert old.describe(2.0) == "draining"
    assert all(pool._pick(2.0) is kept.connections[0] for _ in range(20))  # no new streams
    assert pool._prune(2.0) == []  # its stream is not done: the connection stays
    busy.outstanding = 0
    assert pool._prune(3.0) == [busy]  # done: to be closed
    metrics = pool._metrics(RequestCounts())
    assert [e.endpoint for e in metrics.endpoints] == [str(kept.endpoint), str(new)]
    assert metrics.latency.count == 1  # the drained endpoint's answers still count


def test_a_retry_goes_to_another_endpoint_when_one_has_room() -> None:
    pool, states = balancer(3)
    failed = states[0].stats
    for conn in pool._ready:
        conn.outstanding = 5 if conn.stats is failed else 50  # the failed one is the least busy
    assert all(pool._least(pool._ready, failed).stats is not failed for _ in range(20))  # type: ignore[union-attr]
    for state in states[1:]:
        state.connections[0].usable = False  # nowhere else to go: back where it failed
    assert pool._least(pool._ready, failed).stats is failed  # type: ignore[union-attr]
