"""TLS with real software: nginx's ``uwsgi_pass suwsgi://`` with a client certificate (the site
in docs/tls.md, which test_docs shows but does not run), curl with a client certificate, and
nginx passing on its own clients' certificates. Certificates from tests/certs.py."""

from __future__ import annotations

import json
import re
import shutil
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..certs import CLIENT_NAME, GATEWAY_NAME, Certs, https_get, make_certs
from ..servers import ROOT, ServerProcess, start, until
from .nginx import free_port, run_nginx

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    directory = tmp_path_factory.mktemp("certs")
    directory.chmod(0o755)  # nginx's workers may run as another user
    return make_certs(directory)


@pytest.fixture(scope="module")
def server(certs: Certs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Mutual TLS only, two workers (a session resumes in either)."""
    srv = start("tests.server.apps:validated_app", "--certfile", str(certs.server_cert),
                "--keyfile", str(certs.server_key), "--ca-certs", str(certs.ca), "--tls-only",
                "--workers", "2", log_dir=tmp_path_factory.mktemp("tls-interop"))  # fmt: skip
    yield srv
    srv.stop()


def docs_suwsgi_site(certs: Certs, server: ServerProcess, port: int) -> str:
    """docs/tls.md's nginx site, pointed at our files and ports."""
    text = (ROOT / "docs" / "tls.md").read_text(encoding="utf-8")
    (site,) = [b for b in re.findall(r"^```nginx no-run\n(.*?)^```", text, re.M | re.S)
               if "suwsgi://" in b]  # fmt: skip
    replacements = {
        "server billing.internal:3031;": f"server 127.0.0.1:{server.address[1]};",
        "listen 443 ssl;": f"listen 127.0.0.1:{port} ssl;",
        "/etc/nginx/tls/public.pem": str(certs.server_cert),
        "/etc/nginx/tls/public.key": str(certs.server_key),
        "/etc/nginx/tls/to-billing.pem": str(certs.gateway_cert),
        "/etc/nginx/tls/to-billing.key": str(certs.gateway_key),
        "/etc/nginx/tls/internal-ca.pem": str(certs.ca),
        "uwsgi_ssl_name                billing.internal;": "uwsgi_ssl_name localhost;",
        "include uwsgi_params;": "include /etc/nginx/uwsgi_params;",
    }
    for old, new in replacements.items():
        assert old in site, f"docs/tls.md's nginx site changed shape: no {old!r}"
        site = site.replace(old, new)
    return site


def test_nginx_suwsgi_with_a_client_certificate(
    certs: Certs, server: ServerProcess, tmp_path: Path
) -> None:
    port = free_port()
    with run_nginx(docs_suwsgi_site(certs, server, port), tmp_path / "nginx", port):
        replies = [https_get(port, certs, "/environ") for _ in range(6)]
        status, body = https_get(port, certs, "/stream?n=30&size=10000")
    assert {status for status, _ in replies} == {200}
    envs = [json.loads(body) for _, body in replies]
    env = envs[0]
    assert env["muxwsgi.protocol"] == "uwsgi"
    # nginx's own client came over TLS (nginx says so), without a certificate.
    assert env["HTTPS"] == "on" and env["wsgi.url_scheme"] == "https"
    assert "SSL_CLIENT_S_DN" not in env
    # The connection from nginx: its certificate, verified.
    assert env["muxwsgi.tls"]["SSL_CLIENT_VERIFY"] == "SUCCESS"
    assert env["muxwsgi.tls"]["SSL_CLIENT_S_DN"].startswith(f"CN={GATEWAY_NAME},")
    # A connection per request, all but the first resumed (with tickets from either worker).
    resumed = [e["muxwsgi.tls"]["SSL_SESSION_RESUMED"] for e in envs]
    assert resumed[0] == "Initial" and set(resumed[1:]) == {"Resumed"}, resumed
    assert status == 200 and len(body) == 300_000


def test_nginx_that_does_not_trust_the_server_answers_502(
    certs: Certs, server: ServerProcess, tmp_path: Path
) -> None:
    port = free_port()
    site = docs_suwsgi_site(certs, server, port).replace(
        f"uwsgi_ssl_trusted_certificate {certs.ca};",
        f"uwsgi_ssl_trusted_certificate {certs.other_ca};",
    )
    with run_nginx(site, tmp_path / "nginx", port):
        status, _ = https_get(port, certs, "/hello")
    assert status == 502
    assert "upstream SSL certificate verify error" in (tmp_path / "nginx" / "error.log").read_text()


def test_nginx_passes_on_its_own_clients_certificate(
    certs: Certs, server: ServerProcess, tmp_path: Path
) -> None:
    port = free_port()
    text = (ROOT / "docs" / "tls.md").read_text(encoding="utf-8")
    (params,) = [b for b in re.findall(r"^```nginx no-run\n(.*?)^```", text, re.M | re.S)
                 if "$ssl_client_s_dn" in b]  # fmt: skip
    site = docs_suwsgi_site(certs, server, port)
    site = site.replace(
        "    location / {",
        f"    ssl_verify_client on;\n    ssl_client_certificate {certs.ca};\n    location / {{",
    ).replace(
        "        uwsgi_pass suwsgi://billing;", f"{params}        uwsgi_pass suwsgi://billing;"
    )
    with run_nginx(site, tmp_path / "nginx", port):
        status, body = https_get(port, certs, "/environ", cert=certs.client_pem)
    assert status == 200, body
    env = json.loads(body)
    # nginx's client is the request's; nginx itself is only the connection's.
    assert env["SSL_CLIENT_VERIFY"] == "SUCCESS"
    assert env["SSL_CLIENT_S_DN"].startswith(f"CN={CLIENT_NAME},")
    assert env["muxwsgi.tls"]["SSL_CLIENT_S_DN"].startswith(f"CN={GATEWAY_NAME},")


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("curl")
    if binary is None:
        pytest.fail("curl is needed (apt-get install curl)")
    return subprocess.run([binary, "-sS", *args], capture_output=True, text=True, timeout=30)


def test_curl_with_a_client_certificate(certs: Certs, server: ServerProcess) -> None:
    url = f"https://localhost:{server.address[1]}/environ"
    done = curl("--cacert", str(certs.ca), "--cert", str(certs.client_cert), "--key",
                str(certs.client_key), url)  # fmt: skip
    assert done.returncode == 0, done.stderr
    env = json.loads(done.stdout)
    assert env["muxwsgi.protocol"] == "http" and env["wsgi.url_scheme"] == "https"
    assert env["SSL_CLIENT_S_DN"].startswith(f"CN={CLIENT_NAME},")
    before = server.log().count("no client certificate (--ca-certs requires one)")
    refused = curl("--cacert", str(certs.ca), url)
    assert refused.returncode != 0 and "alert" in refused.stderr, refused.stderr
    until(lambda: server.log().count("no client certificate") > before, what="logged")


def test_python_ssl_module_peers(certs: Certs, server: ServerProcess) -> None:
    context = certs.client_context(cert=certs.client_pem)
    url = f"https://localhost:{server.address[1]}/environ"
    with urllib.request.urlopen(url, context=context, timeout=20) as response:
        env = json.loads(response.read())
    assert env["SSL_CLIENT_VERIFY"] == "SUCCESS"
    with pytest.raises(urllib.error.URLError, match="certificate verify failed"):
        urllib.request.urlopen(url, context=ssl.create_default_context(), timeout=20)


def test_muxwsgi_request_with_curls_flags(certs: Certs, server: ServerProcess) -> None:
    url = f"muxs://localhost:{server.address[1]}/environ"

    def request(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "muxwsgi", "request", *args, url],
                              capture_output=True, text=True, timeout=60)  # fmt: skip

    done = request("--cacert", str(certs.ca), "--cert", str(certs.client_cert), "--key",
                   str(certs.client_key))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["SSL_CLIENT_S_DN"].startswith(f"CN={CLIENT_NAME},")
    insecure = request("-k", "--cert", str(certs.client_pem))
    assert insecure.returncode == 0, insecure.stderr
    unverified = request("--cert", str(certs.client_pem))
    assert unverified.returncode == 1 and "failed verification" in unverified.stderr
    assert request("--key", str(certs.client_key)).returncode == 2  # --key needs --cert
