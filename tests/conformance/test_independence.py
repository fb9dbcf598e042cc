"""The conformance client is a second implementation: it reads PROTOCOL.md, not the package.
Nothing it runs may import muxwsgi (the server under test is a separate process)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
#: What the suite may import: the standard library, msgpack, pytest and these test helpers.
HELPERS = {"tests.servers"}


def imports(path: Path) -> set[str]:
    """Absolute module names ``path`` imports (relative ones resolved against its package)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                names.add(f"{base}.{node.module}" if node.module else base)
            else:
                names.add(node.module or "")
    return names


def test_no_module_of_the_suite_imports_the_package() -> None:
    for path in [*HERE.glob("*.py"), *(ROOT / f"{h.replace('.', '/')}.py" for h in HELPERS)]:
        for name in imports(path):
            top = name.split(".")[0]
            assert top not in ("muxwsgi", "client", "server"), f"{path.name} imports {name}"
            if top == "tests":
                assert name.startswith("tests.conformance") or name in HELPERS, (path, name)


def test_loading_the_client_loads_no_muxwsgi() -> None:
    code = (
        "import sys, tests.conformance.peer, tests.conformance.conftest;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'muxwsgi'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.strip()
    assert out == "[]"
