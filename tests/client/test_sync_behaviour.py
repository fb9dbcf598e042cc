"""The sync client under threads, fork, reloads and killed workers (hand-written: these are
about threads and processes, which the async source has no twin for)."""

from __future__ import annotations

import json
import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from muxwsgi.client import Client, ReadError

from ..certs import make_certs
from ..core.helpers import spec
from ..servers import ServerProcess, start, until

pytestmark = pytest.mark.slow


def test_many_threads_share_one_connection(mux_url: str) -> None:
    with Client(mux_url, max_connections_per_endpoint=1) as client:

        def call(i: int) -> tuple[int, str]:
            response = client.get(f"/environ?i={i}")
            env = response.json()
            return response.status, env["QUERY_STRING"] + "|" + env["REMOTE_PORT"]

        with ThreadPoolExecutor(32) as pool:
            results = list(pool.map(call, range(500)))
    assert all(status == 200 for status, _ in results)
    assert sorted(r.split("|")[0] for _, r in results) == sorted(f"i={i}" for i in range(500))
    assert len({r.split("|")[1] for _, r in results}) == 1  # one TCP connection carried them all


def test_fork_child_never_uses_the_parents_socket(mux_url: str) -> None:
    with Client(mux_url) as client:
        parent_port = client.get("/environ").json()["REMOTE_PORT"]
        pid = os.fork()
        if pid == 0:  # the child
            code = 1
            try:
                child_port = client.get("/environ").json()["REMOTE_PORT"]
                # The child's figures are those of the pool its requests went through (the
                # one it made after the fork), which close() then closes.
                connections = client.metrics().endpoints[0].connections
                code = 0 if child_port != parent_port and connections == 1 else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        # The parent's connection is untouched by the child's exit.
        assert client.get("/environ").json()["REMOTE_PORT"] == parent_port


@spec("X-5", "X-6")
def test_retry_policy_by_method(tmp_path: Path) -> None:
    """A dead connection: an idempotent request is retried when asked, a POST never is."""
    server = start("tests.server.apps:app", "--workers", "1", "--threads", "4",
                   "--stats", f"unix:{tmp_path}/stats.sock", log_dir=tmp_path)  # fmt: skip
    try:
        host, port = server.address
        with Client(f"mux://{host}:{port}", retries=1, timeout=20) as client:
            assert client.get("/hello").status == 200
            outcome: dict[str, object] = {}

            def call(method: str) -> None:
                try:
                    outcome[method] = client.request(method, "/sleep?s=3", body=b"").status
                except ReadError as exc:
                    outcome[method] = exc

            threads = [threading.Thread(target=call, args=(m,)) for m in ("GET", "POST")]
            for thread in threads:
                thread.start()
            # Both reached the worker. Its figures are published once a second: the calls
            # last long enough to be seen running, and to be still running when it is killed.
            until(lambda: server.worker()["streams"] == 2, what="both in the worker")
            os.kill(server.worker_pids()[0], signal.SIGKILL)
            for thread in threads:
                thread.join(30)
        assert outcome["GET"] == 200  # retried on the respawned worker
        assert isinstance(outcome["POST"], ReadError)  # may have been processed: not retried
    finally:
        server.stop()


@pytest.mark.parametrize("tls", [False, True], ids=["mux", "muxs-by-name"])
def test_reloads_under_load_fail_nothing(tmp_path: Path, tls: bool) -> None:
    options: dict[str, str] = {}
    args: list[str] = []
    if tls:  # and by name: the pool resolves it, and must not eject it for a reload
        certs = make_certs(tmp_path)
        args = ["--certfile", str(certs.server_cert), "--keyfile", str(certs.server_key)]
        options = {"verify": str(certs.ca)}
    server = start("tests.server.apps:app", "--workers", "2", "--threads", "8", *args,
                   "--stats", f"unix:{tmp_path}/stats.sock", log_dir=tmp_path)  # fmt: skip
    try:
        # Both workers ready first: a HUP stops a worker still booting with a signal (it is
        # outdated before it served), and the count of clean exits below would fall short.
        until(lambda: [w["status"] for w in server.stats()["workers"]] == ["ready"] * 2,
              30, what="two ready workers")  # fmt: skip
        host, port = server.address
        failures: list[BaseException] = []
        done = [0]
        stop = threading.Event()
        url = f"muxs://localhost:{port}" if tls else f"mux://{host}:{port}"
        with Client(url, timeout=20, **options) as client:

            def load() -> None:
                while not stop.is_set():
                    try:
                        response = client.post("/echo", body=b"payload")
                        assert response.content == b"payload"
                        done[0] += 1
                    except BaseException as exc:
                        failures.append(exc)
                        return  # one is enough to fail the test (a closed client fails fast)

            def progress(more: int = 50) -> None:
                """Until ``more`` POSTs were answered from now (no timing: a count)."""
                goal = done[0] + more
                until(lambda: done[0] >= goal or failures, 30, what=f"{more} more POSTs")

            threads = [threading.Thread(target=load) for _ in range(8)]
            for thread in threads:
                thread.start()
            try:
                for _ in range(3):
                    progress()  # the reload happens under load
                    goal = server.log().count("exited (code 0)") + 2
                    server.signal(signal.SIGHUP)
                    until(lambda goal=goal: server.log().count("exited (code 0)") >= goal, 30,
                          what="both workers replaced")  # fmt: skip
                progress()  # and the new workers serve
            finally:
                # Also when a wait above failed: load threads left running would go on
                # failing against the closed client for the rest of the session.
                stop.set()
                for thread in threads:
                    thread.join(30)
        print(f"\nclient under 3 reloads: {done[0]} POSTs, {len(failures)} failed")
        assert failures == []
    finally:
        server.stop()


def test_cli(mux_url: str, server: ServerProcess) -> None:
    import subprocess
    import sys

    def run(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, "-m", "muxwsgi", "request", *args], capture_output=True, timeout=30
        )

    result = run("-i", f"{mux_url}/hello")
    assert result.returncode == 0
    assert result.stdout.startswith(b"HTTP/1.1 200 OK\r\n")
    assert result.stdout.endswith(b"\r\n\r\nHello, World!")
    result = run("-d", "body!", "-H", "X-A: 1", f"{mux_url}/echo")
    assert result.stdout == b"body!"
    result = run("-f", f"{mux_url}/nope")
    assert result.returncode == 1 and result.stdout == b"Not Found"
    host, port = server.address
    result = run(f"uwsgi://{host}:{port}/environ")
    assert json.loads(result.stdout)["muxwsgi.protocol"] == "uwsgi"
    result = run("mux://127.0.0.1:1/")
    assert result.returncode == 1 and b"Connection refused" in result.stderr
    result = run("http://example.test/")
    assert result.returncode == 2 and b"unsupported URL scheme" in result.stderr
