"""What a run prints: the machine and Python build, a markdown table per scenario, and the
ratios the design promises, each computed from the run's own cells."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sysconfig
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from .targets import TARGETS
from .workload import SCENARIOS

__all__ = ("RATIOS", "environment", "markdown", "ratios")

Cell = dict[str, Any]


def _version(program: str, *args: str) -> str | None:
    path = shutil.which(program) or shutil.which(program, path="/usr/sbin")
    if path is None:
        return None
    try:
        done = subprocess.run([path, *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (done.stdout + done.stderr).strip()
    return text.splitlines()[0] if text else None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment() -> dict[str, Any]:
    """The machine and the Python build: an optimized (PGO/LTO) CPython costs much less per
    request (benchmarks/README.md), so figures mean little without it."""
    config_args = sysconfig.get_config_var("CONFIG_ARGS") or ""
    packages: dict[str, str | None] = {}
    for name in (
        "muxwsgi",
        "uWSGI",
        "granian",
        "gunicorn",
        "grpcio",
        "httpx",
        "aiohttp",
        "h2",
        "anyio",
        "uvloop",
        "msgpack",
        "httptools",
    ):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "pgo": "--enable-optimizations" in config_args,
        "lto": "--with-lto" in config_args,
        "config_args": config_args,
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        # Another process busy on the same cores lowers and scatters every figure.
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "packages": packages,
        "nginx": _version("nginx", "-v"),
        "wrk": _version("wrk", "--version"),
    }


# ---------------------------------------------------------------- ratios


@dataclass(frozen=True)
class Ratio:
    """``value(target, scenario) / value(base, scenario)`` compared with ``limit``."""

    id: str
    what: str
    target: str
    base: str
    scenario: str
    concurrency: int | None
    field: str
    limit: float
    at_least: bool  # True: ratio >= limit holds; False: ratio <= limit holds


RATIOS: tuple[Ratio, ...] = (
    Ratio(
        "hello-rps-vs-uwsgi",
        "hello x64 req/s, mux 1 conn / uWSGI classic",
        "mux-1conn",
        "uwsgi-classic",
        "hello",
        64,
        "rps",
        5.0,
        True,
    ),
    Ratio(
        "server-cpu-vs-uwsgi",
        "server CPU/req, muxwsgi / uWSGI (hello x64)",
        "mux-1conn",
        "uwsgi-classic",
        "hello",
        64,
        "server_cpu_us",
        0.35,
        False,
    ),
    Ratio(
        "client-cpu-vs-classic",
        "client CPU/req, mux / classic conn-per-request (hello x64)",
        "mux-1conn",
        "uwsgi-classic",
        "hello",
        64,
        "client_cpu_us",
        0.1,
        False,
    ),
    Ratio(
        "rps-vs-granian-aiohttp",
        "hello x64 req/s, mux 1 conn / aiohttp -> granian",
        "mux-1conn",
        "granian-aiohttp",
        "hello",
        64,
        "rps",
        5.0,
        True,
    ),
    Ratio(
        "rps-vs-uwsgi-wrk",
        "hello x64 req/s, mux 1 conn / wrk -> uWSGI http-socket",
        "mux-1conn",
        "uwsgi-http-wrk",
        "hello",
        64,
        "rps",
        2.0,
        True,
    ),
    Ratio(
        "rps-vs-grpc",
        "hello x64 req/s, mux 1 conn / gRPC (1 channel)",
        "mux-1conn",
        "grpc",
        "hello",
        64,
        "rps",
        4.0,
        True,
    ),
    Ratio(
        "client-cpu-vs-grpc",
        "client CPU per call, mux / gRPC (hello x64)",
        "mux-1conn",
        "grpc",
        "hello",
        64,
        "client_cpu_us",
        0.3,
        False,
    ),
    Ratio(
        "server-cpu-vs-grpc",
        "server CPU per call, muxwsgi / gRPC (hello x64)",
        "mux-1conn",
        "grpc",
        "hello",
        64,
        "server_cpu_us",
        0.3,
        False,
    ),
    Ratio(
        "hol-p99",
        "fast-request p99 with a 1 s request on the connection / without",
        "mux-1conn",
        "mux-1conn",
        "hol",
        None,
        "p99_ms",
        1.1,
        False,
    ),
    Ratio(
        "echo-vs-uwsgi",
        "1 MiB echo req/s, mux 1 conn / uWSGI classic",
        "mux-1conn",
        "uwsgi-classic",
        "echo-1m",
        None,
        "rps",
        0.8,
        True,
    ),
    Ratio(
        "nginx-muxwsgi-vs-uwsgi",
        "hello x64 req/s, nginx -> muxwsgi / nginx -> uWSGI (uwsgi_pass)",
        "nginx-muxwsgi",
        "nginx-uwsgi",
        "hello",
        64,
        "rps",
        0.9,
        True,
    ),
    Ratio(
        "nginx-keepalive-vs-granian",
        "hello x64 req/s, nginx keepalive -> muxwsgi / nginx keepalive -> granian",
        "nginx-keepalive-muxwsgi",
        "nginx-keepalive-granian",
        "hello",
        64,
        "rps",
        1.0,
        True,
    ),
)


def _find(cells: list[Cell], target: str, scenario: str, concurrency: int | None) -> Cell | None:
    for cell in cells:
        if (
            cell["target"] == target
            and cell["scenario"] == scenario
            and (concurrency is None or cell["concurrency"] == concurrency)
        ):
            return cell
    return None


def ratios(cells: list[Cell]) -> list[dict[str, Any]]:
    """Each promised ratio as measured; ``holds`` is None when a cell is missing."""
    out = []
    for r in RATIOS:
        mine = _find(cells, r.target, r.scenario, r.concurrency)
        base = _find(cells, r.base, r.scenario, r.concurrency)
        value = None
        if mine is not None and base is not None:
            # Head-of-line compares a cell with its own baseline window.
            num = mine.get(r.field)
            den = base.get("base_" + r.field) if r.target == r.base else base.get(r.field)
            if num is not None and den:
                value = round(num / den, 3)
        holds = None if value is None else (value >= r.limit if r.at_least else value <= r.limit)
        out.append(
            {
                "id": r.id,
                "what": r.what,
                "value": value,
                "limit": f"{'>=' if r.at_least else '<='} {r.limit}",
                "holds": holds,
            }
        )
    return out


# ---------------------------------------------------------------- markdown


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def markdown(doc: dict[str, Any]) -> str:
    """The run as markdown: a table per scenario, the ratios, the machine."""
    cells: list[Cell] = doc["results"]
    out: list[str] = []
    for scenario in SCENARIOS.values():
        mine = [c for c in cells if c["scenario"] == scenario.id]
        if not mine:
            continue
        out.append(f"### {scenario.id}: {scenario.what}\n")
        head = [
            "target",
            "in flight",
            "req/s",
            "p50 ms",
            "p99 ms",
            "p99.9 ms",
            "errors",
            "client µs/req",
            "server µs/req",
            "RSS MB",
        ]
        if scenario.slow_path:
            head += ["p99 ms alone", "req/s alone"]
        if scenario.id == "churn":
            head += ["conns opened", "conns per 1k req", "TIME_WAIT"]
        if scenario.body_size:
            head += ["MiB/s"]
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "---|" * len(head))
        order = list(TARGETS)
        for c in sorted(mine, key=lambda c: (order.index(c["target"]), c["concurrency"])):
            row = [
                c["target"],
                _fmt(c["concurrency"]),
                _fmt(c["rps"], 0),
                _fmt(c["p50_ms"], 2),
                _fmt(c["p99_ms"], 2),
                _fmt(c["p999_ms"], 2),
                _fmt(c["errors"]),
                _fmt(c["client_cpu_us"]),
                _fmt(c["server_cpu_us"]),
                _fmt(c["rss_mb"]),
            ]
            if scenario.slow_path:
                row += [_fmt(c.get("base_p99_ms"), 2), _fmt(c.get("base_rps"), 0)]
            if scenario.id == "churn":
                opened = c.get("connections_opened")
                per_k = None
                if opened is not None and c["requests"]:
                    per_k = opened / c["requests"] * 1000
                row += [_fmt(opened), _fmt(per_k, 1), _fmt(c.get("time_wait"))]
            if scenario.body_size:
                row += [_fmt(c.get("mib_s"), 1)]
            out.append("| " + " | ".join(row) + " |")
        out.append("")
        out.extend(_per_backend(mine))
    if doc.get("ratios"):
        out.append("### ratios\n")
        out.append("| ratio | measured | promised | holds |")
        out.append("|---|---|---|---|")
        for r in doc["ratios"]:
            holds = {True: "yes", False: "**no**", None: "not measured"}[r["holds"]]
            # Three figures: 0.798 must not print as a passing-looking 0.80.
            value = "-" if r["value"] is None else f"{r['value']:.3g}x"
            out.append(f"| {r['what']} | {value} | {r['limit']}x | {holds} |")
        out.append("")
    for skip in doc.get("skipped", []):
        where = skip["target"] + (f" / {skip['scenario']}" if "scenario" in skip else "")
        out.append(f"- skipped {where}: {_one_line(skip['reason'])}")
    env = doc.get("environment")
    if env:
        build = ", ".join(f for f, on in (("PGO", env["pgo"]), ("LTO", env["lto"])) if on)
        out.append(
            f"\nMachine: {env['cpu']}, {env['cores']} cores, Linux {env['kernel']}; "
            f"{env['implementation']} {env['python']} ({build or 'no PGO, no LTO'}); "
            f"load average {env['load_average'][0]:g} at start; "
            f"{_options_line(doc.get('options', {}))}."
        )
    return "\n".join(out).rstrip() + "\n"


def _per_backend(cells: list[Cell]) -> list[str]:
    """A fleet's cells, one row per backend: its share of the requests and its latency."""
    out: list[str] = []
    for c in cells:
        if not c.get("backends"):
            continue
        out.append(f"{c['target']} x{c['concurrency']}, per backend:\n")
        out.append("| backend | requests | share | p50 ms | p99 ms |")
        out.append("|---|---|---|---|---|")
        for address, b in c["backends"].items():
            out.append(f"| {address} | {b['requests']} | {b['share']:.1%} | "
                       f"{_fmt(b['p50_ms'], 2)} | {_fmt(b['p99_ms'], 2)} |")  # fmt: skip
        out.append("")
    return out


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()[:200]


def _options_line(options: dict[str, Any]) -> str:
    if not options:
        return ""
    return (
        f"{options['workers']} workers x {options['threads']} threads per server, "
        f"{options['duration']:g} s per cell after {options['warmup']:g} s of warm-up, "
        f"median of {options.get('repeat', 1)} run(s)"
    )
