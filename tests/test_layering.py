"""Imports point one way: client and server use the core; the core uses neither, nor anyio;
the server never uses the client (DESIGN.md, "Architecture")."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# __main__ only dispatches to the subcommands, importing them lazily when chosen.
CORE_EXEMPT = {"__main__.py"}


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_import_muxwsgi_loads_no_io_layers() -> None:
    code = (
        "import sys, muxwsgi, muxwsgi.classic;"
        "io = ('anyio', 'trio', 'asyncio', 'socket', 'threading', 'selectors');"
        "mine = ('muxwsgi.client', 'muxwsgi.server');"
        "bad = [m for m in sys.modules if m.split('.')[0] in io or m.startswith(mine)];"
        "print(','.join(sorted(bad)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.strip()
    # threading can be pulled in by the interpreter's own startup on some builds; the core
    # must not be the one that imports it, which the AST scan below checks.
    assert set(filter(None, out.split(","))) <= {"threading"}, out


@pytest.mark.parametrize("path", sorted((ROOT / "muxwsgi").glob("*.py")), ids=lambda p: p.name)
def test_core_imports_only_stdlib_and_msgpack(path: Path) -> None:
    if path.name in CORE_EXEMPT:
        return
    forbidden = ("anyio", "trio", "asyncio", "socket", "threading", "selectors", "muxwsgi.client",
                 "muxwsgi.server", "client", "server", "httpx", "httptools")  # fmt: skip
    for name in imported_modules(path):
        assert not name.startswith(forbidden), f"{path.name} imports {name}"


@pytest.mark.parametrize("path", sorted((ROOT / "server").rglob("*.py")), ids=lambda p: p.name)
def test_server_never_imports_client(path: Path) -> None:
    for name in imported_modules(path):
        assert not name.startswith("muxwsgi.client"), f"{path} imports {name}"


def test_client_and_server_are_not_top_level_packages() -> None:
    """The wheel has one top-level name; a user's own `server.py` must never be shadowed."""
    code = "import importlib.util as u; print(u.find_spec('server'), u.find_spec('client'))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/"
    ).stdout.strip()
    assert out == "None None"
