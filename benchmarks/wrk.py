"""wrk, the C HTTP/1.1 load generator, with the same headers and bodies as the Python drivers.

A Lua script sets the method, the browser headers and the body, and prints the figures as JSON
in ``done()`` (wrk's own text report has no p99.9). One thread: the machine has two cores, and
wrk's one thread keeps a few hundred connections busy.
"""

from __future__ import annotations

import json
import math
import resource
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .workload import headers_for

__all__ = ("run_wrk", "wrk_script")

_MARK = "WRKJSON "

_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%s{"requests": %d, "duration_us": %d, "bytes": %d, "connect": %d, "read": %d, ' ..
    '"write": %d, "status": %d, "timeout": %d, "p50_us": %.1f, "p99_us": %.1f, ' ..
    '"p999_us": %.1f}\\n',
    "MARK", summary.requests, summary.duration, summary.bytes, e.connect, e.read,
    e.write, e.status, e.timeout, latency:percentile(50), latency:percentile(99),
    latency:percentile(99.9)))
end
""".replace("MARK", _MARK)


def wrk_script(method: str, body_size: int) -> str:
    """The Lua script: request shape, browser headers, and the JSON report."""
    lines = [f"wrk.method = {json.dumps(method)}"]
    if body_size:
        lines.append(f'wrk.body = string.rep("x", {body_size})')
    for name, value in headers_for("wrk"):
        lines.append(f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}")
    return "\n".join(lines) + "\n" + _DONE


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(
    wrk: str,
    url: str,
    *,
    method: str,
    body_size: int,
    concurrency: int,
    duration: float,
    warmup: float,
    run_dir: Path,
    on_start: Callable[[], None],
    on_stop: Callable[[], None],
    server_closes: bool = False,
) -> dict[str, Any]:
    """Warm up, then measure one run of wrk; return the loadgen's figures for it.

    ``server_closes``: the server ends every response by closing (wrk's read errors are then
    the protocol, not failures). Client CPU is wrk's own rusage, read as the growth of this
    process's RUSAGE_CHILDREN across the measured run (wrk is the only child reaped then).
    """
    script = run_dir / f"wrk-{method.lower()}-{body_size}.lua"
    script.write_text(wrk_script(method, body_size))
    base = [
        wrk,
        "--threads",
        "1",
        "--connections",
        str(concurrency),
        "--timeout",
        "30s",
        "--script",
        str(script),
    ]
    if warmup > 0:
        subprocess.run(
            [*base, "--duration", f"{max(1, math.ceil(warmup))}s", url],
            capture_output=True,
            timeout=warmup + 60,
            check=False,
        )
    seconds = max(1, round(duration))
    cpu = _children_cpu()
    on_start()
    done = subprocess.run(
        [*base, "--duration", f"{seconds}s", url],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=False,
    )
    on_stop()
    cpu = _children_cpu() - cpu
    report = next((ln for ln in done.stdout.splitlines() if ln.startswith(_MARK)), None)
    if report is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    raw = json.loads(report[len(_MARK) :])
    elapsed = raw["duration_us"] / 1e6
    # A server that closes after each response (uWSGI's --http-socket, no Content-Length
    # keep-alive) shows as one read error per request in wrk: that close is the protocol.
    read_errors = 0 if server_closes else raw["read"]
    errors = raw["connect"] + read_errors + raw["write"] + raw["status"] + raw["timeout"]
    ok = max(0, raw["requests"] - raw["status"])
    return {
        "requests": ok,
        "errors": errors,
        "seconds": round(elapsed, 3),
        "rps": round(ok / elapsed, 1),
        "mib_s": round(ok * body_size / elapsed / (1 << 20), 2),
        "p50_ms": round(raw["p50_us"] / 1e3, 3),
        "p99_ms": round(raw["p99_us"] / 1e3, 3),
        "p999_ms": round(raw["p999_us"] / 1e3, 3),
        "client_cpu_us": round(cpu / ok * 1e6, 1) if ok else None,
        "error_samples": [] if not errors else [f"wrk errors: {raw}"],
    }
