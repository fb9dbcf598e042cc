"""OpenTelemetry is an extra, never required: with it hidden (as if not installed), the client
and the server work, try to import it only when their setting may use it, and say what to
install when a setting requires it (issue 18).

The processes here hide it with a ``sitecustomize`` put first on their PYTHONPATH: an import
finder that refuses every ``opentelemetry`` module and notes the attempt in a file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .servers import ROOT, running, start, until

pytestmark = pytest.mark.slow

HIDE = """
import os, sys

class HideOpenTelemetry:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] != "opentelemetry":
            return None
        with open(os.environ["MUXWSGI_TEST_IMPORTS"], "a") as out:
            out.write(name + "\\n")
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, HideOpenTelemetry())
"""

CLIENT = """
import json, os, sys
from pathlib import Path
from muxwsgi.client import Client

imports = Path(os.environ["MUXWSGI_TEST_IMPORTS"])
def tried():
    return imports.read_text().split() if imports.exists() else []

seen = {"after import": tried()}
with Client(sys.argv[1], opentelemetry=False, trace=True) as client:
    environ = client.get("/environ").json()
seen["off"] = tried()
seen["trace=True"] = environ["HTTP_TRACEPARENT"][:3]
with Client(sys.argv[1]) as client:
    environ = client.get("/environ").json()
seen["auto"] = tried()
seen["auto sent"] = [k for k in environ if k.startswith(("HTTP_TRACE", "HTTP_BAGGAGE"))]
try:
    Client(sys.argv[1], opentelemetry=True)
except ValueError as exc:
    seen["required"] = str(exc)
print(json.dumps(seen))
"""


@pytest.fixture
def hidden(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Hide opentelemetry from the processes started from now on; the attempts' file."""
    (tmp_path / "sitecustomize.py").write_text(HIDE)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), str(ROOT)]))
    imports = tmp_path / "imports"
    monkeypatch.setenv("MUXWSGI_TEST_IMPORTS", str(imports))
    return imports


def test_the_hiding_works(hidden: Path) -> None:
    code = "import opentelemetry"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "No module named 'opentelemetry'" in result.stderr
    assert hidden.read_text().split() == ["opentelemetry"]


def test_the_client_works_without_it(hidden: Path, tmp_path: Path) -> None:
    with running(log_dir=tmp_path) as server:
        url = f"mux://{server.address[0]}:{server.address[1]}"
        result = subprocess.run([sys.executable, "-c", CLIENT, url], capture_output=True,
                                text=True, timeout=60, cwd=tmp_path)  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert hidden.read_text().split() == ["opentelemetry"] * 2  # "auto", then True
    seen = json.loads(result.stdout)
    assert seen["after import"] == seen["off"] == []  # never looked for when off
    assert seen["trace=True"] == "00-"  # the trace setting needs no OpenTelemetry
    assert seen["auto"] == ["opentelemetry"] and seen["auto sent"] == []
    assert "pip install 'muxwsgi[otel]'" in seen["required"]


def test_the_server_works_without_it_and_says_what_the_setting_needs(
    hidden: Path, tmp_path: Path
) -> None:
    with running(log_dir=tmp_path):
        pass  # served its readiness check
    assert not hidden.exists()  # off: never imported
    server = start("tests.server.apps:app", "--opentelemetry", log_dir=tmp_path, ready=False)
    try:
        until(lambda: server.proc.poll() is not None, 30, what="the server gave up")
    finally:
        server.stop()
    assert "--opentelemetry needs opentelemetry-api: pip install 'muxwsgi[otel]'" in server.log()
    assert hidden.read_text().split()[0] == "opentelemetry"
