"""The public surface, checked both ways (anyio's test_all_attributes).

A public module is one users are told to import or name: README.md and docs/ import
``muxwsgi``, ``muxwsgi.classic`` (the core's README section) and ``muxwsgi.client``, serve
``muxwsgi.demo:app`` and name ``muxwsgi.server`` (whose interface is its command line, so its
``__all__`` is empty). For each: ``__all__`` is a tuple, every name in it exists, every name it
lists is defined there (or, for a package, in one of its private submodules), every public name
defined there is listed, and every class and function listed has a docstring.

Everything is read from the source with ``ast``, not from the imported objects: a module
compiled with mypyc has no ``__doc__`` on its functions and classes, and its functions are
not ``FunctionType``. The other modules without a leading underscore (the server's parts) are
internal, but their ``__all__`` must still be a tuple of names that exist. The order of every
``__all__`` is ruff's (RUF022, in the lint).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
from collections.abc import Iterator

import pytest

from .test_layering import module_files

PUBLIC = ("muxwsgi", "muxwsgi.classic", "muxwsgi.client", "muxwsgi.demo", "muxwsgi.server")
#: Every module of the three packages by its installed name, and its source file.
SOURCES = module_files()
#: Modules without a leading underscore anywhere in their name that users are not pointed to.
INTERNAL = sorted(
    name
    for name in SOURCES
    if name not in PUBLIC and not any(part.startswith("_") for part in name.split("."))
)


def module_level(tree: ast.Module) -> Iterator[ast.stmt]:
    """The statements that run at import, ``if TYPE_CHECKING:`` and ``try:`` bodies included."""
    pending = list(tree.body)
    while pending:
        node = pending.pop(0)
        if isinstance(node, ast.If):
            pending[:0] = [*node.body, *node.orelse]
        elif isinstance(node, ast.Try):
            handlers = [stmt for handler in node.handlers for stmt in handler.body]
            pending[:0] = [*node.body, *handlers, *node.orelse, *node.finalbody]
        else:
            yield node


def bindings(name: str) -> dict[str, ast.stmt]:
    """Every name module ``name`` binds at module level, with the statement that binds it: a
    def, a class, an assignment or an import."""
    path = SOURCES[name]
    found: dict[str, ast.stmt] = {}
    for node in module_level(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            found[node.name] = node
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            bound = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in bound:
                found.update((n.id, node) for n in ast.walk(target) if isinstance(n, ast.Name))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            found.update(((a.asname or a.name).partition(".")[0], node) for a in node.names)
    return found


def definitions(name: str) -> dict[str, ast.stmt]:
    """The names module ``name`` defines: what it binds itself, and for a package what it
    imports from its own private submodules (``from ._x import Y``), the package's home."""
    is_package = SOURCES[name].name == "__init__.py"

    def defines(node: ast.stmt) -> bool:
        if isinstance(node, ast.ImportFrom):
            return is_package and node.level == 1 and (node.module or "").startswith("_")
        return not isinstance(node, ast.Import)

    return {attr: node for attr, node in bindings(name).items() if defines(node)}


def defining_node(module: str, attr: str) -> ast.stmt:
    """The statement that defines ``module.attr``: imports are followed to the module whose
    def, class or assignment binds it."""
    node = bindings(module)[attr]
    if not isinstance(node, ast.ImportFrom):
        return node
    package = module if SOURCES[module].name == "__init__.py" else module.rpartition(".")[0]
    source = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
    alias = next(a for a in node.names if (a.asname or a.name) == attr)
    return defining_node(source, alias.name)


@pytest.mark.parametrize("name", [*PUBLIC, *INTERNAL])
def test_all_is_a_tuple_of_names_that_exist(name: str) -> None:
    module = importlib.import_module(name)
    assert isinstance(getattr(module, "__all__", None), tuple), f"{name}.__all__ is not a tuple"
    missing = [attr for attr in module.__all__ if not hasattr(module, attr)]
    assert missing == [], f"{name}.__all__ lists names the module does not have"


@pytest.mark.parametrize("name", PUBLIC)
def test_all_lists_what_the_module_defines_and_nothing_else(name: str) -> None:
    listed = set(importlib.import_module(name).__all__)
    defined = definitions(name)
    unlisted = sorted(attr for attr in defined.keys() - listed if not attr.startswith("_"))
    assert unlisted == [], f"public in {name} but not in __all__ (prefix an internal name _)"
    foreign = sorted(listed - defined.keys())
    assert foreign == [], f"in {name}.__all__ but defined elsewhere: export it from its home"


@pytest.mark.parametrize("name", PUBLIC)
def test_public_classes_and_functions_have_docstrings(name: str) -> None:
    undocumented = []
    for attr in importlib.import_module(name).__all__:
        node = defining_node(name, attr)
        is_code = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        if is_code and not ast.get_docstring(node):
            undocumented.append(attr)
    assert undocumented == []
