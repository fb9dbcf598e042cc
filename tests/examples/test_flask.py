"""examples/flask: the backend and the frontend, each served by `muxwsgi serve`, the frontend
calling the backend through muxwsgi.client, and a person calling the frontend over HTTP."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest

from muxwsgi.client import Client
from tests.servers import running

pytestmark = pytest.mark.slow


def http(method: str, url: str) -> tuple[int, str]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_frontend_calls_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    socket_path = tmp_path / "backend.sock"
    chdir = ("--chdir", "examples/flask")
    with running("backend:app", *chdir, log_dir=tmp_path, bind=f"unix:{socket_path}") as backend:
        # The backend alone, as a service calls it.
        with Client(f"mux+unix://{socket_path}", timeout=5) as client:
            assert client.get("/books/3").json()["title"] == "A Philosophy of Software Design"
            assert client.get("/books/99").status == 404

        monkeypatch.setenv("BACKEND_URL", f"mux+unix://{socket_path}")
        with running("frontend:app", *chdir, "--threads", "4", log_dir=tmp_path) as frontend:
            host, port = frontend.address
            base = f"http://{host}:{port}"
            status, page = http("GET", base + "/")
            assert status == 200, page
            assert "The Pragmatic Programmer: in stock" in page
            assert "Structure and Interpretation of Computer Programs: sold out" in page
            assert http("POST", base + "/buy/1") == (
                200,
                "reserved: {'by': 'frontend', 'id': 1, 'reserved': 1}\n",
            )
            assert http("POST", base + "/buy/2") == (409, "sold out\n")
            assert http("POST", base + "/buy/99") == (404, "no such book\n")

            # The backend goes away: the frontend answers 502 at once, saying why.
            backend.stop()
            status, page = http("GET", base + "/")
            assert status == 502
            assert page.startswith("the catalogue is unavailable: ")
            assert str(socket_path) in page
