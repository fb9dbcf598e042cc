"""``python -m benchmarks run``: muxwsgi against uWSGI and the usual alternatives.

    python -m benchmarks run                       # every target and scenario (~10 min here)
    python -m benchmarks run --quick               # the cells the ratios need (~2 min)
    python -m benchmarks run --json out.json --markdown out.md --plot out.png
    python -m benchmarks run --targets mux-1conn,uwsgi-classic --scenarios hello -c 64
    python -m benchmarks list                      # targets and scenarios
    python -m benchmarks micro [--save]            # codec micro-benchmarks vs the baseline
    python -m benchmarks hostile [--long]          # what floods take from a healthy client
    python -m benchmarks hostile --starvation      # a healthy request beside stalled uploads
    python -m benchmarks report out.json --plot out.png   # an earlier run again

Nothing is installed: a target whose program is missing is skipped, with the install command.
Progress goes to stderr, the markdown to stdout.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from .hostile import FLOODS, TARGET
from .hostile import main as run_hostile
from .report import environment, markdown, ratios
from .run import QUICK_SCENARIOS, QUICK_TARGETS, Options, run_benchmarks
from .targets import TARGETS
from .workload import SCENARIOS


def _names(kind: str, known: Mapping[str, object]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        names = [n.strip() for n in text.split(",") if n.strip()]
        unknown = [n for n in names if n not in known]
        if unknown:
            raise argparse.ArgumentTypeError(
                f"unknown {kind}: {', '.join(unknown)} (known: {', '.join(known)})"
            )
        return names

    return parse


def _levels(text: str) -> list[int]:
    return [int(n) for n in text.split(",") if n.strip()]


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = ap.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the benchmarks")
    run.add_argument(
        "--quick",
        action="store_true",
        help="a subset: the rows and cells the ratios need, shorter windows",
    )
    run.add_argument("--targets", type=_names("target", TARGETS), help="comma-separated ids")
    run.add_argument("--scenarios", type=_names("scenario", SCENARIOS), help="comma-separated ids")
    run.add_argument(
        "-c",
        "--concurrency",
        type=_levels,
        help="requests in flight, comma-separated (overrides each scenario's)",
    )
    run.add_argument(
        "--duration", type=float, help="seconds measured per cell (default 3; quick 2)"
    )
    run.add_argument(
        "--warmup", type=float, help="seconds of warm-up per cell (default 1; quick 0.5)"
    )
    run.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="each request's deadline, seconds, for the Python clients (0: none; default 30)",
    )
    run.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs per cell, in rounds over every target; each cell's median reported (default 1)",
    )
    run.add_argument("--workers", type=int, default=2, help="server processes (default 2)")
    run.add_argument("--threads", type=int, default=8, help="threads per process (default 8)")
    run.add_argument("--json", type=Path, help="write the results here")
    run.add_argument("--markdown", type=Path, help="write the markdown tables here")
    run.add_argument("--plot", type=Path, help="write a PNG chart here (needs matplotlib)")
    sub.add_parser("list", help="list targets and scenarios")
    report = sub.add_parser("report", help="print (and chart) the results of an earlier run")
    report.add_argument("json", type=Path, help="a file written by run --json")
    report.add_argument("--plot", type=Path, help="write a PNG chart here")
    micro = sub.add_parser(
        "micro", help="the codec micro-benchmarks (pytest-benchmark) against the saved baseline"
    )
    micro.add_argument("--save", action="store_true", help="save this run as the new baseline")
    micro.add_argument(
        "--fail-over",
        default="25%",
        help="fail when a median is this much slower than the baseline (default 25%%)",
    )
    hostile = sub.add_parser(
        "hostile",
        help="floods against one worker: the share of its throughput a healthy client keeps "
        f"(target {TARGET * 100:.0f}%%); exits 1 when a flood misses it",
    )
    hostile.add_argument("--floods", type=_names("flood", FLOODS), help="comma-separated ids")
    hostile.add_argument(
        "--long", action="store_true", help="60 s of rapid reset, 30 s of each other flood"
    )
    hostile.add_argument(
        "--starvation",
        action="store_true",
        help="only the starvation table (a healthy request beside stalled uploads)",
    )
    hostile.add_argument("--json", type=Path, help="write the figures here")
    return ap


def _micro(save: bool, fail_over: str) -> int:
    """Run benchmarks/micro under pytest-benchmark; compare with (or replace) the baseline
    stored in benchmarks/baselines/, so that a codec regression shows as a number."""
    root = Path(__file__).resolve().parent
    storage = f"file://{root / 'baselines'}"
    command = [sys.executable, "-m", "pytest", str(root / "micro"), "--benchmark-only",
               f"--benchmark-storage={storage}", "--benchmark-columns=median,iqr,rounds",
               "-p", "no:cacheprovider", "-q"]  # fmt: skip
    if save:
        command.append("--benchmark-save=baseline")
    elif any((root / "baselines").glob("*/*.json")):
        command += ["--benchmark-compare", f"--benchmark-compare-fail=median:{fail_over}"]
    return subprocess.call(command, cwd=root.parent)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "micro":
        return _micro(args.save, args.fail_over)
    if args.command == "hostile":
        return run_hostile(args.floods or [], args.long, args.json, args.starvation)
    if args.command == "report":
        doc = json.loads(args.json.read_text())
        doc["ratios"] = ratios(doc["results"])
        print(markdown(doc))
        if args.plot:
            from .plot import plot

            plot(doc, args.plot)
        return 0
    if args.command == "list":
        for target in TARGETS.values():
            print(f"target   {target.id:<24} {target.what}")
        for scenario in SCENARIOS.values():
            print(f"scenario {scenario.id:<24} {scenario.what}")
        return 0
    options = Options(
        targets=args.targets or list(QUICK_TARGETS if args.quick else TARGETS),
        scenarios=args.scenarios or list(QUICK_SCENARIOS if args.quick else SCENARIOS),
        duration=args.duration if args.duration is not None else (2.0 if args.quick else 3.0),
        warmup=args.warmup if args.warmup is not None else (0.5 if args.quick else 1.0),
        workers=args.workers,
        threads=args.threads,
        quick=args.quick,
        concurrency=args.concurrency,
        timeout=args.timeout or None,
        repeat=args.repeat,
    )

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    env = environment()
    build = ", ".join(f for f, on in (("PGO", env["pgo"]), ("LTO", env["lto"])) if on)
    progress(
        f"Python {env['python']} ({build or 'no PGO/LTO: expect more CPU per request'}),"
        f" {env['cores']} cores, {env['cpu']}"
    )
    load = env["load_average"][0]
    if env["cores"] and load > 0.5 * env["cores"]:
        progress(
            f"warning: the machine is busy (load average {load:.1f}): figures will be low "
            "and noisy; use --repeat 3 and compare medians"
        )
    doc = run_benchmarks(options, progress)
    doc["environment"] = env
    doc["ratios"] = ratios(doc["results"])
    text = markdown(doc)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
        progress(f"wrote {args.json}")
    if args.markdown:
        args.markdown.write_text(text)
        progress(f"wrote {args.markdown}")
    if args.plot:
        from .plot import plot

        if plot(doc, args.plot):
            progress(f"wrote {args.plot}")
    progress(f"done in {doc['elapsed_s']:.0f} s")
    return 0 if doc["results"] else 1


if __name__ == "__main__":
    sys.exit(main())
