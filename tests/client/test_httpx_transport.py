"""httpx's own Client and AsyncClient over muxwsgi transports."""

from __future__ import annotations

import httpx
import pytest

from muxwsgi.client import AsyncMuxTransport, MuxTransport

pytestmark = pytest.mark.slow


def test_sync_transport(mux_url: str) -> None:
    with httpx.Client(transport=MuxTransport(mux_url), base_url="http://backend") as client:
        response = client.get("/environ", params={"q": "a b"}, headers={"X-Custom": "1"})
        assert response.status_code == 200 and response.reason_phrase == "OK"
        env = response.json()
        assert env["QUERY_STRING"] == "q=a+b" and env["HTTP_X_CUSTOM"] == "1"
        assert env["muxwsgi.protocol"] == "mux"
        assert client.post("/echo", content=b"through httpx").content == b"through httpx"
        assert client.get("/nope").status_code == 404
        with client.stream("GET", "/stream?n=5&size=7") as streamed:
            expected = b"".join((f"{i:06d}".encode() * 2)[:7] for i in range(5))
            assert b"".join(streamed.iter_bytes()) == expected


@pytest.mark.anyio
async def test_async_transport(mux_url: str) -> None:
    transport = AsyncMuxTransport(mux_url)
    async with httpx.AsyncClient(transport=transport, base_url="http://backend") as client:
        response = await client.post("/echo", content=b"async httpx")
        assert response.status_code == 200 and response.content == b"async httpx"
        assert (await client.get("/hello")).text == "Hello, World!"
