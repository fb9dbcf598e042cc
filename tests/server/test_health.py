"""/healthz and /readyz on the stats listener, with real processes and real signals: readiness
waits for the workers, flips at the start of TERM while a request still drains, and survives a
rolling reload, TTIN and TTOU; the answers are proper HTTP/1.0 and HTTP/1.1 (issue 18).

The application here blocks where the test says (its import, one request) until a file appears,
so every state is held for as long as the test looks at it: nothing depends on timing.
"""

from __future__ import annotations

import http.client
import json
import re
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..servers import ServerProcess, connect, running, start, until

pytestmark = pytest.mark.slow

GATED_APP = """
import os
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def wait_for(name):
    while not os.path.exists(os.path.join(HERE, name)):
        time.sleep(0.01)


wait_for("import.open")  # a worker is not ready before the test opens this gate


def app(environ, start_response):
    if environ["PATH_INFO"] == "/hold":
        wait_for("hold.open")
    body = b"done"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "4")])
    return [body]
"""


def probe(
    where: tuple[str, int] | str, path: str, *, method: str = "GET", version: str = "HTTP/1.1"
) -> tuple[int, dict[str, str], bytes]:
    """One request as a probe sends it; the status, headers (lower-case names) and body of the
    answer, which must be a complete HTTP/1.1 response that the server closes after."""
    host = "Host: stats\r\n" if version == "HTTP/1.1" else ""
    with connect(where, timeout=5) as sock:
        sock.sendall(f"{method} {path} {version}\r\n{host}User-Agent: probe\r\n\r\n".encode())
        reply = b"".join(iter(lambda: sock.recv(65536), b""))
    return parse_response(reply, head_only=method == "HEAD")


def parse_response(reply: bytes, *, head_only: bool = False) -> tuple[int, dict[str, str], bytes]:
    head, sep, body = reply.partition(b"\r\n\r\n")
    assert sep, reply
    status_line, *lines = head.decode("latin-1").split("\r\n")
    found = re.fullmatch(r"HTTP/1\.1 (\d{3}) [A-Za-z ]+", status_line)
    assert found, status_line
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    assert headers["connection"] == "close"
    assert body == b"" if head_only else int(headers["content-length"]) == len(body)
    return int(found[1]), headers, body


def status(where: tuple[str, int] | str, path: str) -> tuple[int, bytes]:
    code, _, body = probe(where, path)
    return code, body


def gated(tmp_path: Path, *args: str, open_import: bool) -> tuple[ServerProcess, str]:
    """A server of GATED_APP with stats on a unix socket; returns it and the socket's path."""
    (tmp_path / "gatedapp.py").write_text(GATED_APP)
    if open_import:
        (tmp_path / "import.open").touch()
    stats = str(tmp_path / "stats.sock")
    server = start("gatedapp:app", "--chdir", str(tmp_path), "--stats", f"unix:{stats}", *args,
                   log_dir=tmp_path, ready=False)  # fmt: skip
    until(lambda: status(stats, "/healthz")[0] == 200, 20, what="the master to answer",
          ignore=(OSError,))  # fmt: skip
    return server, stats


def stats_workers(stats: str) -> list[dict[str, Any]]:
    code, body = status(stats, "/")
    assert code == 200
    table: list[dict[str, Any]] = json.loads(body)["workers"]
    return table


def test_readyz_waits_for_the_workers_and_flips_at_term_before_the_drain(tmp_path: Path) -> None:
    server, stats = gated(tmp_path, "--workers", "2", "--graceful-timeout", "30",
                          open_import=False)  # fmt: skip
    try:
        # The workers are importing (held at the gate): alive, not ready.
        until(lambda: len(stats_workers(stats)) == 2, 20, what="two workers booting")
        assert status(stats, "/readyz") == (503, b"not ready: 0 of 2 worker(s) ready\n")
        assert status(stats, "/healthz") == (200, b"ok\n")
        (tmp_path / "import.open").touch()
        until(lambda: status(stats, "/readyz") == (200, b"ok\n"), 20, what="ready")

        # A request that runs until the test lets it finish.
        held = connect(server.address, timeout=10)
        held.sendall(b"GET /hold HTTP/1.1\r\nHost: app\r\n\r\n")
        until(lambda: sum(w["streams"] for w in stats_workers(stats)) == 1, 10,
              what="the held request to run")  # fmt: skip

        server.signal(signal.SIGTERM)
        until(lambda: status(stats, "/readyz")[0] == 503, 10, what="/readyz to say 503")
        assert status(stats, "/readyz") == (503, b"not ready: stopping\n")
        # ... while the request still runs: it has not been answered.
        held.setblocking(False)
        with pytest.raises(BlockingIOError):
            held.recv(1)
        held.setblocking(True)
        assert server.proc.poll() is None
        assert status(stats, "/healthz") == (200, b"ok\n")

        (tmp_path / "hold.open").touch()
        reply = b""
        while b"done" not in reply:
            chunk = held.recv(4096)
            assert chunk, reply
            reply += chunk
        assert reply.startswith(b"HTTP/1.1 200 ")
        held.close()

        # /healthz answers 200 until the master is gone, and nothing else.
        answers: list[int] = []

        def gone() -> bool:
            try:
                answers.append(status(stats, "/healthz")[0])
            except OSError:
                return True
            return False

        until(gone, 30, what="the master to stop answering")
        assert answers and set(answers) == {200}
        assert server.wait(15) == 0
    finally:
        server.stop()


def test_readyz_stays_ok_through_a_reload_ttin_and_ttou(tmp_path: Path) -> None:
    """Rolling reload: a worker is drained only once its replacement is ready, so as many as
    the target always serve. TTIN: readiness waits for the target the pool last reached, not
    for the new worker. TTOU: the target is lower at once."""
    server, stats = gated(tmp_path, "--workers", "2", open_import=True)
    readiness: list[int] = []

    def ready_and(predicate: Any) -> Any:
        readiness.append(status(stats, "/readyz")[0])
        return predicate()

    def settled(count: int, generation: int) -> bool:
        table = stats_workers(stats)
        return len(table) == count and all(
            w["status"] == "ready" and w["generation"] == generation for w in table
        )

    try:
        until(lambda: ready_and(lambda: settled(2, 0)), 20, what="2 workers ready")
        readiness.clear()
        (tmp_path / "import.open").unlink()  # the new generation's workers wait at the gate
        server.signal(signal.SIGHUP)
        until(lambda: ready_and(lambda: any(w["generation"] == 1 for w in stats_workers(stats))),
              10, what="a worker of generation 1 booting")  # fmt: skip
        server.signal(signal.SIGTTIN)
        until(lambda: ready_and(lambda: "TTIN: 3 worker(s)" in server.log()),
              10, what="TTIN to be handled")  # fmt: skip
        # Held here: 2 old workers serve, the new ones cannot import. Still ready.
        assert status(stats, "/readyz") == (200, b"ok\n")
        assert sum(w["status"] == "ready" for w in stats_workers(stats)) == 2
        (tmp_path / "import.open").touch()
        until(lambda: ready_and(lambda: settled(3, 1)), 60, what="3 workers of generation 1")
        server.signal(signal.SIGTTOU)
        until(lambda: ready_and(lambda: settled(2, 1)), 30, what="2 workers after TTOU")
        assert readiness and set(readiness) == {200}, readiness
    finally:
        server.stop()


@pytest.fixture(scope="module")
def tcp_stats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int] | str]:
    """The stats address of a server with one worker, ready."""
    with running("tests.server.apps:app", "--stats", "127.0.0.1:0",
                 log_dir=tmp_path_factory.mktemp("health")) as server:  # fmt: skip
        where = server.stats_address
        until(lambda: status(where, "/readyz")[0] == 200, 20, what="ready")
        yield where


def test_probes_over_http_1_0_and_1_1(tcp_stats: tuple[str, int] | str) -> None:
    where = tcp_stats
    assert isinstance(where, tuple)
    for version in ("HTTP/1.0", "HTTP/1.1"):
        for path in ("/healthz", "/readyz", "/readyz?verbose"):
            code, headers, body = probe(where, path, version=version)
            assert (code, body) == (200, b"ok\n")
            assert headers["content-type"] == "text/plain; charset=utf-8"
            assert probe(where, path, method="HEAD", version=version)[:2] == (200, headers)
    # A real client (http.client, as urllib and many load balancers' agents use).
    conn = http.client.HTTPConnection(*where, timeout=5)
    conn.request("GET", "/readyz")
    response = conn.getresponse()
    assert (response.status, response.read()) == (200, b"ok\n")
    conn.close()
    # The existing documents are unchanged.
    assert probe(where, "/")[1]["content-type"] == "application/json"
    assert b"muxwsgi_workers 1" in probe(where, "/metrics")[2]
    # Anything else is refused in words, and the connection still gets an answer.
    assert probe(where, "/nope")[0] == 404
    code, headers, _ = probe(where, "/readyz", method="POST")
    assert code == 405 and headers["allow"] == "GET, HEAD"
    # Not HTTP: a line that is no request line, and bytes that are no HTTP at all (a TLS
    # ClientHello's first bytes, which never end a line: answered at once, not waited for).
    for garbage in (b"hello there\r\n\r\n", b"\x16\x03\x01\x02\x00\x01\x00"):
        with connect(where, timeout=5) as sock:
            sock.sendall(garbage)
            assert parse_response(b"".join(iter(lambda: sock.recv(65536), b"")))[0] == 400
    # A request head that comes in pieces.
    with connect(where, timeout=5) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for piece in (b"GET /readyz HTTP/1.1\r\n", b"Host: stats\r\n", b"\r\n"):
            sock.sendall(piece)
        assert parse_response(b"".join(iter(lambda: sock.recv(65536), b"")))[0] == 200


def test_a_peer_that_sends_nothing_does_not_hold_the_master(
    tcp_stats: tuple[str, int] | str,
) -> None:
    silent = [connect(tcp_stats, timeout=5) for _ in range(3)]
    until(lambda: status(tcp_stats, "/healthz")[0] == 200, 20, what="an answer past them",
          ignore=(OSError,))  # fmt: skip
    for sock in silent:
        sock.close()
