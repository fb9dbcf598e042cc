"""A fleet of real backends behind one name, changing under a steady load (issue 18).

Four `muxwsgi serve` processes on 127.0.0.2-5 (one port), one of them 10x slower than the rest.
"fleet.test" resolves through the client's resolver hook, whose answer the test changes. While
eight callers send GETs back to back, the test adds a backend to the answer, kills one with
SIGKILL and starts it again, reloads one with HUP and takes one out of the answer. It waits for
each state it needs (polling the client's metrics and what the callers saw), never for a time,
and asserts counts: no request failed, the new backend answered before the resolver had been
asked twice more, the slow one got under 1/(2N) of the requests, the killed one (killed with
requests held in flight on it) was ejected, those requests were retried elsewhere, and it came
back; the one taken out got nothing more.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from muxwsgi.client import AsyncClient, ClientMetrics

from ..servers import ServerProcess, start

pytestmark = pytest.mark.slow

APP = "tests.fleet.app:app"
FAST = 0.02  # seconds per request
SLOW = FAST * 10
RESOLVE_INTERVAL = 1.0
PATIENCE = 30.0  # the longest wait for any one state (a bound, not an expectation)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Fleet:
    """The backends, the resolver's answer, and what the callers saw."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.port = 0
        self.servers: dict[str, ServerProcess] = {}
        self.answer: list[str] = []
        self.asked = 0  # resolver calls so far
        self.first_asked: dict[str, int] = {}  # address -> the call whose answer first had it
        self.served: Counter[str] = Counter()  # address -> responses
        self.pids: dict[str, set[str]] = {}  # address -> worker pids that answered
        self.first_served: dict[str, int] = {}  # address -> resolver calls at its first answer
        self.failures: list[str] = []

    def hold(self, address: str) -> Path:
        """The file that, while it exists, holds the requests of ``address`` (see app.py)."""
        return self.log_dir / f"hold-{address}"

    def start(self, address: str, delay: float = FAST) -> None:
        # Read by the app; the server inherits them.
        os.environ.update(FLEET_DELAY=str(delay), FLEET_HOLD=str(self.hold(address)))
        try:
            bind = f"{address}:{self.port}"
            self.servers[address] = start(APP, "--workers", "1", "--threads", "8",
                                          log_dir=self.log_dir, bind=bind)  # fmt: skip
        finally:
            del os.environ["FLEET_DELAY"], os.environ["FLEET_HOLD"]
        self.port = self.servers[address].address[1]

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()

    async def resolve(self, host: str, port: int) -> list[str]:
        assert (host, port) == ("fleet.test", self.port)
        self.asked += 1
        for address in self.answer:
            self.first_asked.setdefault(address, self.asked)
        return list(self.answer)

    async def caller(self, client: AsyncClient) -> None:
        while True:
            try:
                response = await client.get("/")
            except Exception as exc:  # every failure is reported at the end
                self.failures.append(f"{type(exc).__name__}: {exc}")
                await anyio.sleep(0.05)  # a failing client must not spin
                continue
            address = response.url.rsplit("(", 1)[1].rstrip(")")
            self.served[address] += 1
            self.pids.setdefault(address, set()).add(response.text)
            self.first_served.setdefault(address, self.asked)


async def until(what: str, ready: Callable[[], bool], client: AsyncClient) -> None:
    """Poll ``ready`` until it holds; fail with the client's metrics after PATIENCE."""
    deadline = time.monotonic() + PATIENCE
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached in {PATIENCE}s\n{client.metrics()}")
        await anyio.sleep(0.05)


def state(metrics: ClientMetrics, address: str) -> str:
    endpoint = metrics.endpoint(f"({address})")
    return "gone" if endpoint is None else endpoint.state


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    fleet = Fleet(tmp_path)
    try:
        fleet.start("127.0.0.2")
        fleet.start("127.0.0.3", delay=SLOW)
        fleet.start("127.0.0.4")
        fleet.start("127.0.0.5")
        yield fleet
    finally:
        fleet.stop()


@pytest.mark.anyio
async def test_a_fleet_that_changes_under_load(fleet: Fleet) -> None:
    killed, slow, reloaded, added = "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"
    fleet.answer = [killed, slow, reloaded]
    async with (
        AsyncClient(
            f"mux://fleet.test:{fleet.port}",
            resolver=fleet.resolve,
            resolve_interval=RESOLVE_INTERVAL,
            timeout=20,
            connect_timeout=2,
            retries=3,
            ejection_failures=2,
            ejection_time=1.0,
            max_ejection_time=4.0,
            max_ejection_percent=50,
        ) as client,
        anyio.create_task_group() as callers,
    ):
        for _ in range(8):
            callers.start_soon(fleet.caller, client)
        await until("the first backends answer", lambda: min(
            fleet.served[a] for a in (killed, reloaded)) >= 20, client)  # fmt: skip

        # A new address joins: it answers before the resolver is asked twice more.
        fleet.answer.append(added)
        await until("the new backend answers", lambda: fleet.served[added] > 0, client)
        assert fleet.first_served[added] <= fleet.first_asked[added] + 1

        # SIGKILL, still in the answer, with requests held in flight on it: they move
        # elsewhere, and it is ejected...
        fleet.hold(killed).touch()
        await until("requests in flight on the backend to kill", lambda: (
            client.metrics().endpoint(f"({killed})").outstanding >= 1), client)  # type: ignore[union-attr]  # fmt: skip
        dead = fleet.servers[killed]
        os.killpg(dead.pid, signal.SIGKILL)
        await anyio.to_thread.run_sync(dead.wait, 10)
        fleet.hold(killed).unlink()
        await until("the killed backend is ejected", lambda: (
            client.metrics().endpoint(f"({killed})").ejections >= 1), client)  # type: ignore[union-attr]  # fmt: skip
        # ... and comes back when it is started again.
        before = set(fleet.pids[killed])
        await anyio.to_thread.run_sync(fleet.start, killed)
        back = lambda: fleet.pids[killed] - before and state(client.metrics(), killed) == "ready"  # noqa: E731
        await until("the restarted backend answers", back, client)

        # HUP: the workers are replaced; the requests they had finish or move, none fails.
        before = set(fleet.pids[reloaded])
        fleet.servers[reloaded].signal(signal.SIGHUP)
        await until("the reloaded backend answers from a new worker", lambda: bool(
            fleet.pids[reloaded] - before), client)  # fmt: skip

        # Out of the answer: drained, closed, and sent nothing more.
        fleet.answer.remove(reloaded)
        await until("the removed backend is closed", lambda: (
            state(client.metrics(), reloaded) == "gone"), client)  # fmt: skip
        after_removal = fleet.served[reloaded]
        total = sum(fleet.served.values())
        await until("more requests", lambda: sum(fleet.served.values()) >= total + 200, client)
        assert fleet.served[reloaded] == after_removal
        callers.cancel_scope.cancel()

    metrics = client.metrics()
    assert fleet.failures == [], fleet.failures[:5]
    assert metrics.errors == {}
    everything = sum(fleet.served.values())
    assert fleet.served[slow] < everything / (2 * 4), fleet.served
    assert metrics.endpoint(f"({killed})").ejections >= 1  # type: ignore[union-attr]
    assert metrics.retries.get("after_failure", 0) + metrics.retries.get("transparent", 0) > 0
