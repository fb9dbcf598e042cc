"""client/_primitives.py finds the running asyncio loop with ``asyncio._get_running_loop``, a
private function (asyncio_loop says why). These tests pin that it exists and behaves as used, so
that a Python that drops or changes it fails here, loudly, rather than in a request."""

from __future__ import annotations

import asyncio
import threading

import anyio
import pytest

from muxwsgi.client._primitives import asyncio_loop


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


def test_asyncio_loop_is_none_under_trio() -> None:
    async def inside() -> None:
        assert asyncio_loop() is None

    anyio.run(inside, backend="trio")
