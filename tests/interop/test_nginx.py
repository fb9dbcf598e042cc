"""nginx `uwsgi_pass` in front of `muxwsgi serve`: the classic uwsgi path with the real frontend."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from ..servers import ServerProcess, start
from .nginx import nginx

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, int]]:
    tmp = tmp_path_factory.mktemp("nginx")
    server = start("tests.server.apps:validated_app", "--workers", "2", "--threads", "8",
                   log_dir=tmp)  # fmt: skip
    try:
        host, port = server.address
        with nginx(f"{host}:{port}", tmp / "nginx") as nginx_port:
            yield server, nginx_port
    finally:
        server.stop()


def get(port: int, method: str, path: str, body: bytes | None = None,
        headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, data


def test_get_with_query_and_headers(stack: tuple[ServerProcess, int]) -> None:
    _, port = stack
    status, _, body = get(port, "GET", "/environ?a=1&b=%20x", headers={"X-Custom": "yes"})
    assert status == 200
    env = json.loads(body)
    assert env["QUERY_STRING"] == "a=1&b=%20x"
    assert env["HTTP_X_CUSTOM"] == "yes"
    assert env["REQUEST_URI"] == "/environ?a=1&b=%20x"
    assert env["muxwsgi.protocol"] == "uwsgi"
    assert env["REMOTE_ADDR"] == "127.0.0.1"  # from nginx's uwsgi_params
    assert env["wsgi.url_scheme"] == "http"


def test_post_one_mebibyte(stack: tuple[ServerProcess, int]) -> None:
    _, port = stack
    payload = os.urandom(1 << 20)
    status, headers, body = get(port, "POST", "/echo", body=payload)
    assert status == 200
    assert body == payload
    assert headers["x-sha256"] == hashlib.sha256(payload).hexdigest()


def test_streamed_response(stack: tuple[ServerProcess, int]) -> None:
    _, port = stack
    status, _, body = get(port, "GET", "/stream?n=50&size=1000&delay=0.002")
    assert status == 200
    assert len(body) == 50_000
    assert body[:6] == b"000000" and body[-1000:-994] == b"000049"


@pytest.mark.parametrize(
    ("path", "status"), [("/nope", 404), ("/raise", 500), ("/status?code=418", 418)]
)
def test_app_statuses(stack: tuple[ServerProcess, int], path: str, status: int) -> None:
    _, port = stack
    assert get(port, "GET", path)[0] == status


def test_response_splitting_refused(stack: tuple[ServerProcess, int]) -> None:
    _, port = stack
    status, headers, body = get(port, "GET", "/bad-header")
    assert status == 500
    assert "set-cookie" not in headers and b"never" not in body


def test_many_concurrent_requests(stack: tuple[ServerProcess, int]) -> None:
    _, port = stack
    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(lambda i: get(port, "GET", f"/environ?i={i}"), range(400)))
    assert all(status == 200 for status, _, _ in results)
    assert sorted(json.loads(body)["QUERY_STRING"] for _, _, body in results) == sorted(
        f"i={i}" for i in range(400)
    )
