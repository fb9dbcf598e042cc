"""Imports point one way: client and server use the core's public names; the core uses
neither, nor anyio; the server never uses the client (the layers of the README's "Layout");
and no module imports, even lazily, one that imports it back."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# __main__ only dispatches to the subcommands, importing them lazily when chosen.
CORE_EXEMPT = {"__main__.py"}
#: The source folders and the packages they are installed as (pyproject's package-dir).
PACKAGES = {"muxwsgi": "muxwsgi", "server": "muxwsgi.server", "client": "muxwsgi.client"}


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def module_files() -> dict[str, Path]:
    """Every module of the three packages by its installed name."""
    modules: dict[str, Path] = {}
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = [package, *path.relative_to(ROOT / folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def imports_of(name: str, path: Path, known: set[str]) -> Iterator[str]:
    """The modules of ``known`` that ``name`` imports anywhere in its file: at the top, in a
    function, or under TYPE_CHECKING (a cycle hidden there is still a cycle)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from pkg import mod` imports the module pkg.mod; `from mod import name`, mod.
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in known:  # a name inside a module: the module
                target = target.rpartition(".")[0]
            if target and target != name:
                yield target


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    known = set(modules)
    return {name: set(imports_of(name, path, known)) for name, path in modules.items()}


def knots(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm): the
    modules that import each other, directly or around a loop."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for child in sorted(graph[node]):
            if child not in index:
                visit(child)
                low[node] = min(low[node], low[child])
            elif child in stack:
                low[node] = min(low[node], index[child])
        if low[node] == index[node]:
            component = {stack.pop()}
            while node not in component:
                component.add(stack.pop())
            if len(component) > 1:
                found.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def path_around(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest cycle through the first module of ``component`` (breadth-first)."""
    start = min(component)
    previous: dict[str, str] = {}
    queue = [start]
    for node in queue:
        for child in sorted(graph[node] & component):
            if child == start:
                path = [node]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                return [start, *reversed(path[:-1]), start] if len(path) > 1 else [start, start]
            if child not in previous:
                previous[child] = node
                queue.append(child)
    raise AssertionError(f"no cycle through {start}")


def test_no_import_cycles() -> None:
    """A cycle makes the import order matter and hides which module is the lower layer; the
    usual way to keep one working, an import inside a function, only hides it."""
    graph = import_graph()
    unexpected = [
        " -> ".join(path_around(graph, knot)) + f"  (the knot: {', '.join(sorted(knot))})"
        for knot in knots(graph)
    ]
    assert not unexpected, "import cycles:\n" + "\n".join(unexpected)


def test_cycle_finder_sees_every_knot() -> None:
    graph = {"a": {"b"}, "b": {"c", "a"}, "c": {"a", "d"}, "d": set(), "e": {"f"}, "f": {"e"}}
    assert sorted(map(sorted, knots(graph))) == [["a", "b", "c"], ["e", "f"]]
    assert path_around(graph, {"a", "b", "c"}) == ["a", "b", "a"]
    assert path_around(graph, {"e", "f"}) == ["e", "f", "e"]


def test_only_the_core_imports_its_private_modules() -> None:
    """The client and the server use the core's public names (``muxwsgi`` and
    ``muxwsgi.classic``): its private modules may change shape without notice. The core's
    own tests and micro-benchmarks look inside on purpose."""
    graph = import_graph()
    offenders = sorted(
        f"{name} imports {target}"
        for name, targets in graph.items()
        if name.startswith(("muxwsgi.server", "muxwsgi.client"))
        for target in targets
        if target.startswith("muxwsgi._") and not target.startswith("muxwsgi.__")
    )
    assert offenders == []


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
