"""The compiled build and the pure-Python reference: which one runs, and how to tell.

CI runs the whole suite twice (.ci/run): once on the compiled build and once with
MUXWSGI_PURE_PYTHON=1. It sets MUXWSGI_EXPECT_COMPILED so that a compiler failure, which
installs pure Python on purpose, cannot pass for a compiled run.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.machinery
import json
import os
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import pytest

import muxwsgi
from muxwsgi import _compiled

ROOT = Path(__file__).resolve().parents[1]
EXTENSION = tuple(importlib.machinery.EXTENSION_SUFFIXES)


def run_python(code: str, **env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if k != "MUXWSGI_PURE_PYTHON"} | env
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=environ
    ).stdout.strip()


def test_the_expected_build_runs() -> None:
    expected = os.environ.get("MUXWSGI_EXPECT_COMPILED")
    if expected is None:
        pytest.skip("MUXWSGI_EXPECT_COMPILED is set by .ci/run, which knows which build it made")
    assert muxwsgi.compiled is (expected == "1"), _compiled.INFO.describe()


def test_compiled_flag_matches_the_modules_loaded() -> None:
    info = _compiled.INFO
    listed = _compiled.read_manifest().get("modules")
    modules = sorted(listed) if isinstance(listed, dict) else []
    for name in modules:
        path = importlib.import_module(name).__file__ or ""
        assert path.endswith(EXTENSION) is info.compiled, (name, path)
    # The core's state machine is always in the list when anything is compiled.
    assert ("muxwsgi._connection" in modules) or not info.compiled


def test_pure_python_switch_loads_only_sources() -> None:
    code = (
        "import muxwsgi, muxwsgi._connection as c, muxwsgi.server.exchange as e;"
        "print(muxwsgi.compiled, c.__file__.endswith('.py'), e.__file__.endswith('.py'))"
    )
    assert run_python(code, MUXWSGI_PURE_PYTHON="1") == "False True True"


def test_version_says_which_build() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "muxwsgi", "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == f"muxwsgi {muxwsgi.__version__}, {muxwsgi.build_description}"
    pure = run_python(
        "import sys; from muxwsgi.__main__ import main; main(['--version'])",
        MUXWSGI_PURE_PYTHON="1",
    )
    assert "pure Python" in pure


def entry(digest: str) -> dict[str, str]:
    return {"sha256": digest, "path": "_frames.py"}


def test_a_changed_source_runs_pure_with_a_warning() -> None:
    source = ROOT / "muxwsgi" / "_frames.py"
    good = hashlib.sha256(source.read_bytes()).hexdigest()
    manifest = {"compiler": "mypyc x", "modules": {"muxwsgi._frames": entry(good)}}
    assert _compiled.select_build(manifest, {}).compiled
    assert not _compiled.select_build(manifest, {"MUXWSGI_PURE_PYTHON": "1"}).compiled
    stale = {"compiler": "mypyc x", "modules": {"muxwsgi._frames": entry("0" * 64)}}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        info = _compiled.select_build(stale, {})
    assert not info.compiled
    assert info.reason == "muxwsgi._frames changed since it was compiled"
    assert "pip install -e ." in str(caught[0].message)
    no_build = _compiled.select_build({"reason": "no C compiler", "modules": {}}, {})
    assert no_build.describe() == "pure Python (no C compiler)"


@pytest.mark.slow
def test_a_wheel_carries_the_build(tmp_path: Path) -> None:
    """``pip wheel`` (as ``python -m build`` does) ships the compiled modules, the record of
    them, and still one top-level package; a pure build ships neither extension nor hash."""
    env = dict(os.environ)
    env.pop("MUXWSGI_PURE_PYTHON", None)
    if not muxwsgi.compiled:
        env["MUXWSGI_PURE_PYTHON"] = "1"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path), str(ROOT)],
        check=True, env=env, cwd=tmp_path, capture_output=True,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("muxwsgi-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        manifest = json.loads(archive.read("muxwsgi/_compiled.json"))
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    extensions = [name for name in names if name.endswith(".so")]
    if muxwsgi.compiled:
        assert sorted(manifest["modules"]) == sorted(_compiled.INFO.modules)
        for module in _compiled.INFO.modules:
            assert any(name.startswith(module.replace(".", "/") + ".") for name in extensions)
        runtime = [name for name in top if name.startswith("muxwsgi__mypyc")]
        assert len(runtime) == 1 and top == {"muxwsgi", *runtime}
    else:
        assert extensions == [] and manifest["modules"] == {}
        assert top == {"muxwsgi"}


@pytest.mark.slow
def test_the_server_logs_which_build_runs(tmp_path: Path) -> None:
    from .servers import start, until

    srv = start("muxwsgi.demo:app", "--workers", "1", log_dir=tmp_path)
    try:
        line = f"muxwsgi {muxwsgi.__version__}, {muxwsgi.build_description}"
        until(lambda: line in srv.log(), what="the build named in the log")
    finally:
        srv.stop()


def _compiled_sources() -> list[Path]:
    """The source files setup.py compiles (its COMPILED tuple and PACKAGE_DIRS, read, not
    run: importing setup.py would run setup())."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    values = {
        target.id: ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name) and target.id in ("COMPILED", "PACKAGE_DIRS")
    }
    sources = []
    for module in values["COMPILED"]:
        package, _, name = module.rpartition(".")
        sources.append(ROOT / values["PACKAGE_DIRS"][package] / f"{name}.py")
    return sources


def test_no_bare_raise_after_an_await_in_compiled_code() -> None:
    # A compiled coroutine has no exception state of its own: a bare `raise` in an except
    # block re-raises the thread's current exception, and after an await that is whatever
    # ran while the coroutine was suspended. Awaited from compiled code (no interpreted
    # frame in between to keep it), that can be None: asyncio's task then fails with
    # "TypeError: invalid exception object" and the caller hangs. `raise exc` is exact.
    found = []
    for path in _compiled_sources():
        for function in ast.walk(ast.parse(path.read_text())):
            if not isinstance(function, ast.AsyncFunctionDef):
                continue
            for handler in ast.walk(function):
                if not isinstance(handler, ast.ExceptHandler):
                    continue
                awaited = False
                for node in (n for statement in handler.body for n in ast.walk(statement)):
                    awaited = awaited or isinstance(node, ast.Await)
                    if isinstance(node, ast.Raise) and node.exc is None and awaited:
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not found, found
