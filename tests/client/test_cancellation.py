"""Cancelling the caller resets its stream (async only: cancel scopes have no sync twin; a
thread gives up through ``timeout=``, tested in _async/test_client.py)."""

from __future__ import annotations

import time

import anyio
import pytest

from muxwsgi.client import AsyncClient

pytestmark = pytest.mark.slow


@pytest.mark.anyio
async def test_cancel_scope_resets_the_stream(mux_url: str) -> None:
    async with AsyncClient(mux_url) as client:
        before = len((await client.get("/cancels")).json())
        with anyio.move_on_after(0.5) as scope:
            await client.get("/wait-cancel")  # the app waits up to 10 s for a RESET
        assert scope.cancelled_caught
        # The server saw the RESET: the application's muxwsgi.cancelled was set well before
        # its own 10 s wait ran out.
        deadline = time.monotonic() + 5
        cancels: list[bool] = []
        while time.monotonic() < deadline and len(cancels) <= before:
            cancels = (await client.get("/cancels")).json()
            await anyio.sleep(0.05)
        assert len(cancels) > before and cancels[-1] is True, cancels
        # The connection is still good for other requests.
        assert (await client.get("/hello")).status == 200
