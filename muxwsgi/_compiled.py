"""Which build is running: the mypyc-compiled modules, or the pure-Python reference.

The build (setup.py) compiles a list of modules from the same typed source and records it in
``_compiled.json`` with a hash of each source. At import, before any other module of the
package, this module decides:

- ``MUXWSGI_PURE_PYTHON=1`` in the environment: run the pure-Python modules even where compiled
  ones are installed (to compare the two, or to rule the compiler out of a bug);
- a compiled module whose source changed since the build (an editable install after an edit):
  a compiled module would run the old code, so the whole package runs pure Python, with a
  warning that says how to rebuild. Never a mix: compiled modules call each other natively.

Either way the pure modules are chosen by a finder that sees only ``.py`` files for this
package's submodules; nothing else changes. This module itself is never compiled.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import json
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType

__all__ = ("INFO", "BuildInfo", "read_manifest", "select_build", "stale_module")

_PACKAGE_DIR = Path(__file__).resolve().parent
_SOURCE_LOADERS = [
    (importlib.machinery.SourceFileLoader, importlib.machinery.SOURCE_SUFFIXES),
    (importlib.machinery.SourcelessFileLoader, importlib.machinery.BYTECODE_SUFFIXES),
]


class BuildInfo:
    """What the running package is: ``compiled`` with ``compiler`` (e.g. "mypyc 1.15.0"), or
    pure Python, with ``reason`` saying why."""

    __slots__ = ("compiled", "compiler", "modules", "reason")

    def __init__(self, compiled: bool, compiler: str, modules: Sequence[str], reason: str) -> None:
        self.compiled = compiled
        self.compiler = compiler
        self.modules = tuple(modules)
        self.reason = reason

    def describe(self) -> str:
        """One line for ``--version`` and the server's start-up log."""
        if self.compiled:
            return f"compiled ({self.compiler}, {len(self.modules)} modules)"
        return f"pure Python ({self.reason})"


class _PureFinder:
    """Find this package's submodules as ``.py`` files only (see the module docstring)."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if path is None or not fullname.startswith("muxwsgi."):
            return None
        for entry in path:
            spec = importlib.machinery.FileFinder(entry, *_SOURCE_LOADERS).find_spec(fullname)
            if spec is not None:
                return spec
        return None  # e.g. muxwsgi.client in an editable install: its own finder maps it


def read_manifest(directory: Path = _PACKAGE_DIR) -> dict[str, object]:
    """The build's record (written by setup.py); empty if there is none."""
    try:
        data = json.loads((directory / "_compiled.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def stale_module(modules: Mapping[str, object], package_dir: Path = _PACKAGE_DIR) -> str | None:
    """The first compiled module whose source no longer matches the build, or None. Each
    entry of ``modules`` holds the source's hash and its path relative to ``package_dir``."""
    for module, entry in modules.items():
        if not isinstance(entry, dict):
            return module  # a record from another version of the build: not to be trusted
        path = package_dir / str(entry.get("path", ""))
        if not path.is_file():
            continue  # a wheel without its sources: nothing to compare
        if hashlib.sha256(path.read_bytes()).hexdigest() != entry.get("sha256"):
            return module
    return None


def select_build(manifest: Mapping[str, object], environ: Mapping[str, str]) -> BuildInfo:
    """Decide between the compiled and the pure modules (see the module docstring). Returns
    what runs; the caller installs the pure finder unless it is compiled and ``manifest``
    lists compiled modules. Warns when a source changed since it was compiled."""
    modules = manifest.get("modules")
    compiled_modules = dict(modules) if isinstance(modules, dict) else {}
    if not compiled_modules:
        reason = manifest.get("reason") or "not compiled at install time"
        return BuildInfo(False, "", (), str(reason))
    if environ.get("MUXWSGI_PURE_PYTHON") == "1":
        return BuildInfo(False, "", (), "MUXWSGI_PURE_PYTHON=1")
    stale = stale_module(compiled_modules)
    if stale is None:
        compiler = str(manifest.get("compiler", "mypyc"))
        return BuildInfo(True, compiler, sorted(compiled_modules), "")
    reason = f"{stale} changed since it was compiled"
    warnings.warn(
        f"muxwsgi: {reason}; running the pure-Python build. Rebuild the compiled modules "
        "with `pip install -e .` (or set MUXWSGI_PURE_PYTHON=1 to silence this).",
        RuntimeWarning,
        stacklevel=2,
    )
    return BuildInfo(False, "", (), reason)


def _decide() -> BuildInfo:
    info = select_build(read_manifest(), os.environ)
    if not info.compiled:
        # Installed compiled modules (if any) must not load: the finder sees only sources.
        sys.meta_path.insert(0, _PureFinder())
    return info


#: Decided once, when the package is imported (its __init__ imports this module first).
INFO = _decide()
