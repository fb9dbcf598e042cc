"""README.md's first set-up command, run verbatim on a copy of the repository with a new
virtualenv: it installs the package and serves the demo, and the demo answers.

The only thing added is MUXWSGI_BIND (the environment form of --bind), so that the test takes
a free port instead of 3031; the command line itself is the README's.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from muxwsgi.client import Client

from .servers import ROOT

pytestmark = pytest.mark.slow


def serve_command() -> str:
    """The first fenced sh block of the Set-up section."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    setup = text[text.index("## Set-up") :]
    match = re.search(r"```sh\n(.+?)\n```", setup, re.DOTALL)
    assert match, "README.md: no sh block in the Set-up section"
    return match.group(1).strip()


def copy_repository(target: Path) -> None:
    """The files git would check out (tracked or new, not ignored): a fresh clone's view."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def test_first_command_serves_the_demo(tmp_path: Path) -> None:
    command = serve_command()
    assert "muxwsgi serve muxwsgi.demo:app" in command
    checkout = tmp_path / "checkout"
    copy_repository(checkout)
    log = tmp_path / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    env.update(MUXWSGI_BIND="127.0.0.1:0", PYTHONUNBUFFERED="1")
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(sys.prefix)
    )
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["bash", "-c", command], cwd=checkout, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped with killpg below
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 300  # a new venv, and pip fetching the dependencies
        address = None
        while address is None:
            assert proc.poll() is None, f"the command exited {proc.returncode}:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"not serving after 300 s:\n{log.read_text()}"
            found = re.search(r"listening on (127\.0\.0\.1:\d+)", log.read_text(errors="replace"))
            address = found.group(1) if found else None
            time.sleep(0.2)
        body = b""
        for _ in range(100):  # the master listens before its worker accepts
            try:
                with urllib.request.urlopen(f"http://{address}/", timeout=5) as response:
                    assert response.status == 200
                    body = response.read()
                break
            except OSError:
                time.sleep(0.1)
        assert body.startswith(b"Hello from muxwsgi"), body
        with Client(f"mux://{address}", timeout=10) as client:
            assert client.get("/").content == body
        assert (checkout / ".venv" / "bin" / "muxwsgi").exists()
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
