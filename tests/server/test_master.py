"""The master with real processes and real signals: reload, stop, respawn, recycle, harakiri,
stats, crash-loop guard, boot errors (issue 4); HUP storms and scaling during a reload under
load (issue 15; the same decisions without processes: test_supervision.py)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from muxwsgi import ErrorCode

from ..loadgen import Load
from ..muxclient import RawMux
from ..servers import ROOT, ServerProcess, start, wait_ready

pytestmark = pytest.mark.slow

RELOAD_APP = """
import time
VERSION = {version!r}

def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/sleep":
        time.sleep(float(environ["QUERY_STRING"].partition("=")[2] or 0.2))
    if path == "/stuck":
        time.sleep(60)
    body = VERSION.encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""


def write_app(directory: Path, version: str) -> None:
    (directory / "reloadapp.py").write_text(RELOAD_APP.format(version=version))


def until(
    predicate: Callable[[], object],
    timeout: float,
    what: str,
    *,
    server: ServerProcess | None = None,
) -> None:
    """Poll ``predicate`` until it is true; fail after ``timeout`` seconds (with the end of
    ``server``'s log, when given: what the master did instead)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            tail = "" if server is None else "; the log ends:\n" + server.log()[-4000:]
            raise AssertionError(f"timed out waiting for {what}{tail}")
        time.sleep(0.05)


def fetch_stats(path: Path, what: str = "/") -> str:
    """The body of a GET on the stats endpoint at unix socket ``path``."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(path))
        sock.sendall(f"GET {what} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = b"".join(iter(lambda: sock.recv(65536), b""))
    return data.partition(b"\r\n\r\n")[2].decode()


def workers(path: Path) -> list[dict[str, Any]]:
    """The stats endpoint's worker table."""
    table: list[dict[str, Any]] = json.loads(fetch_stats(path))["workers"]
    return table


def running_requests(path: Path) -> int:
    return sum(w["streams"] for w in workers(path))


def settled(server: ServerProcess, stats: Path, count: int, generation: int) -> bool:
    """Exactly ``count`` worker processes, all ready and of ``generation``, none draining."""
    table = workers(stats)
    return (
        len(table) == count
        and all(w["status"] == "ready" and w["generation"] == generation for w in table)
        and sorted(server.worker_pids()) == sorted(w["pid"] for w in table)
    )


def served_version(server: ServerProcess) -> str:
    client = RawMux(server.address)
    try:
        return client.request("GET", "/version").body.decode()
    finally:
        client.close()


def reload_app(tmp_path: Path, *args: str, watch: Path | None = None) -> ServerProcess:
    write_app(tmp_path, "v1")
    return start("reloadapp:app", "--chdir", str(tmp_path), *args, log_dir=tmp_path, watch=watch)


def test_hup_five_times_under_load_fails_nothing(tmp_path: Path) -> None:
    stats = tmp_path / "stats.sock"
    server = reload_app(tmp_path, "--workers", "2", "--threads", "8", "--graceful-timeout", "10",
                        "--stats", f"unix:{stats}")  # fmt: skip
    try:
        # Both workers ready first: a HUP stops a worker still booting with a signal, not a
        # clean exit, and the count below would fall short.
        until(lambda: settled(server, stats, 2, 0), 30, "2 workers")
        with Load(server.address, ["/fast", "/sleep?s=0.2"]) as load:
            until(lambda: len(load.tally.ok) == 3, 30, "load on all three protocols")
            for n in range(2, 7):
                write_app(tmp_path, f"v{n}")  # new code on disk: workers must re-import it
                exited = server.log().count("exited (code 0)")
                server.signal(signal.SIGHUP)
                # Each reload replaces both workers, one at a time, new before old.
                until(
                    lambda before=exited: server.log().count("exited (code 0)") >= before + 2,
                    30,
                    "a reload",
                )
            served = load.tally.total_ok
            until(lambda: load.tally.total_ok > served + 100, 30, "requests after the reloads")
            tally = load.stop()
        print(f"\nHUP x5 under load: ok={dict(tally.ok)} failed={dict(tally.failed)} "
              f"retried={dict(tally.retried)}")  # fmt: skip
        assert tally.total_failed == 0, tally.errors
        assert min(tally.ok.values()) > 20 and len(tally.ok) == 3  # all three protocols ran
        assert served_version(server) == "v6"  # the new code is served afterwards
        versions = {body.decode() for body in tally.bodies}
        assert {"v1", "v6"} <= versions
    finally:
        server.stop()


def hup_storm(server: ServerProcess, tmp_path: Path, hups: int, interval: float, first: int) -> int:
    """``hups`` HUPs ``interval`` seconds apart (the pace of the signals is the scenario, not a
    wait), new code on disk before each; returns the last generation."""
    for n in range(first, first + hups):
        write_app(tmp_path, f"v{n}")
        server.signal(signal.SIGHUP)
        time.sleep(interval)
    return first + hups - 1


def test_hup_storms_under_load_leave_exactly_the_workers(tmp_path: Path) -> None:
    """Six HUPs 0.3 s apart, then four 3 s apart: once the master is quiet, exactly --workers
    processes are left, all of the newest generation, and no request failed."""
    stats = tmp_path / "stats.sock"
    server = reload_app(tmp_path, "--workers", "2", "--threads", "8", "--graceful-timeout", "10",
                        "--stats", f"unix:{stats}")  # fmt: skip
    try:
        with Load(server.address, ["/fast", "/sleep?s=0.1"]) as load:
            until(lambda: len(load.tally.ok) == 3, 30, "load on all three protocols")
            generation = hup_storm(server, tmp_path, 6, 0.3, first=1)
            until(lambda: settled(server, stats, 2, generation), 60, "2 workers after 6 HUPs")
            assert served_version(server) == f"v{generation}"
            generation = hup_storm(server, tmp_path, 4, 3.0, first=generation + 1)
            until(lambda: settled(server, stats, 2, generation), 60, "2 workers after 4 HUPs")
            assert served_version(server) == f"v{generation}"
            tally = load.stop()
        print(f"\nHUP storms under load: ok={dict(tally.ok)} failed={dict(tally.failed)} "
              f"retried={dict(tally.retried)}")  # fmt: skip
        assert tally.total_failed == 0, tally.errors
        assert "HUP: rolling reload to generation 10 (2 worker(s) to replace)" in server.log()
    finally:
        server.stop()


def test_ttin_ttou_during_a_reload_under_load(tmp_path: Path) -> None:
    stats = tmp_path / "stats.sock"
    server = reload_app(tmp_path, "--workers", "2", "--threads", "8", "--stats", f"unix:{stats}")
    try:
        with Load(server.address, ["/fast", "/sleep?s=0.1"]) as load:
            until(lambda: len(load.tally.ok) == 3, 30, "load on all three protocols")
            write_app(tmp_path, "v2")
            server.signal(signal.SIGHUP)
            server.signal(signal.SIGTTIN)
            until(lambda: settled(server, stats, 3, 1), 60, "3 workers of generation 1")
            server.signal(signal.SIGHUP)
            server.signal(signal.SIGTTOU)
            until(lambda: settled(server, stats, 2, 2), 60, "2 workers of generation 2")
            assert served_version(server) == "v2"
            tally = load.stop()
        assert tally.total_failed == 0, tally.errors
    finally:
        server.stop()


def test_a_reload_that_cannot_import_keeps_the_old_workers(tmp_path: Path) -> None:
    stats = tmp_path / "stats.sock"
    server = reload_app(tmp_path, "--workers", "2", "--stats", f"unix:{stats}")
    try:
        until(lambda: settled(server, stats, 2, 0), 30, "2 workers")
        (tmp_path / "reloadapp.py").write_text("raise RuntimeError('half-deployed')\n")
        server.signal(signal.SIGHUP)
        until(lambda: "reload to generation 1 is abandoned" in server.log(), 30, "the log",
              server=server)  # fmt: skip
        assert "could not load the application" in server.log()
        assert "half-deployed" in server.log()  # the worker said why
        assert settled(server, stats, 2, 0)
        assert all(served_version(server) == "v1" for _ in range(10))
        write_app(tmp_path, "v2")  # fixed: the next HUP goes through
        server.signal(signal.SIGHUP)
        until(lambda: settled(server, stats, 2, 2), 30, "2 workers of generation 2",
              server=server)  # fmt: skip
        assert served_version(server) == "v2"
    finally:
        server.stop()


def refused(address: tuple[str, int]) -> bool:
    try:
        socket.create_connection(address, timeout=2).close()
    except OSError:
        return True
    return False


def test_term_under_load_drains_and_exits_zero(tmp_path: Path) -> None:
    stats = tmp_path / "stats.sock"
    server = reload_app(tmp_path, "--workers", "2", "--threads", "24", "--graceful-timeout", "10",
                        "--stats", f"unix:{stats}")  # fmt: skip
    client = RawMux(server.address)
    slow = [client.send("GET", "/sleep?s=3") for _ in range(20)]
    until(lambda: running_requests(stats) == 20, 5, "the 20 requests to run")
    started = time.monotonic()
    server.signal(signal.SIGTERM)
    until(lambda: refused(server.address), 5, "new connections to be refused")
    replies = client.wait(*slow, timeout=15)
    code = server.wait(15)
    drained = time.monotonic() - started
    print(
        f"\nTERM drain: {len(replies)} in-flight requests completed, "
        f"exit {code} after {drained:.2f}s"
    )
    assert code == 0
    assert all(r.status == 200 and r.body == b"v1" for r in replies)
    assert drained < 10
    assert "graceful stop" in server.log()


def test_int_is_a_fast_stop(tmp_path: Path) -> None:
    stats = tmp_path / "stats.sock"
    server = reload_app(tmp_path, "--stats", f"unix:{stats}")
    client = RawMux(server.address)
    client.send("GET", "/sleep?s=30")
    until(lambda: running_requests(stats) == 1, 5, "the request to run")
    started = time.monotonic()
    server.signal(signal.SIGINT)
    assert server.wait(10) == 0
    assert time.monotonic() - started < 5


def test_kill_9_worker_is_respawned(tmp_path: Path) -> None:
    server = reload_app(tmp_path, "--workers", "2")
    try:
        until(lambda: len(server.worker_pids()) == 2, 10, "two workers")
        victim = server.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        until(lambda: len(server.worker_pids()) == 2 and victim not in server.worker_pids(), 10,
              "a respawned worker")  # fmt: skip
        # Polled: the master may reap and respawn a moment before the line reaches the file.
        until(lambda: "died unexpectedly (signal 9)" in server.log(), 5, "the death logged",
              server=server)  # fmt: skip
        assert all(served_version(server) == "v1" for _ in range(20))
    finally:
        server.stop()


def test_max_requests_recycles_without_failing_a_request(tmp_path: Path) -> None:
    server = reload_app(tmp_path, "--workers", "2", "--max-requests", "300",
                        "--max-requests-jitter", "50")  # fmt: skip
    try:
        with Load(server.address, ["/fast"], mux=1, http=1, uwsgi=1) as load:
            until(lambda: server.log().count("max-requests; replacing") >= 3, 60, "recycling")
            tally = load.stop()
        assert tally.total_failed == 0, tally.errors
    finally:
        server.stop()


def test_harakiri_replaces_only_the_stuck_worker(tmp_path: Path) -> None:
    server = reload_app(tmp_path, "--workers", "2", "--threads", "1", "--harakiri", "1")
    try:
        until(lambda: len(server.worker_pids()) == 2, 10, "two workers")
        before = set(server.worker_pids())
        client = RawMux(server.address)
        stuck = client.send("GET", "/stuck")
        queued = [client.send("GET", "/fast") for _ in range(3)]  # behind it, on one thread
        replies = client.wait(stuck, *queued, timeout=15)
        assert replies[0].reset == ErrorCode.INTERNAL_ERROR  # the stuck request is aborted
        # Requests that never started are refused: the client may retry them anywhere.
        assert all(r.reset == ErrorCode.REFUSED_STREAM for r in replies[1:])
        assert "harakiri" in server.log()

        def replaced() -> bool:
            # The stuck worker gone (its refused requests no longer hold it for the graceful
            # timeout), the other one untouched, and a new one in its place.
            pids = set(server.worker_pids())
            return len(pids) == 2 and len(pids & before) == 1

        until(replaced, 10, "the stuck worker to exit and a replacement to start", server=server)
        assert served_version(server) == "v1"
    finally:
        server.stop()


def test_ttin_ttou(tmp_path: Path) -> None:
    server = reload_app(tmp_path, "--workers", "1")
    try:
        until(lambda: len(server.worker_pids()) == 1, 10, "one worker")
        server.signal(signal.SIGTTIN)
        until(lambda: len(server.worker_pids()) == 2, 10, "two workers after TTIN")
        server.signal(signal.SIGTTOU)
        until(lambda: len(server.worker_pids()) == 1, 15, "one worker after TTOU")
    finally:
        server.stop()


def test_stats_json_and_prometheus(tmp_path: Path) -> None:
    stats_path = tmp_path / "stats.sock"
    server = reload_app(tmp_path, "--workers", "2", "--stats", f"unix:{stats_path}")
    try:
        assert stat.S_IMODE(os.stat(stats_path).st_mode) == 0o600

        def fetch(path: str) -> str:
            return fetch_stats(stats_path, path)

        before = json.loads(fetch("/"))
        assert len(before["workers"]) == 2 and before["listen_queue_max"] > 0
        client = RawMux(server.address)
        for _ in range(50):
            client.send("GET", "/fast")
        client.wait()
        until(lambda: sum(w["requests"] for w in json.loads(fetch("/"))["workers"]) >= 50, 5,
              "stats to count the requests")  # fmt: skip
        after = json.loads(fetch("/"))
        assert all(
            w["pid"] in server.worker_pids() and w["status"] == "ready" for w in after["workers"]
        )
        assert sum(w["streams"] for w in after["workers"]) == 0
        metrics = fetch("/metrics")
        samples = dict(
            line.rsplit(" ", 1)
            for line in metrics.splitlines()
            if line and not line.startswith("#")
        )
        assert samples["muxwsgi_workers"] == "2"
        total = sum(
            float(v) for k, v in samples.items() if k.startswith("muxwsgi_worker_requests_total")
        )
        assert total >= 50
    finally:
        server.stop()


def test_access_log_json_with_request_id(tmp_path: Path) -> None:
    log_path = tmp_path / "access.log"
    server = reload_app(tmp_path, "--access-log", str(log_path), "--log-format", "json")
    try:
        client = RawMux(server.address)
        client.request("GET", "/fast?x=1", HTTP_X_REQUEST_ID="req-123")
        client.request("GET", "/other")
        until(lambda: log_path.exists() and len(log_path.read_text().splitlines()) >= 3, 5,
              "access log lines")  # fmt: skip
        entries = [json.loads(line) for line in log_path.read_text().splitlines()]
        mine = [e for e in entries if e["request_id"] == "req-123"]
        assert mine and mine[0]["path"] == "/fast?x=1"  # REQUEST_URI, query included
        assert mine[0]["status"] == 200 and mine[0]["protocol"] == "mux" and mine[0]["bytes"] == 2
        generated = [e for e in entries if e["path"].startswith("/other")]
        assert generated and re.fullmatch(r"[0-9a-f]{12}-[0-9a-f]+", generated[0]["request_id"])
    finally:
        server.stop()


def test_usr1_reopens_the_error_log(tmp_path: Path) -> None:
    error_log = tmp_path / "error.log"
    server = reload_app(tmp_path, "--error-log", str(error_log), watch=error_log)
    try:
        until(lambda: error_log.exists() and "worker" in error_log.read_text(), 5, "the error log")
        error_log.rename(tmp_path / "error.log.1")  # what logrotate does
        server.signal(signal.SIGUSR1)
        until(error_log.exists, 5, "the master to reopen the log")
        server.signal(signal.SIGTTIN)  # something for the master to log
        until(lambda: error_log.exists() and "TTIN" in error_log.read_text(), 5, "a reopened log")
    finally:
        server.stop()


# ---------------------------------------------------------------- startup failures


def run_serve(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "muxwsgi", "serve", *args], cwd=ROOT, capture_output=True,
        text=True, timeout=timeout, start_new_session=True,
    )  # fmt: skip


def test_app_import_error_exits_at_once() -> None:
    started = time.monotonic()
    result = run_serve("no_such_module_anywhere:app", "--bind", "127.0.0.1:0", "--workers", "3")
    assert result.returncode == 4
    assert 'Could not import module "no_such_module_anywhere".' in result.stderr
    assert time.monotonic() - started < 10


def test_crash_loop_guard(tmp_path: Path) -> None:
    (tmp_path / "crashapp.py").write_text(
        "import os, threading\nthreading.Timer(0.2, os._exit, (9,)).start()\n"
        "def app(environ, start_response):\n    return []\n"
    )
    result = run_serve("crashapp:app", "--chdir", str(tmp_path), "--bind", "127.0.0.1:0")
    assert result.returncode == 1
    assert "keep dying right after they start" in result.stderr


def test_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_serve("muxwsgi.demo:app", "--bind", f"127.0.0.1:{port}")
    assert result.returncode == 1
    assert f"127.0.0.1:{port} is already in use" in result.stderr


def test_unix_socket_is_0660_and_removed(tmp_path: Path) -> None:
    path = tmp_path / "app.sock"
    server = start("tests.server.apps:app", log_dir=tmp_path, bind=f"unix:{path}")
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
        client = RawMux(str(path))
        assert client.request("GET", "/hello").body == b"Hello, World!"
    finally:
        server.stop()
    assert not path.exists()


def test_default_bind_is_loopback_3031(tmp_path: Path) -> None:
    log = tmp_path / "default.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "muxwsgi", "serve", "muxwsgi.demo:app"],
                                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    try:
        until(lambda: "listening on" in log.read_text() or proc.poll() is not None, 10, "start")
        assert "listening on 127.0.0.1:3031" in log.read_text()
        wait_ready(("127.0.0.1", 3031))
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
