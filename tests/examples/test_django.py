"""examples/django: the inventory project served by `muxwsgi serve`, called by a second
service (examples/django/stock_report.py) through muxwsgi.client."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from muxwsgi.client import Client
from tests.servers import ROOT, running

pytestmark = pytest.mark.slow

EXAMPLE = ROOT / "examples" / "django"


def test_stock_report_calls_the_django_service(tmp_path: Path) -> None:
    app = "inventory.wsgi:application"
    with running(app, "--chdir", str(EXAMPLE), log_dir=tmp_path) as server:
        host, port = server.address
        url = f"mux://{host}:{port}"
        result = subprocess.run(
            [sys.executable, str(EXAMPLE / "stock_report.py"), url],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout == "Apple: 12\nPear: 0\nPlum: 5\n"

        with Client(url, timeout=5) as client:
            check = client.post(
                "/products/plum",
                headers={"Content-Type": "application/json"},
                body=json.dumps({"quantity": 6}).encode(),
            )
            assert check.json() == {"sku": "plum", "available": False}
            assert client.get("/products/kiwi").status == 404
            assert client.delete("/products/plum").status == 405
        # The same server answers classic uwsgi (nginx's uwsgi_pass) and HTTP/1.1 too.
        with Client(f"uwsgi://{host}:{port}", timeout=5) as classic:
            assert classic.get("/products").json() == {"products": ["apple", "pear", "plum"]}
    assert "Traceback" not in server.log()
