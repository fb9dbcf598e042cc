"""The Python load generator: one process per measurement, so that its CPU is its own.

    python -m benchmarks.loadgen '{"driver": "mux", "url": "mux://127.0.0.1:3031", ...}'

It opens the driver's client, keeps ``concurrency`` requests in flight (one task each, a new
request as soon as the last one answered), warms up, then measures one window (two for the
head-of-line scenario: without, then with one slow request in flight beside the load). It
prints ``start`` and ``stop`` on stdout at the window's edges, so the harness samples the
server's CPU over the same window, then one JSON line with the figures.

Drivers: ``mux`` (muxwsgi.client.AsyncClient over ``connections`` mux connections), ``uwsgi``
(the same client in classic mode: a connection per request, as nginx does), ``httpx`` (HTTP/1.1
keep-alive), ``httpx-h2`` (HTTP/2 prior knowledge, cleartext), ``aiohttp`` (HTTP/1.1
keep-alive) and ``grpc`` (grpc.aio, unary calls on one channel). All run on asyncio with uvloop
when it is installed (grpc.aio runs on any asyncio loop).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import anyio

from .workload import headers_for

__all__ = ("LoadSpec", "Window", "main", "percentile")

#: send(method, path, body) -> (status, body length), or (status, body length, backend) when
#: the driver knows which of a fleet's backends answered
Send = Callable[[str, str, bytes], Awaitable[tuple[int, int] | tuple[int, int, str]]]


@dataclass
class LoadSpec:
    driver: str
    url: str
    method: str = "GET"
    path: str = "/hello"
    body_size: int = 0
    concurrency: int = 1
    duration: float = 3.0
    warmup: float = 1.0
    connections: int = 1
    slow_path: str | None = None
    #: Each request's deadline in seconds (None: none), the same for every driver.
    timeout: float | None = 30.0
    #: mux only: the addresses of a fleet of backends, ``url``'s host name resolving to them
    #: (one client balances them); the figures are then also given per backend.
    backends: list[str] | None = None
    #: muxs:// and uwsgis://: the client's verify= and cert= (benchmarks/targets.py).
    verify: str | None = None
    cert: str | None = None


@dataclass
class Window:
    """What happened between two instants: requests that completed inside it."""

    started: float = 0.0
    ended: float = 0.0
    ok: int = 0
    errors: int = 0
    bytes: int = 0
    latencies: list[float] = field(default_factory=list)
    cpu: float = 0.0  # seconds of this process's CPU (user + system) over the window
    #: A fleet's backend (address) -> the latencies of the requests it answered.
    by_backend: dict[str, list[float]] = field(default_factory=dict)

    def figures(self) -> dict[str, Any]:
        """req/s, latency percentiles (ms) and client CPU per request (µs) of the window."""
        elapsed = max(self.ended - self.started, 1e-9)
        lat = sorted(self.latencies)
        backends = {
            address: {
                "requests": len(mine),
                "share": round(len(mine) / max(1, self.ok), 4),
                "p50_ms": round(percentile(sorted(mine), 50) * 1e3, 3),
                "p99_ms": round(percentile(sorted(mine), 99) * 1e3, 3),
            }
            for address, mine in sorted(self.by_backend.items())
        }
        return {
            **({"backends": backends} if backends else {}),
            "requests": self.ok,
            "errors": self.errors,
            "seconds": round(elapsed, 3),
            "rps": round(self.ok / elapsed, 1),
            "mib_s": round(self.bytes / elapsed / (1 << 20), 2),
            "p50_ms": round(percentile(lat, 50) * 1e3, 3),
            "p99_ms": round(percentile(lat, 99) * 1e3, 3),
            "p999_ms": round(percentile(lat, 99.9) * 1e3, 3),
            "client_cpu_us": round(self.cpu / self.ok * 1e6, 1) if self.ok else None,
        }


def percentile(sorted_values: list[float], p: float) -> float:
    """The nearest-rank percentile of already sorted values (0.0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(0, min(len(sorted_values) - 1, round(p / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ---------------------------------------------------------------- drivers


@asynccontextmanager
async def _mux_or_uwsgi(spec: LoadSpec) -> AsyncIterator[list[Send]]:
    from muxwsgi.client import AsyncClient

    headers = headers_for(spec.driver)
    if spec.backends:
        async with _fleet(spec, headers) as senders:
            yield senders
        return
    # One client per connection: a client's pool opens a second connection only when the
    # first is at the server's MAX_CONCURRENT_STREAMS, and a pool here means spreading streams.
    count = spec.connections if spec.driver == "mux" else 1
    tls = {"verify": spec.verify, "cert": spec.cert} if spec.verify else {}
    async with AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                AsyncClient(spec.url, timeout=spec.timeout, max_connections_per_endpoint=1, **tls)
            )
            for _ in range(count)
        ]

        def sender(client: Any) -> Send:
            async def send(method: str, path: str, body: bytes) -> tuple[int, int]:
                response = await client.request(method, path, headers=headers, body=body)
                return response.status, len(response.content)

            return send

        yield [sender(client) for client in clients]


@asynccontextmanager
async def _fleet(spec: LoadSpec, headers: list[tuple[str, str]]) -> AsyncIterator[list[Send]]:
    """One client for a fleet: the URL's name resolves to ``spec.backends``; each answer says
    which backend gave it (the address in ``response.url``)."""
    from muxwsgi.client import AsyncClient

    backends = list(spec.backends or ())

    async def resolve(host: str, port: int) -> list[str]:
        return backends

    async with AsyncClient(spec.url, timeout=spec.timeout, resolver=resolve) as client:

        async def send(method: str, path: str, body: bytes) -> tuple[int, int, str]:
            response = await client.request(method, path, headers=headers, body=body)
            backend = response.url.rpartition("(")[2].rstrip(")")
            return response.status, len(response.content), backend

        yield [send]


@asynccontextmanager
async def _httpx(spec: LoadSpec) -> AsyncIterator[list[Send]]:
    import httpx

    h2 = spec.driver == "httpx-h2"
    headers = headers_for(spec.driver)
    limits = httpx.Limits(
        max_connections=spec.concurrency + 1, max_keepalive_connections=spec.concurrency + 1
    )
    async with httpx.AsyncClient(
        base_url=spec.url, http1=not h2, http2=h2, limits=limits, timeout=spec.timeout
    ) as client:

        async def send(method: str, path: str, body: bytes) -> tuple[int, int]:
            response = await client.request(method, path, headers=headers, content=body or None)
            return response.status_code, len(response.content)

        yield [send]


@asynccontextmanager
async def _aiohttp(spec: LoadSpec) -> AsyncIterator[list[Send]]:
    import aiohttp

    headers = headers_for(spec.driver)
    connector = aiohttp.TCPConnector(limit=spec.concurrency + 1)
    timeout = aiohttp.ClientTimeout(total=spec.timeout)
    async with aiohttp.ClientSession(
        spec.url, connector=connector, timeout=timeout, skip_auto_headers=("User-Agent",)
    ) as session:

        async def send(method: str, path: str, body: bytes) -> tuple[int, int]:
            async with session.request(
                method, path, headers=headers, data=body or None
            ) as response:
                return response.status, len(await response.read())

        yield [send]


@asynccontextmanager
async def _grpc(spec: LoadSpec) -> AsyncIterator[list[Send]]:
    import grpc

    from .grpc_server import SERVICE

    # The browser headers as metadata, as the HTTP/2 drivers send them: the same request
    # weight as every other row.
    metadata = tuple((name.lower(), value) for name, value in headers_for(spec.driver))
    target = spec.url.partition("://")[2]
    async with grpc.aio.insecure_channel(target) as channel:
        methods: dict[str, Any] = {}

        async def send(method: str, path: str, body: bytes) -> tuple[int, int]:
            call = methods.get(path)
            if call is None:
                call = methods[path] = channel.unary_unary(f"/{SERVICE}{path}")
            reply = await call(body, metadata=metadata, timeout=spec.timeout)
            return 200, len(reply)  # a failed call raises grpc.aio.AioRpcError

        yield [send]


DRIVERS = {
    "grpc": _grpc,
    "mux": _mux_or_uwsgi,
    "uwsgi": _mux_or_uwsgi,
    "httpx": _httpx,
    "httpx-h2": _httpx,
    "aiohttp": _aiohttp,
}


# ---------------------------------------------------------------- the load


class _Load:
    def __init__(self, spec: LoadSpec) -> None:
        self.spec = spec
        self.body = b"x" * spec.body_size
        self.window: Window | None = None  # where completions are counted now
        self.stopping = False
        self.error_samples: list[str] = []
        #: When each fast loop's current request was sent (0.0: between requests).
        self.in_flight_since: list[float] = []

    async def loop(self, send: Send, path: str, counted: bool) -> None:
        """Send requests back to back; file each completion in the current window."""
        spec, body = self.spec, self.body
        clock = time.perf_counter
        slot = len(self.in_flight_since)
        self.in_flight_since.append(0.0)
        while not self.stopping:
            started = clock()
            if counted:
                self.in_flight_since[slot] = started
            try:
                answer = await send(spec.method, path, body)
            except Exception as exc:
                if self.window is not None and counted:
                    self.window.errors += 1
                if len(self.error_samples) < 5:
                    self.error_samples.append(f"{type(exc).__name__}: {exc}")
                await anyio.sleep(0.01)  # a refused connect must not spin
                continue
            window = self.window
            if window is None or not counted:
                continue
            status, size = answer[0], answer[1]
            if status == 200:
                window.ok += 1
                window.bytes += size
                latency = clock() - started
                window.latencies.append(latency)
                if len(answer) > 2:
                    window.by_backend.setdefault(answer[2], []).append(latency)
            else:
                window.errors += 1
                if len(self.error_samples) < 5:
                    self.error_samples.append(f"status {status}")

    async def measure(self, label: str | None) -> Window:
        window = Window()
        if label:
            print(label, flush=True)
        window.cpu, window.started = _cpu(), time.perf_counter()
        self.window = window
        await anyio.sleep(self.spec.duration)
        self.window = None
        window.cpu, window.ended = _cpu() - window.cpu, time.perf_counter()
        # A request sent before the window and still unanswered after it is stuck: count it
        # as an error, or a server that hangs every request would show no errors at all.
        stuck = sum(1 for t in self.in_flight_since if 0.0 < t < window.started)
        window.errors += stuck
        if stuck and len(self.error_samples) < 5:
            self.error_samples.append(f"{stuck} request(s) unanswered for the whole window")
        return window

    async def run(self) -> dict[str, Any]:
        spec = self.spec
        async with DRIVERS[spec.driver](spec) as senders, anyio.create_task_group() as tasks:
            for i in range(spec.concurrency):
                tasks.start_soon(self.loop, senders[i % len(senders)], spec.path, True)
            await anyio.sleep(spec.warmup)
            result: dict[str, Any] = {}
            if spec.slow_path:
                # Window 1 is the baseline; the slow request then shares connection 0 (the
                # only one for mux-1conn) with the fast ones for window 2.
                base = await self.measure("start")
                tasks.start_soon(self.loop, senders[0], spec.slow_path, False)
                await anyio.sleep(0.2)
                window = await self.measure(None)
                base_figures = base.figures()
                result["base_p50_ms"] = base_figures["p50_ms"]
                result["base_p99_ms"] = base_figures["p99_ms"]
                result["base_rps"] = base_figures["rps"]
                result["base_requests"] = base_figures["requests"]
            else:
                window = await self.measure("start")
            print("stop", flush=True)
            self.stopping = True
            tasks.cancel_scope.cancel()
        result.update(window.figures())
        result["error_samples"] = self.error_samples
        result["spec"] = asdict(spec)
        return result


def _run(spec: LoadSpec) -> dict[str, Any]:
    backend_options: dict[str, Any] = {}
    try:
        import uvloop  # noqa: F401

        backend_options["use_uvloop"] = True
    except ImportError:
        pass
    result: dict[str, Any] = anyio.run(
        _Load(spec).run, backend="asyncio", backend_options=backend_options
    )
    return result


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    spec = LoadSpec(**json.loads(args[0]))
    print(json.dumps(_run(spec)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
