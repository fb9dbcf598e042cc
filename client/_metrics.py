"""What the client counts, and the snapshot ``client.metrics()`` returns.

Counting happens on the request path, so it is kept to a few additions: per endpoint, a latency
histogram (time from sending a request to its response head), the peak EWMA of that latency the
balancer reads, and the consecutive failures that eject an endpoint (:class:`EndpointStats`);
per client, requests, errors by kind and retries (:class:`RequestCounts`). A snapshot copies
them into frozen dataclasses (:class:`ClientMetrics`), which also print themselves as Prometheus
text (:meth:`ClientMetrics.prometheus`): no dependency, the exposition format is a few lines.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

__all__ = (
    "LATENCY_BUCKETS",
    "ClientMetrics",
    "EndpointMetrics",
    "EndpointStats",
    "Histogram",
    "RequestCounts",
)

#: Upper bounds (seconds) of the latency histogram's buckets; one more bucket holds the rest.
#: Prometheus's default buckets, with three below 5 ms: a request between two services on one
#: network often answers in less.
LATENCY_BUCKETS: Final[tuple[float, ...]] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip

#: How fast the latency EWMA forgets (seconds): a sample's weight halves in DECAY * ln 2.
#: Finagle's and Linkerd's peak EWMA use 10 s.
DECAY: Final = 10.0
#: The cost of a connection whose endpoint has no latency yet but has streams in flight: very
#: high, so that a new endpoint is tried with one request, not flooded before it answers.
PENALTY: Final = 1e6

# Final: the compiled build reads these from C statics, not the module dict, per request.
_exp: Final = math.exp
_bisect_left: Final = bisect_left


class EndpointStats:
    """One endpoint's figures, shared by its connections (and so read by the balancer)."""

    __slots__ = ("counts", "ejections", "ewma", "ewma_at", "failed", "failures", "in_row", "sum")

    def __init__(self) -> None:
        #: Responses per latency bucket (LATENCY_BUCKETS, then the rest).
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.sum = 0.0
        #: Peak EWMA of the latency (seconds) as of ``ewma_at``; 0.0: no response yet.
        self.ewma = 0.0
        self.ewma_at = 0.0
        #: Consecutive failures (connections that could not open or died), and consecutive
        #: ejections: a response ends both series.
        self.failures = 0
        self.in_row = 0
        #: Totals, for the metrics.
        self.failed = 0
        self.ejections = 0

    def answered(self, latency: float, now: float) -> None:
        """A response head arrived ``latency`` seconds after its request left (at ``now``)."""
        self.counts[_bisect_left(LATENCY_BUCKETS, latency)] += 1
        self.sum += latency
        if self.failures or self.in_row:
            self.failures = self.in_row = 0
        # Peak EWMA (Finagle's): a slower answer counts at once, faster ones are averaged in
        # with a weight that grows with the time since the last one.
        ewma = self.ewma
        if latency >= ewma:
            self.ewma = latency
        else:
            kept = _exp((self.ewma_at - now) / DECAY)
            self.ewma = ewma * kept + latency * (1.0 - kept)
        self.ewma_at = now

    def cost(self, outstanding: int, now: float) -> float:
        """What one more stream costs here: the decayed latency x (streams in flight + 1)."""
        ewma = self.ewma
        if ewma == 0.0:
            return PENALTY + outstanding if outstanding else 0.0
        return ewma * _exp((self.ewma_at - now) / DECAY) * (outstanding + 1)

    def histogram(self) -> Histogram:
        return Histogram(LATENCY_BUCKETS, tuple(self.counts), self.sum)


class RequestCounts:
    """The client's own counters: requests made, errors raised (by exception class), retries."""

    __slots__ = ("errors", "requests", "retries")

    def __init__(self) -> None:
        self.requests = 0
        self.errors: dict[str, int] = {}
        self.retries: dict[str, int] = {}

    def failed(self, exc: BaseException) -> None:
        kind = type(exc).__name__
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def retried(self, kind: str) -> None:
        self.retries[kind] = self.retries.get(kind, 0) + 1


# ---------------------------------------------------------------- the snapshot


@dataclass(frozen=True)
class Histogram:
    """Latencies in buckets: ``counts[i]`` fell at or below ``bounds[i]`` (and above the bound
    before it); the last count is the rest. Seconds."""

    bounds: tuple[float, ...] = LATENCY_BUCKETS
    counts: tuple[int, ...] = (0,) * (len(LATENCY_BUCKETS) + 1)
    sum: float = 0.0

    @property
    def count(self) -> int:
        return sum(self.counts)

    def quantile(self, q: float) -> float:
        """The upper bound of the bucket holding the ``q`` quantile (0 < q <= 1); inf when it
        is the last bucket, 0.0 when there is nothing."""
        total = self.count
        if not total:
            return 0.0
        rank = q * total
        seen = 0
        for bound, count in zip((*self.bounds, math.inf), self.counts, strict=True):
            seen += count
            if seen >= rank:
                return bound
        return math.inf

    def __add__(self, other: Histogram) -> Histogram:
        if self.bounds != other.bounds:
            return NotImplemented
        counts = tuple(a + b for a, b in zip(self.counts, other.counts, strict=True))
        return Histogram(self.bounds, counts, self.sum + other.sum)


@dataclass(frozen=True)
class EndpointMetrics:
    """One endpoint (an address) of the pool, as it was when the snapshot was taken."""

    #: The endpoint as the client names it in errors and responses' ``url``.
    endpoint: str
    #: "ready" (takes requests), "connecting", "backoff" (its last connection attempt failed),
    #: "ejected", or "draining" (no longer an address of its name: finishing its streams).
    state: str
    connections: int
    #: Streams in flight on its connections.
    outstanding: int
    #: Time from sending to the response head of every request it answered.
    latency: Histogram
    #: Connections that could not open or died without a GOAWAY.
    failures: int
    ejections: int
    #: The peak EWMA of its latency (seconds) the balancer weighs it by; 0.0: none yet.
    ewma: float


@dataclass(frozen=True)
class ClientMetrics:
    """A client's counters at one instant (``client.metrics()``)."""

    #: Requests made by callers (however many times each was sent).
    requests: int
    #: Requests that failed, by the class name of the exception raised ("ConnectError",
    #: "RequestTimeout", "ReadError"...).
    errors: Mapping[str, int]
    #: Requests sent again: "transparent" (never processed by the server: refused, above a
    #: GOAWAY, connection already closed) and "after_failure" (``retries``).
    retries: Mapping[str, int]
    endpoints: tuple[EndpointMetrics, ...]
    #: The latencies and ejections of endpoints no longer in the pool (their names' addresses
    #: changed), so that the totals never go down.
    gone: Histogram = field(default_factory=Histogram)
    gone_ejections: int = 0
    #: Times the host names were read, and reads that failed (the addresses were kept).
    resolutions: int = 0
    resolution_errors: int = 0

    @property
    def latency(self) -> Histogram:
        """Every endpoint's latencies together (the gone ones' included)."""
        total = self.gone
        for endpoint in self.endpoints:
            total = total + endpoint.latency
        return total

    @property
    def ejections(self) -> int:
        return self.gone_ejections + sum(e.ejections for e in self.endpoints)

    def endpoint(self, name: str) -> EndpointMetrics | None:
        """The endpoint whose name (as in ``endpoints``) contains ``name``, if one does."""
        for endpoint in self.endpoints:
            if name in endpoint.endpoint:
                return endpoint
        return None

    def prometheus(self, labels: Mapping[str, str] | None = None) -> str:
        """The metrics in the Prometheus text exposition format (0.0.4), every sample with
        ``labels`` too (say which client this is when a process has several)."""
        base = dict(labels or {})
        out: list[str] = []
        endpoints = self.endpoints

        def family(name: str, kind: str, text: str, samples: Iterable[Sample]) -> None:
            out.append(f"# HELP muxwsgi_client_{name} {text}")
            out.append(f"# TYPE muxwsgi_client_{name} {kind}")
            for suffix, extra, value in samples:
                labelled = _labels({**base, **extra})
                out.append(f"muxwsgi_client_{name}{suffix}{labelled} {_num(value)}")

        def each(value: Callable[[EndpointMetrics], float]) -> list[Sample]:
            return [("", {"endpoint": e.endpoint}, value(e)) for e in endpoints]

        family("requests_total", "counter", "Requests made by callers.", [("", {}, self.requests)])
        family("errors_total", "counter", "Requests that failed, by exception.",
               [("", {"kind": k}, v) for k, v in sorted(self.errors.items())])  # fmt: skip
        family("retries_total", "counter", "Requests sent again, by kind.",
               [("", {"kind": k}, v) for k, v in sorted(self.retries.items())])  # fmt: skip
        family("request_duration_seconds", "histogram",
               "Time from sending a request to its response head.",
               [sample for e in endpoints
                for sample in _histogram(e.latency, {"endpoint": e.endpoint})])  # fmt: skip
        family("outstanding", "gauge", "Streams in flight.", each(lambda e: e.outstanding))
        family("connections", "gauge", "Open connections.", each(lambda e: e.connections))
        family("endpoint_ready", "gauge", "1 if the endpoint takes requests, else 0.",
               each(lambda e: int(e.state == "ready")))  # fmt: skip
        family("endpoint_failures_total", "counter",
               "Connections that could not open or died without a GOAWAY.",
               each(lambda e: e.failures))  # fmt: skip
        family("ejections_total", "counter", "Times the endpoint was ejected.",
               each(lambda e: e.ejections))  # fmt: skip
        family("resolutions_total", "counter", "Times the host names were read.",
               [("", {}, self.resolutions)])  # fmt: skip
        family("resolution_errors_total", "counter", "Reads of the host names that failed.",
               [("", {}, self.resolution_errors)])  # fmt: skip
        return "\n".join(out) + "\n"


#: One sample of a family: the name's suffix, its own labels, its value.
Sample = tuple[str, dict[str, str], float]


def _histogram(histogram: Histogram, labels: dict[str, str]) -> Iterable[Sample]:
    seen = 0
    for bound, count in zip((*histogram.bounds, math.inf), histogram.counts, strict=True):
        seen += count
        yield "_bucket", {**labels, "le": _num(bound)}, seen
    yield "_sum", labels, histogram.sum
    yield "_count", labels, seen


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def _escape(value: str) -> str:
    """A label value as the exposition format quotes it: backslash, newline and quote escaped."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(value: float) -> str:
    if value == math.inf:
        return "+Inf"
    if isinstance(value, int) or (value == int(value) and abs(value) < 1e15):
        return str(int(value))
    return repr(float(value))
