"""The sync client under threads, fork, reloads and killed workers (hand-written: these are
about threads and processes, which the async source has no twin for)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from muxwsgi.client import Client, ReadError

from ..core.helpers import spec
from ..servers import ServerProcess, start

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
                code = 0 if child_port != parent_port else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        # The parent's connection is untouched by the child's exit.
        assert client.get("/environ").json()["REMOTE_PORT"] == parent_port


@spec("X-5", "X-6")
def test_retry_policy_by_method(tmp_path: Path) -> None:
    """A dead connection: an idempotent request is retried when asked, a POST never is."""
    server = start("tests.server.apps:app", "--threads", "4", log_dir=tmp_path)
    try:
        host, port = server.address
        with Client(f"mux://{host}:{port}", retries=1, timeout=20) as client:
            assert client.get("/hello").status == 200
            outcome: dict[str, object] = {}

            def call(method: str) -> None:
                try:
                    outcome[method] = client.request(method, "/sleep?s=1", body=b"").status
                except ReadError as exc:
                    outcome[method] = exc

            threads = [threading.Thread(target=call, args=(m,)) for m in ("GET", "POST")]
            for thread in threads:
                thread.start()
            time.sleep(0.4)  # both are running in the worker
            os.kill(server.worker_pids()[0], signal.SIGKILL)
            for thread in threads:
                thread.join(30)
        assert outcome["GET"] == 200  # retried on the respawned worker
        assert isinstance(outcome["POST"], ReadError)  # may have been processed: not retried
    finally:
        server.stop()


def test_reloads_under_load_fail_nothing(tmp_path: Path) -> None:
    server = start("tests.server.apps:app", "--workers", "2", "--threads", "8", log_dir=tmp_path)
    try:
        host, port = server.address
        failures: list[BaseException] = []
        done = [0]
        stop = threading.Event()
        with Client(f"mux://{host}:{port}", timeout=20) as client:

            def load() -> None:
                while not stop.is_set():
                    try:
                        response = client.post("/echo", body=b"payload")
                        assert response.content == b"payload"
                        done[0] += 1
                    except BaseException as exc:
                        failures.append(exc)

            threads = [threading.Thread(target=load) for _ in range(8)]
            for thread in threads:
                thread.start()
            for _ in range(3):
                time.sleep(1.0)
                exited = server.log().count("exited (code 0)")
                server.signal(signal.SIGHUP)
                deadline = time.monotonic() + 30
                while server.log().count("exited (code 0)") < exited + 2:
                    assert time.monotonic() < deadline, "reload did not finish"
                    time.sleep(0.05)
            time.sleep(0.5)
            stop.set()
            for thread in threads:
                thread.join(30)
        print(f"\nclient under 3 reloads: {done[0]} POSTs, {len(failures)} failed")
        assert failures == [] and done[0] > 200
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
