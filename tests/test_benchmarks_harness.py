"""The benchmark harness, run for real in a tiny configuration: two targets (muxwsgi over one
mux connection, and its classic uwsgi path), one scenario, one second per cell.

Only the shape of the output and the success of the requests are checked; the figures
themselves are reported by the harness, never asserted here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_run_two_targets_one_scenario(tmp_path: Path) -> None:
    out, md, png = tmp_path / "out.json", tmp_path / "out.md", tmp_path / "out.png"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "run",
            "--targets",
            "mux-1conn,muxwsgi-classic",
            "--scenarios",
            "hello",
            "-c",
            "8",
            "--duration",
            "1",
            "--warmup",
            "0.3",
            "--json",
            str(out),
            "--markdown",
            str(md),
            "--plot",
            str(png),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads(out.read_text())
    cells = doc["results"]
    assert [(c["target"], c["scenario"], c["concurrency"]) for c in cells] == [
        ("mux-1conn", "hello", 8),
        ("muxwsgi-classic", "hello", 8),
    ]
    for cell in cells:
        for key, kind in REQUIRED.items():
            assert isinstance(cell[key], kind), (key, cell[key])
        assert cell["errors"] == 0, cell["error_samples"]
        assert cell["requests"] > 0
        assert cell["rps"] > 0 and cell["server_cpu_us"] > 0 and cell["rss_mb"] > 0
    assert not doc["skipped"]
    assert {"python", "pgo", "lto", "config_args", "cores"} <= doc["environment"].keys()
    assert {r["id"] for r in doc["ratios"]} >= {"hello-rps-vs-uwsgi", "hol-p99"}
    text = md.read_text()
    assert "| mux-1conn | 8 |" in text and "| muxwsgi-classic | 8 |" in text
    assert "[2/2] muxwsgi-classic" in done.stderr  # progress, as it goes
    assert png.read_bytes().startswith(b"\x89PNG")


def test_missing_program_is_skipped_not_installed(tmp_path: Path) -> None:
    from benchmarks import targets

    hints = dict(targets.INSTALL)
    assert "pip install" in hints["uwsgi"] and "[bench]" in hints["uwsgi"]
    assert all("wrk" in t.tools for t in targets.TARGETS.values() if t.driver == "wrk")


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
