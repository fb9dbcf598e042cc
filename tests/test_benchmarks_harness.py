"""The benchmark harness, run for real in a tiny configuration: two targets (muxwsgi over one
mux connection, and its classic uwsgi path), one scenario, one second per cell, once and in two
rounds; the gRPC row the same way; and the nginx keep-alive front the wrk rows use, driven by
plain HTTP requests.

Only the shape of the output and the success of the requests are checked; the figures
themselves are reported by the harness, never asserted here.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from benchmarks.workload import headers_for

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow

REQUIRED = {
    "target": str,
    "scenario": str,
    "concurrency": int,
    "rps": float,
    "p50_ms": float,
    "p99_ms": float,
    "errors": int,
    "client_cpu_us": float,
    "server_cpu_us": float,
    "rss_mb": float,
}


def run_harness(
    targets: str, *options: str, concurrency: int = 8
) -> tuple[subprocess.CompletedProcess[str], dict]:
    """``python -m benchmarks run`` on ``targets``, hello for one second per cell; the
    finished process and its JSON document."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks", "run", "--targets", targets,
             "--scenarios", "hello", "-c", str(concurrency), "--duration", "1", "--warmup", "0.3",
             "--json", str(out), *options],
            cwd=ROOT, capture_output=True, text=True, timeout=50,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        return done, json.loads(out.read_text())


def check_cells(doc: dict, expected: list[str], concurrency: int = 8) -> None:
    """One hello cell per expected target, every figure there, every request answered."""
    cells = doc["results"]
    assert [(c["target"], c["scenario"], c["concurrency"]) for c in cells] == [
        (target, "hello", concurrency) for target in expected
    ]
    for cell in cells:
        for key, kind in REQUIRED.items():
            assert isinstance(cell[key], kind), (key, cell[key])
        assert cell["errors"] == 0, cell["error_samples"]
        assert cell["requests"] > 0
        assert cell["rps"] > 0 and cell["server_cpu_us"] > 0 and cell["rss_mb"] > 0
    assert not doc["skipped"]


def test_run_two_targets_one_scenario(tmp_path: Path) -> None:
    md, png = tmp_path / "out.md", tmp_path / "out.png"
    done, doc = run_harness("mux-1conn,muxwsgi-classic", "--markdown", str(md), "--plot", str(png))
    check_cells(doc, ["mux-1conn", "muxwsgi-classic"])
    assert {"python", "pgo", "lto", "config_args", "cores"} <= doc["environment"].keys()
    assert {r["id"] for r in doc["ratios"]} >= {"hello-rps-vs-uwsgi", "hol-p99"}
    text = md.read_text()
    assert "| mux-1conn | 8 |" in text and "| muxwsgi-classic | 8 |" in text
    assert "[2/2] muxwsgi-classic" in done.stderr  # progress, as it goes
    assert png.read_bytes().startswith(b"\x89PNG")


def test_repeats_run_in_rounds() -> None:
    """--repeat 2: every target once, then every target again (not a cell's runs back to
    back), and each cell reports its median run with every run's req/s beside it."""
    done, doc = run_harness("mux-1conn,muxwsgi-classic", "--repeat", "2")
    check_cells(doc, ["mux-1conn", "muxwsgi-classic"])
    measured = [
        line.split()[1]
        for line in done.stderr.splitlines()
        if line.startswith("[") and "req/s" in line
    ]
    assert measured == ["mux-1conn", "muxwsgi-classic", "mux-1conn", "muxwsgi-classic"]
    assert "[4/4] muxwsgi-classic" in done.stderr
    for cell in doc["results"]:
        runs = cell["runs_rps"]
        assert len(runs) == 2 and cell["rps"] == min(runs), cell  # the lower middle of two


def test_grpc_row() -> None:
    """The gRPC server (a process per worker) answers the grpc.aio client's unary calls on one
    channel, and its ratios against mux-1conn come out of the run (at 64 in flight, where the
    ratios are read)."""
    if importlib.util.find_spec("grpc") is None:
        pytest.skip("grpcio comes with the bench extra: pip install -e '.[bench]'")
    _, doc = run_harness("mux-1conn,grpc", concurrency=64)
    check_cells(doc, ["mux-1conn", "grpc"], concurrency=64)
    # The first process and both workers, all measured.
    assert doc["results"][1]["server_processes"] == 3, doc["results"][1]
    ratios = {r["id"]: r["value"] for r in doc["ratios"]}
    for ratio in ("rps-vs-grpc", "client-cpu-vs-grpc", "server-cpu-vs-grpc"):
        assert ratios[ratio] is not None, ratio


@pytest.mark.parametrize("target", ["nginx-keepalive-muxwsgi", "nginx-keepalive-uwsgi"])
def test_nginx_keepalive_front_reuses_backend_connections(target: str) -> None:
    """The keep-alive rows' nginx (the same front wrk drives) proxies to the backend's
    HTTP/1.1 over a pool of connections: requests that each arrive on a new client connection
    all travel over one backend connection, which stays open, and none is left in TIME_WAIT
    (as one connection per request would leave them)."""
    from benchmarks.procs import tcp_socket_count
    from benchmarks.run import Options, run_directory, running
    from benchmarks.targets import TARGETS

    options = Options(workers=1, threads=2)
    with run_directory() as run_dir, running(TARGETS[target], options, run_dir) as started:
        servers, _, ports = started
        assert [s.name for s in servers] == [target, f"{target}-nginx-keepalive"]
        front, backend = ports
        for _ in range(20):
            connection = http.client.HTTPConnection("127.0.0.1", front, timeout=10)
            try:
                connection.request("GET", "/hello", headers=dict(headers_for("wrk")))
                response = connection.getresponse()
                assert (response.status, response.read()) == (200, b"Hello, World!")
            finally:
                connection.close()
        # One connection, both of its ends on this host.
        assert tcp_socket_count([backend], "established") == 2
        assert tcp_socket_count([backend], "time-wait") == 0


def test_missing_program_is_skipped_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks import targets

    hints = dict(targets.INSTALL)
    assert "pip install" in hints["uwsgi"] and "[bench]" in hints["uwsgi"]
    assert all("wrk" in t.tools for t in targets.TARGETS.values() if t.driver == "wrk")
    # grpcio is a Python distribution, looked up as a module, not as a program on PATH.
    monkeypatch.setitem(targets.PYTHON_TOOLS, "grpcio", "no_such_module_for_the_harness")
    assert targets.missing_tools(targets.TARGETS["grpc"]) == [("grpcio", targets.INSTALL_HINT)]


def test_every_request_carries_about_28_vars() -> None:
    from benchmarks.workload import headers_for
    from muxwsgi.client._models import build_vars

    vars = build_vars(
        "GET",
        "/hello",
        headers_for("mux"),
        body_length=0,
        server_name="127.0.0.1",
        server_port="3031",
    )
    assert 26 <= len(vars) <= 30
    assert not any(k.lower() == "connection" for k, _ in headers_for("httpx-h2"))
