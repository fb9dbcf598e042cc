"""The chart: req/s and p99 latency per target, hello world at 64 in flight (or the busiest
hello cell each target has)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .targets import TARGETS

__all__ = ("plot",)


def _hello_cells(cells: list[dict[str, Any]], concurrency: int) -> list[dict[str, Any]]:
    chosen: dict[str, dict[str, Any]] = {}
    for cell in cells:
        if cell["scenario"] != "hello":
            continue
        best = chosen.get(cell["target"])
        # Prefer the asked level; otherwise the closest one the run measured.
        if best is None or abs(cell["concurrency"] - concurrency) < abs(
            best["concurrency"] - concurrency
        ):
            chosen[cell["target"]] = cell
    order = list(TARGETS)
    return sorted(chosen.values(), key=lambda c: order.index(c["target"]))


def plot(doc: dict[str, Any], path: Path, concurrency: int = 64) -> bool:
    """Write a PNG with two bar charts; False (and no file) when there is nothing to draw."""
    import matplotlib

    matplotlib.use("Agg")  # no display: write files only
    import matplotlib.pyplot as plt

    cells = _hello_cells(doc["results"], concurrency)
    if not cells:
        return False
    names = [f"{c['target']}\nx{c['concurrency']}" for c in cells]
    colors = ["tab:blue" if "mux" in c["target"] else "tab:gray" for c in cells]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(8, len(cells) * 1.1), 8), sharex=True)
    top.bar(names, [c["rps"] for c in cells], color=colors)
    top.set_ylabel("req/s (higher is better)")
    top.set_title("hello world, same app, same workers x threads")
    for i, cell in enumerate(cells):
        top.annotate(f"{cell['rps']:,.0f}", (i, cell["rps"]), ha="center", va="bottom", fontsize=8)
    bottom.bar(names, [c["p99_ms"] for c in cells], color=colors)
    # Log scale: one slow client (seconds) must not flatten the others (milliseconds).
    bottom.set_yscale("log")
    bottom.set_ylabel("p99 latency, ms, log scale (lower is better)")
    for i, cell in enumerate(cells):
        p99 = cell["p99_ms"]
        label = f"{p99:,.0f}" if p99 >= 100 else f"{p99:.3g}"
        bottom.annotate(label, (i, p99), ha="center", va="bottom", fontsize=8)
    bottom.tick_params(axis="x", labelrotation=45, labelsize=8)
    env = doc.get("environment") or {}
    if env:
        fig.text(
            0.01,
            0.005,
            f"{env.get('cpu', '')}, {env.get('cores')} cores, Python {env.get('python')}",
            fontsize=7,
        )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
