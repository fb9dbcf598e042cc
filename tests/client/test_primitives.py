"""client/_primitives.py finds the running asyncio loop with ``asyncio._get_running_loop``, a
private function (asyncio_loop says why). These tests pin that it exists and behaves as used, so
that a Python that drops or changes it fails here, loudly, rather than in a request. And the sync
stream writes what it is given once, in both builds; an event wakes every waiter it has."""

from __future__ import annotations

import asyncio
import socket
import threading

import anyio
import pytest

from muxwsgi.client._primitives import AsyncEvent, Stream, asyncio_loop


def test_asyncio_still_has_the_private_lookup() -> None:
    lookup = getattr(asyncio, "_get_running_loop", None)
    assert callable(lookup), "asyncio._get_running_loop is gone: change asyncio_loop()"
    assert lookup() is None  # outside a loop: None, not an exception

    async def inside() -> tuple[object, object]:
        return lookup(), asyncio.get_running_loop()

    found, running = asyncio.run(inside())
    assert found is running


def test_asyncio_loop_is_the_running_loop_or_none() -> None:
    assert asyncio_loop() is None

    async def inside() -> None:
        assert asyncio_loop() is asyncio.get_running_loop()
        seen: list[object] = []
        thread = threading.Thread(target=lambda: seen.append(asyncio_loop()))
        thread.start()
        thread.join()
        assert seen == [None]  # the loop runs in this thread only

    asyncio.run(inside())
    assert asyncio_loop() is None


def test_asyncio_loop_under_uvloop() -> None:
    uvloop = pytest.importorskip("uvloop")

    async def inside() -> None:
        assert asyncio_loop() is asyncio.get_running_loop()

    uvloop.run(inside())


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_an_event_wakes_every_waiter_whichever_left_before(backend: str) -> None:
    """The first waiter has a slot of its own, the others a list: set() wakes both, after
    waiters of each kind left on a timeout (which must not take another's place)."""
    results: dict[str, bool] = {}

    async def main() -> None:
        event = AsyncEvent(asyncio_loop())

        async def wait(name: str, timeout: float | None) -> None:
            results[name] = await event.wait(timeout)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as group:
                group.start_soon(wait, "first", 0.05)  # the slot's, gone on its timeout
                group.start_soon(wait, "second", None)
                group.start_soon(wait, "third", 0.05)  # one of the list's, gone too
                group.start_soon(wait, "fourth", None)
                while len(results) < 2:
                    await anyio.sleep(0.01)
                group.start_soon(wait, "fifth", None)  # into the free slot
                while event._waiter is None:
                    await anyio.sleep(0.01)
                event.set()

    anyio.run(main, backend=backend)
    assert results == {
        "first": False,
        "third": False,
        "second": True,
        "fourth": True,
        "fifth": True,
    }


def test_asyncio_loop_is_none_under_trio() -> None:
    async def inside() -> None:
        assert asyncio_loop() is None

    anyio.run(inside, backend="trio")


def test_a_sync_write_sends_its_bytes_once() -> None:
    # Compiled, a send() inside a memoryview's slice bounds ran twice (each write went out
    # twice: the server saw a second PREFACE).
    ours, theirs = socket.socketpair()
    received: list[bytes] = []

    def read_all() -> None:
        while chunk := theirs.recv(1 << 16):
            received.append(chunk)

    reader = threading.Thread(target=read_all)
    reader.start()
    stream = Stream(ours)
    try:
        stream.write(b"x" * 300_000, 5.0)  # more than a socket buffer: several sends
        stream.write(b"end", 5.0)
    finally:
        stream.close()
        reader.join(10)
        theirs.close()
    assert b"".join(received) == b"x" * 300_000 + b"end"
