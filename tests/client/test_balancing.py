"""Balancing over the addresses a name resolves to (async only: the pool code is shared)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import anyio
import pytest

from muxwsgi.client import AsyncClient

from ..servers import start

pytestmark = pytest.mark.slow


@pytest.mark.anyio
async def test_a_name_with_two_addresses_is_balanced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two servers on one port, on 127.0.0.1 and 127.0.0.2; "backend.test" resolves to both
    # (the resolver is the only thing replaced: sockets, servers and balancing are real).
    first = start("tests.server.apps:app", log_dir=tmp_path)
    port = first.address[1]
    second = start("tests.server.apps:app", log_dir=tmp_path, bind=f"127.0.0.2:{port}")
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kw: Any) -> Any:
        if host in ("backend.test", b"backend.test"):  # anyio passes the name IDNA-encoded
            return [info for a in ("127.0.0.1", "127.0.0.2") for info in real(a, *args, **kw)]
        return real(host, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    try:
        async with AsyncClient(f"mux://backend.test:{port}") as client:
            await client.get("/hello")  # the first request waits for one connection
            pids: list[str] = []

            async def call() -> None:
                response = await client.get("/sleep?s=0.05")
                assert response.status == 200
                pids.append((await client.get("/pid")).text)

            for _ in range(4):
                async with anyio.create_task_group() as group:
                    for _ in range(16):
                        group.start_soon(call)
            by_server = {pid: pids.count(pid) for pid in set(pids)}
            assert len(by_server) == 2, by_server  # both addresses took requests
            assert min(by_server.values()) >= len(pids) // 4, by_server
            assert {str(e) for e in client.endpoints} == {f"mux://backend.test:{port}"}
    finally:
        first.stop()
        second.stop()
