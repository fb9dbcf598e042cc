"""``python -m benchmarks hostile``: how its figure is computed and what its table says, and the
command run for real on one flood. The figures themselves are never asserted (they move with
the machine's load); the flood's checks (tests/hostile/test_floods.py) are what load cannot
move."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.hostile import TARGET, Figures, markdown

ROOT = Path(__file__).resolve().parents[1]


def figures(control: list[float], attack: list[float], closed: int = 9) -> Figures:
    flooder = {"closed": closed, "goaways": {"ENHANCE_YOUR_CALM": closed}, "seconds": 4.2}
    return Figures("ping", control, attack, [], 0.5, 0.5, 1000, 1512, flooder)


def test_each_attack_turn_is_paired_with_the_controls_either_side() -> None:
    f = figures([100.0, 300.0, 100.0], [100.0, 200.0])
    assert f.kept == [0.5, 1.0]
    assert f.kept_median == 0.75


def test_the_table_shows_the_target_per_row() -> None:
    met = figures([100.0, 100.0], [TARGET * 100])
    missed = figures([100.0, 100.0], [TARGET * 100 - 1])
    table = markdown([met, missed]).splitlines()
    assert f"target ≥ {TARGET:.0%}" in table[0]
    assert table[2].split(" | ")[:6] == ["| PING", "4 s", "100", "80", "80% [80%-80%]", "met"]
    assert table[3].split(" | ")[4:6] == ["79% [79%-79%]", "**missed**"]
    assert table[2].split(" | ")[7] == "0.5 MB"


def test_a_close_without_enhance_your_calm_or_a_failed_request_is_a_problem() -> None:
    assert figures([1.0, 1.0], [1.0]).problems() == []
    assert figures([1.0, 1.0], [1.0], closed=0).problems() == []  # cut by the flooder
    quiet = figures([1.0, 1.0], [1.0])
    quiet.flooder["goaways"] = {"PROTOCOL_ERROR": 9}  # closed, but not for a flood
    assert quiet.problems()
    failed = figures([1.0, 1.0], [1.0])
    failed.failures.append("stream 3: 500 None")
    assert failed.problems() == ["healthy client: stream 3: 500 None"]
    assert "**missed**" in markdown([failed])


@pytest.mark.slow
def test_the_command_prints_the_table(tmp_path: Path) -> None:
    out = tmp_path / "hostile.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "hostile", "--floods", "empty", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode in (0, 1), done.stderr  # 1: the target missed, on a busy machine
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("| flood |") and lines[2].startswith("| empty DATA |")
    (result,) = json.loads(out.read_text())
    assert result["flood"] == "empty" and len(result["kept"]) == 4
    assert result["failures"] == []  # every healthy request answered, whatever the load
