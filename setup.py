"""Build hook: compile the per-request modules with mypyc when possible.

Everything else about the package is declared in pyproject.toml. The modules listed in COMPILED
are the same typed source as the pure-Python build, which stays the reference and the fallback:

- ``MUXWSGI_PURE_PYTHON=1`` at install time skips the compiler;
- without mypyc or a working C compiler the build falls back to pure Python instead of failing.

Either way ``muxwsgi/_compiled.json`` records what was built (and why not), so that
``muxwsgi --version`` and ``muxwsgi.compiled`` can say which build is running.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import json
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
#: Where each installed package's source lives (pyproject.toml's package-dir, repeated here
#: because mypyc names a module after its place in the tree).
PACKAGE_DIRS = {
    "muxwsgi": "muxwsgi",
    "muxwsgi.client": "client",
    "muxwsgi.client._async": "client/_async",
    "muxwsgi.client._sync": "client/_sync",
    "muxwsgi.server": "server",
    "muxwsgi.server.protocols": "server/protocols",
}
#: The modules compiled, as installed module names: the core and the per-request paths.
COMPILED = (
    "muxwsgi._connection",
    "muxwsgi._detect",
    "muxwsgi._flood",
    "muxwsgi._frames",
    "muxwsgi._settings",
    "muxwsgi._state",
    "muxwsgi._vars",
    "muxwsgi._windows",
    "muxwsgi.classic",
    "muxwsgi.server.bodies",
    "muxwsgi.server.dispatch",
    "muxwsgi.server.exchange",
    "muxwsgi.server.fdio",
    "muxwsgi.server.wsgi",
    "muxwsgi.server.protocols.base",
    "muxwsgi.server.protocols.detect",
    "muxwsgi.server.protocols.flood",
    "muxwsgi.server.protocols.mux",
    "muxwsgi.server.protocols.scheduler",
    "muxwsgi.server.protocols.uwsgi",
    "muxwsgi.server.protocols.http",
    "muxwsgi.server.tls",
    "muxwsgi.client._balancing",
    "muxwsgi.client._classic_parser",
    "muxwsgi.client._metrics",
    "muxwsgi.client._models",
    "muxwsgi.client._primitives",
    "muxwsgi.client._retries",
    "muxwsgi.client._async.classic",
    "muxwsgi.client._async.connection",
    "muxwsgi.client._async.pool",
    "muxwsgi.client._async.response",
    "muxwsgi.client._async.sending",
    "muxwsgi.client._sync.classic",
    "muxwsgi.client._sync.connection",
    "muxwsgi.client._sync.pool",
    "muxwsgi.client._sync.response",
    "muxwsgi.client._sync.sending",
)
MANIFEST = "_compiled.json"


def source_of(module: str) -> Path:
    """The source file of an installed module name (``muxwsgi.server.wsgi`` -> server/wsgi.py)."""
    package, _, name = module.rpartition(".")
    return ROOT / PACKAGE_DIRS[package] / f"{name}.py"


def compiled_sources(directory: Path) -> dict[str, dict[str, str]]:
    """Per compiled module: the hash of its source, and where that source is installed,
    relative to the installed ``muxwsgi`` package (so that the check at import needs no
    import: an editable install maps the client and the server to folders of their own)."""
    package = directory / "muxwsgi"
    entries = {}
    for module in COMPILED:
        source = source_of(module)
        if directory == ROOT:
            installed = source
        else:  # in the wheel, muxwsgi.server.wsgi is muxwsgi/server/wsgi.py
            installed = directory.joinpath(*module.split(".")).with_suffix(".py")
        entries[module] = {
            "sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
            "path": os.path.relpath(installed, package),
        }
    return entries


def stage_sources(stage: Path) -> list[str]:
    """Copy the sources into the installed layout (client/ -> muxwsgi/client/), which is what
    mypyc names the modules after; return the paths of the modules to compile."""
    if stage.exists():
        shutil.rmtree(stage)
    for package, directory in PACKAGE_DIRS.items():
        target = stage.joinpath(*package.split("."))
        target.mkdir(parents=True, exist_ok=True)
        for path in (ROOT / directory).glob("*.py"):
            shutil.copy2(path, target / path.name)
        for sub in (ROOT / directory).iterdir():
            if sub.is_dir() and (sub / "__init__.py").exists() and sub.name != "__pycache__":
                shutil.copytree(sub, target / sub.name, dirs_exist_ok=True)
    return [str(stage.joinpath(*m.split(".")).with_suffix(".py")) for m in COMPILED]


def why_pure() -> str | None:
    """Why this build installs pure Python, or None to compile."""
    if os.environ.get("MUXWSGI_PURE_PYTHON") == "1":
        return "MUXWSGI_PURE_PYTHON=1 at install time"
    if sys.implementation.name != "cpython":
        return f"mypyc compiles for CPython, not {sys.implementation.name}"
    try:
        import mypyc.build  # noqa: F401
    except ImportError:
        return "mypyc is not installed in the build environment"
    return None


def mypyc_extensions() -> tuple[list[Any], str | None]:
    reason = why_pure()
    if reason is not None:
        return [], reason
    from mypyc.build import mypycify

    stage = ROOT / "build" / "mypyc-src"
    paths = stage_sources(stage)
    cwd = os.getcwd()
    os.chdir(stage)  # mypy names modules from the working directory's layout
    try:
        config = str(ROOT / "pyproject.toml")
        extensions = mypycify(
            ["--config-file", config, *(os.path.relpath(p, stage) for p in paths)],
            group_name="muxwsgi",
            opt_level="3",
            target_dir=str(ROOT / "build" / "mypyc-c"),
        )
    except (Exception, SystemExit) as exc:  # mypyc exits on a type error: install pure
        return [], f"mypyc could not compile the sources ({exc})"
    finally:
        os.chdir(cwd)
    for extension in extensions:
        # The generated C sits in build/; setuptools wants paths relative to this file.
        extension.sources = [os.path.relpath(s, ROOT) if os.path.isabs(s) else s
                             for s in extension.sources]  # fmt: skip
    return extensions, None


def write_manifest(directory: Path, reason: str | None) -> None:
    """Record what this build compiled (with the hashes of the sources it compiled), or why it
    compiled nothing, in ``muxwsgi/_compiled.json`` (see muxwsgi/_compiled.py)."""
    manifest: dict[str, Any] = {"reason": reason, "modules": {}}
    if reason is None:
        import mypy.version

        manifest["compiler"] = f"mypyc {mypy.version.__version__}"
        manifest["modules"] = compiled_sources(directory)
    target = directory / "muxwsgi" / MANIFEST
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def output_dir(command: build_py | build_ext) -> Path:
    """Where a command's package files go: the source tree itself for an editable install
    (or an in-place build), else the build directory that becomes the wheel."""
    in_place = getattr(command, "editable_mode", False) or getattr(command, "inplace", False)
    return ROOT if in_place else Path(command.build_lib)


def remove_stale_extensions(keep: Sequence[str]) -> None:
    """Delete extension modules an earlier in-place build left in the source tree for modules
    that this build does not compile: Python would import them before the source."""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    for package in ("muxwsgi", "muxwsgi.client", "muxwsgi.server"):
        top = ROOT / PACKAGE_DIRS[package]
        for path in top.rglob("*"):
            if not path.name.endswith(suffixes):
                continue
            parts = path.relative_to(top).with_name(path.name.partition(".")[0]).parts
            if ".".join((package, *parts)) not in keep:
                path.unlink()


class BuildPy(build_py):
    """Copy the package as usual, plus the build's record (see write_manifest)."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            remove_stale_extensions(COMPILED if REASON is None else ())
        write_manifest(output_dir(self), REASON)


class BuildExt(build_ext):
    """Build the extensions, or fall back to pure Python with one line saying why."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # no compiler, a missing header, a failed link
            reason = f"the C build failed ({type(exc).__name__}: {exc})"
            print(f"muxwsgi: installing the pure-Python build: {reason}", file=sys.stderr)
            self.extensions = []
            write_manifest(output_dir(self), reason)


extensions, REASON = mypyc_extensions()
if REASON is not None:
    print(f"muxwsgi: installing the pure-Python build: {REASON}", file=sys.stderr)
setup(ext_modules=extensions, cmdclass={"build_py": BuildPy, "build_ext": BuildExt})
