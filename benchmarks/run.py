"""The harness: for each target start its servers, measure every scenario cell, stop them.

One *cell* is (target, scenario, requests in flight). The load runs in its own process (the
Python load generator, or wrk), so that its CPU is its own; the servers' CPU is read from
their own rusage over exactly the load's measurement window.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .procs import (
    GroupMeter,
    ServerProcess,
    free_port,
    start_server,
    tcp_active_opens,
    time_wait_count,
)
from .targets import SERVERS, TARGETS, Layout, ServerSpec, Target, _tool, missing_tools, tls_options
from .workload import SCENARIOS, Scenario
from .wrk import run_wrk

__all__ = ("Options", "run_benchmarks", "run_directory", "running")

ROOT = Path(__file__).resolve().parents[1]

#: Run by --quick: the rows and cells the closing ratios need, nothing more.
QUICK_TARGETS = (
    "uwsgi-classic",
    "mux-1conn",
    "grpc",
    "mux-pool",
    "muxwsgi-classic",
    "granian-aiohttp",
    "uwsgi-http-wrk",
    "nginx-uwsgi",
    "nginx-muxwsgi",
    "nginx-keepalive-muxwsgi",
    "nginx-keepalive-granian",
)
QUICK_SCENARIOS = ("hello", "hol", "echo-1m")
#: Head-of-line needs a connection to share (a mux connection, gRPC's one channel); over
#: HTTP/1.1 keep-alive or wrk it means nothing.
HOL_DRIVERS = ("mux", "uwsgi", "grpc")


@dataclass
class Options:
    targets: list[str] = field(default_factory=lambda: list(TARGETS))
    scenarios: list[str] = field(default_factory=lambda: list(SCENARIOS))
    duration: float = 3.0
    warmup: float = 1.0
    workers: int = 2
    threads: int = 8
    quick: bool = False
    concurrency: list[int] | None = None  # overrides every scenario's list
    timeout: float | None = 30.0  # each request's deadline (Python drivers; None: none)
    repeat: int = 1  # runs per cell; the median one is reported


Progress = Callable[[str], None]


def plan(options: Options) -> list[tuple[Target, Scenario, int]]:
    """Every cell of one round, in order (grouped by target, so each server starts once per
    round)."""
    cells: list[tuple[Target, Scenario, int]] = []
    # Churn first: the TIME_WAIT it reports must not include the sockets other cells of the
    # same server left behind (they linger for a minute).
    scenarios = sorted(options.scenarios, key=lambda s: s != "churn")
    for target_id in options.targets:
        target = TARGETS[target_id]
        for scenario_id in scenarios:
            scenario = SCENARIOS[scenario_id]
            if scenario.slow_path and target.driver not in HOL_DRIVERS:
                continue
            if scenario.backends and target.id != "mux-1conn":
                continue  # a fleet is measured once, with one mux client balancing it
            levels = options.concurrency or (
                scenario.quick_concurrency if options.quick else scenario.concurrency
            )
            cells.extend((target, scenario, level) for level in levels)
    return cells


@contextmanager
def run_directory() -> Iterator[Path]:
    """A temporary directory for the servers' configuration files, logs and sockets."""
    with tempfile.TemporaryDirectory(prefix="muxwsgi-bench-") as tmp:
        run_dir = Path(tmp)
        # nginx workers run as another user when started as root: let them read the config.
        run_dir.chmod(0o755)
        yield run_dir


def _start(name: str, spec: ServerSpec, lay: Layout) -> ServerProcess:
    return start_server(
        name,
        spec.argv(lay),
        log_dir=lay.run_dir,
        probe=spec.probe,
        port=lay.port,
        answer=spec.answer,
    )


@contextmanager
def running(
    target: Target, options: Options, run_dir: Path
) -> Iterator[tuple[list[ServerProcess], str, list[int]]]:
    """Start the target's server (and nginx in front of it); yield the servers, the URL the
    driver uses and the ports to watch; stop everything by process group on the way out."""
    port = free_port()
    started: list[ServerProcess] = []
    try:
        lay = Layout(port, options.workers, options.threads, run_dir)
        started.append(_start(target.id, SERVERS[target.server], lay))
        ports = [port]
        if target.front:
            front = SERVERS[target.front]
            front_lay = Layout(free_port(), options.workers, options.threads, run_dir, port)
            started.append(_start(f"{target.id}-{front.name}", front, front_lay))
            ports.insert(0, front_lay.port)
        yield started, f"{target.scheme}://127.0.0.1:{ports[0]}", ports
    finally:
        for server in reversed(started):
            server.stop()


def _loadgen(
    spec: dict[str, Any], on_start: Callable[[], None], on_stop: Callable[[], None], timeout: float
) -> dict[str, Any]:
    """Run the Python load generator; call the hooks when it prints its window's edges."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.loadgen", json.dumps(spec)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    result: dict[str, Any] | None = None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.strip()
            if line == "start":
                on_start()
            elif line == "stop":
                on_stop()
            elif line.startswith("{"):
                result = json.loads(line)
            if time.monotonic() > deadline:
                break
        proc.wait(max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    if result is None:
        stderr = proc.stderr.read() if proc.stderr else ""
        raise RuntimeError(f"the load generator failed ({proc.returncode}):\n{stderr[-2000:]}")
    return result


def measure(
    target: Target,
    scenario: Scenario,
    concurrency: int,
    servers: list[ServerProcess],
    url: str,
    ports: list[int],
    options: Options,
    run_dir: Path,
    backends: list[str] | None = None,
) -> dict[str, Any]:
    """One cell: the load's figures plus the servers' CPU, peak RSS and connection churn.
    A fleet scenario measures its own servers instead of the target's (benchmarks/fleet.py)."""
    if scenario.backends and backends is None:
        from .fleet import running_fleet

        with running_fleet(scenario.backends, options, run_dir) as (fleet, url, backends):
            return measure(
                target, scenario, concurrency, fleet, url, [], options, run_dir, backends
            )
    meter = GroupMeter(servers)
    edges: dict[str, int] = {}

    # The CPU samples come first at both edges: they must match the load's window, and
    # counting sockets takes a while when tens of thousands wait in TIME_WAIT.
    def on_start() -> None:
        meter.start()
        edges["opens"] = tcp_active_opens()

    def on_stop() -> None:
        meter.stop()
        edges["opens"] = tcp_active_opens() - edges["opens"]
        # What is left behind, warm-up included: a difference would subtract the sockets
        # whose minute in TIME_WAIT ended during the window.
        edges["time_wait"] = time_wait_count(ports)

    if target.driver == "wrk":
        load = run_wrk(
            _tool("wrk"),
            url + scenario.path,
            method=scenario.method,
            body_size=scenario.body_size,
            concurrency=concurrency,
            duration=options.duration,
            warmup=options.warmup,
            run_dir=run_dir,
            on_start=on_start,
            on_stop=on_stop,
            server_closes=target.server_closes,
        )
    else:
        spec = {
            "driver": target.driver,
            "url": url,
            "method": scenario.method,
            "path": scenario.path,
            "body_size": scenario.body_size,
            "concurrency": concurrency,
            "duration": options.duration,
            "warmup": options.warmup,
            "connections": target.connections,
            "slow_path": scenario.slow_path,
            "timeout": options.timeout,
            "backends": backends,
            **tls_options(target.id, run_dir),
        }
        windows = 2 if scenario.slow_path else 1
        load = _loadgen(spec, on_start, on_stop, 60 + options.warmup + windows * options.duration)
    # Server CPU covers every request of the window(s): both windows of the head-of-line cell.
    served = load["requests"] + load.get("base_requests", 0)
    return {
        "target": target.id,
        "scenario": scenario.id,
        "concurrency": concurrency,
        "rps": load["rps"],
        "p50_ms": load["p50_ms"],
        "p99_ms": load["p99_ms"],
        "p999_ms": load["p999_ms"],
        "errors": load["errors"],
        "client_cpu_us": load["client_cpu_us"],
        "server_cpu_us": round(meter.cpu / served * 1e6, 1) if served else None,
        "rss_mb": round(meter.peak_rss / (1 << 20), 1),
        "server_processes": meter.processes,
        "requests": load["requests"],
        "seconds": load["seconds"],
        "mib_s": load["mib_s"],
        "connections_opened": edges.get("opens"),
        "time_wait": edges.get("time_wait"),
        **{k: load[k] for k in ("base_p50_ms", "base_p99_ms", "base_rps") if k in load},
        "driver": target.driver,
        "error_samples": load.get("error_samples", [])[:3],
        **({"backends": load["backends"]} if "backends" in load else {}),
    }


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median req/s, whole (its latencies and CPU belong together), with every
    run's req/s beside it (``runs_rps``, in the order they ran)."""
    ranked = sorted(runs, key=lambda c: c["rps"])
    cell = dict(ranked[(len(ranked) - 1) // 2])
    cell["runs_rps"] = [c["rps"] for c in runs]
    return cell


def run_benchmarks(options: Options, progress: Progress) -> dict[str, Any]:
    """Run every cell of ``options``; return the JSON document (results, skipped, options).

    With ``options.repeat`` > 1 the whole plan runs that many times over, in rounds (every
    target once, then every target again), and each cell reports its median run. Rounds rather
    than a cell's runs back to back: a shared machine has slow spells that last a minute or
    more, and a cell measured three times inside one of them is three times as slow, while the
    cell it is compared with ran at full speed. Spread over the whole run, each cell's runs see
    the same spells as the others'.
    """
    cells = plan(options)
    rounds = max(1, options.repeat)
    runs: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    skipped: list[dict[str, str]] = []
    # What failed in an earlier round is not measured again (its reason is in skipped).
    failed_targets: set[str] = set()
    failed: set[tuple[str, str, int]] = set()
    done = 0
    started = time.monotonic()
    with run_directory() as run_dir:
        for round_ in range(1, rounds + 1):
            for target_id in options.targets:
                target = TARGETS[target_id]
                mine = [c for c in cells if c[0] is target and _key(c) not in failed]
                if not mine or target.id in failed_targets:
                    continue
                missing = missing_tools(target)
                if missing:
                    why = ", ".join(f"{name} not found ({hint})" for name, hint in missing)
                    skipped.append({"target": target.id, "reason": why})
                    progress(f"skip {target.id}: {why}")
                    failed_targets.add(target.id)
                    done += len(mine) * (rounds - round_ + 1)
                    continue
                try:
                    with running(target, options, run_dir) as (servers, url, ports):
                        for cell_plan in mine:
                            _, scenario, level = cell_plan
                            done += 1
                            label = (
                                f"[{done}/{len(cells) * rounds}] {target.id:<24} "
                                f"{scenario.id:<8} x{level:<4}"
                            )
                            progress(f"{label} ...")
                            try:
                                cell = measure(
                                    target, scenario, level, servers, url, ports, options, run_dir
                                )
                            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                                skipped.append(
                                    {
                                        "target": target.id,
                                        "scenario": scenario.id,
                                        "reason": str(exc)[:500],
                                    }
                                )
                                failed.add(_key(cell_plan))
                                runs.pop(_key(cell_plan), None)
                                progress(f"{label} failed: {str(exc)[:300]}")
                                continue
                            runs.setdefault(_key(cell_plan), []).append(cell)
                            progress(
                                f"{label} {cell['rps']:>9.1f} req/s  p99 {cell['p99_ms']:.2f} ms  "
                                f"errors {cell['errors']}  client {cell['client_cpu_us']} µs  "
                                f"server {cell['server_cpu_us']} µs"
                                + (f"  (round {round_}/{rounds})" if rounds > 1 else "")
                            )
                except RuntimeError as exc:
                    skipped.append({"target": target.id, "reason": str(exc)[:500]})
                    failed_targets.add(target.id)
                    for cell_plan in mine:
                        runs.pop(_key(cell_plan), None)
                    progress(f"skip {target.id}: {str(exc)[:300]}")
    results = [median_run(runs[_key(c)]) for c in cells if _key(c) in runs]
    if rounds > 1:
        for cell in results:
            progress(
                f"{cell['target']:<24} {cell['scenario']:<8} x{cell['concurrency']:<4} "
                f"median {cell['rps']:>9.1f} req/s  runs {cell['runs_rps']}"
            )
    return {
        "results": results,
        "skipped": skipped,
        "options": asdict(options),
        "elapsed_s": round(time.monotonic() - started, 1),
    }


def _key(cell: tuple[Target, Scenario, int]) -> tuple[str, str, int]:
    return cell[0].id, cell[1].id, cell[2]
