"""TLS on the server's shared socket: the settings, what each protocol looks like inside TLS,
ALPN, the environ, and the certificate's life (loaded by the master, again on HUP, its session
tickets good in every worker)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import signal
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from muxwsgi import classic
from muxwsgi.server.config import Config
from muxwsgi.server.tls import TlsConfigError, distinguished_name, server_context
from muxwsgi.server.wsgi import prepare_environ

from ..certs import CLIENT_NAME, Certs, https_get, make_certs
from ..servers import ServerProcess, start, until


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


# ---------------------------------------------------------------- settings


def tls_config(certs: Certs, **changes: Any) -> Config:
    base = Config(certfile=str(certs.server_cert), keyfile=str(certs.server_key))
    return dataclasses.replace(base, **changes)


def test_settings_that_need_a_certificate(certs: Certs) -> None:
    assert server_context(Config()) is None
    for changes, message in (
        ({"keyfile": "k.pem"}, "--keyfile needs --certfile"),
        ({"ca_certs": str(certs.ca)}, "--ca-certs needs --certfile"),
        ({"ssl_ciphers": "HIGH"}, "--ssl-ciphers needs --certfile"),
        ({"tls_only": True}, "--tls-only needs --certfile"),
    ):
        with pytest.raises(TlsConfigError, match=message):
            server_context(dataclasses.replace(Config(), **changes))


def test_unusable_files_name_the_setting(certs: Certs, tmp_path: Path) -> None:
    cases = [
        ({"certfile": str(tmp_path / "none.pem")}, "--certfile .*none.pem: No such file"),
        ({"keyfile": str(tmp_path / "none.key")}, "--keyfile .*none.key: No such file"),
        ({"keyfile": str(certs.client_key)}, "client-key.pem is not the key of --certfile"),
        ({"certfile": str(certs.server_key)}, "not a PEM certificate chain and its private key"),
        ({"ca_certs": str(tmp_path / "none-ca.pem")}, "--ca-certs .*none-ca.pem: No such file"),
        ({"ca_certs": str(certs.server_key)}, "--ca-certs .*server.key: cannot load"),
        ({"ssl_ciphers": "NOTHING-AT-ALL"}, "--ssl-ciphers 'NOTHING-AT-ALL': no cipher matches"),
    ]
    for changes, message in cases:
        with pytest.raises(TlsConfigError, match=message):
            server_context(tls_config(certs, **changes))


def test_the_context_refuses_what_it_should(certs: Certs) -> None:
    context = server_context(tls_config(certs, ca_certs=str(certs.ca), ssl_min_version="1.3"))
    assert context is not None
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.minimum_version == ssl.TLSVersion.TLSv1_3
    assert context.options & ssl.OP_NO_RENEGOTIATION
    default = server_context(tls_config(certs))
    assert default is not None and default.verify_mode == ssl.CERT_NONE
    assert default.minimum_version == ssl.TLSVersion.TLSv1_2


def test_a_bad_certificate_stops_the_server_before_it_binds(tmp_path: Path) -> None:
    server = start("tests.server.apps:app", "--certfile", str(tmp_path / "missing.pem"),
                   log_dir=tmp_path, ready=False, timeout=10)  # fmt: skip
    try:
        assert server.wait(20) == 1
    finally:
        server.stop()
    assert "muxwsgi: --certfile " in server.log() and "No such file" in server.log()
    assert "listening on" not in server.log()


# ---------------------------------------------------------------- the environ


def test_distinguished_names_as_nginx_prints_them() -> None:
    subject = ((("countryName", "FR"),), (("organizationName", "A, B"),),
               (("commonName", "#x"), ("userId", "7")))  # fmt: skip
    assert distinguished_name(subject) == r"CN=\#x+UID=7,O=A\, B,C=FR"
    assert distinguished_name(((("commonName", "trailing "),),)) == r"CN=trailing\ "


def environ_with(tls: dict[str, object] | None, **given: str) -> dict[str, Any]:
    return prepare_environ(dict(given), wsgi_input=None, constants={},  # type: ignore[arg-type]
                           server_name="s", server_port="1", tls=tls)  # fmt: skip


def test_the_tls_vars_never_override_what_the_request_brought() -> None:
    tls = {"SSL_PROTOCOL": "TLSv1.3", "SSL_CLIENT_VERIFY": "SUCCESS"}
    direct = environ_with(tls)
    assert direct["HTTPS"] == "on" and direct["wsgi.url_scheme"] == "https"
    assert direct["SSL_PROTOCOL"] == "TLSv1.3"
    # nginx describing its own client, who came over plain HTTP without a certificate.
    relayed = environ_with(tls, REQUEST_SCHEME="http", SSL_CLIENT_VERIFY="NONE")
    assert "HTTPS" not in relayed and relayed["wsgi.url_scheme"] == "http"
    assert relayed["SSL_CLIENT_VERIFY"] == "NONE"
    assert environ_with(tls, REQUEST_SCHEME="https")["HTTPS"] == "on"
    assert environ_with(tls, HTTPS="off")["wsgi.url_scheme"] == "http"
    plain = environ_with(None)
    assert "HTTPS" not in plain and "SSL_PROTOCOL" not in plain


# ---------------------------------------------------------------- live


@pytest.fixture(scope="module")
def server(certs: Certs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """TLS and plaintext on one port; client certificates not asked."""
    srv = start("tests.server.apps:app", "--certfile", str(certs.server_cert), "--keyfile",
                str(certs.server_key), log_dir=tmp_path_factory.mktemp("tls"))  # fmt: skip
    yield srv
    srv.stop()


def tls_socket(
    address: tuple[str, int], context: ssl.SSLContext, alpn: list[str] | None = None
) -> ssl.SSLSocket:
    if alpn is not None:
        context.set_alpn_protocols(alpn)
    sock = socket.create_connection(address, timeout=10)
    return context.wrap_socket(sock, server_hostname="localhost")


def read_all(sock: socket.socket) -> bytes:
    return b"".join(iter(lambda: sock.recv(65536), b""))


def test_one_port_serves_https_and_plain_http(server: ServerProcess, certs: Certs) -> None:
    status, body = https_get(server.address[1], certs, "/environ")
    env = json.loads(body)
    assert status == 200 and env["muxwsgi.protocol"] == "http"
    assert env["wsgi.url_scheme"] == "https" and env["HTTPS"] == "on"
    assert env["SSL_PROTOCOL"] == "TLSv1.3" and env["SSL_CIPHER"]
    assert env["SSL_CLIENT_VERIFY"] == "NONE" and "SSL_CLIENT_S_DN" not in env
    with socket.create_connection(server.address, timeout=10) as sock:
        sock.sendall(b"GET /environ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        plain = json.loads(read_all(sock).partition(b"\r\n\r\n")[2])
    assert plain["wsgi.url_scheme"] == "http" and "HTTPS" not in plain
    assert "muxwsgi.tls" not in plain


def test_keep_alive_and_pipelining_inside_tls(server: ServerProcess, certs: Certs) -> None:
    request = b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"
    with tls_socket(server.address, certs.client_context()) as sock:
        sock.sendall(request * 20 + b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        replies = read_all(sock)
    assert replies.count(b"HTTP/1.1 200 OK") == 21
    assert replies.count(b"Hello, World!") == 21


def test_classic_uwsgi_inside_tls(server: ServerProcess, certs: Certs) -> None:
    body = b"x" * 200_000
    packet = classic.encode_request({
        "REQUEST_METHOD": "POST", "PATH_INFO": "/echo", "SERVER_PROTOCOL": "HTTP/1.1",
        "CONTENT_LENGTH": str(len(body)), "REQUEST_SCHEME": "http",
    })  # fmt: skip
    with tls_socket(server.address, certs.client_context()) as sock:
        sock.sendall(packet + body)
        reply = read_all(sock)
    head, _, echoed = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and echoed == body


@pytest.mark.parametrize(
    ("offered", "selected"),
    [(["muxwsgi/1"], "muxwsgi/1"), (["h2", "http/1.1"], "http/1.1"), (None, None),
     (["h2"], None)],
)  # fmt: skip
def test_alpn(
    server: ServerProcess, certs: Certs, offered: list[str] | None, selected: str | None
) -> None:
    with tls_socket(server.address, certs.client_context(), offered) as sock:
        assert sock.selected_alpn_protocol() == selected
        sock.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert read_all(sock).endswith(b"Hello, World!")


def test_tls_inside_tls_is_refused(server: ServerProcess, certs: Certs) -> None:
    with tls_socket(server.address, certs.client_context()) as sock:
        sock.sendall(b"\x16\x03\x01\x00\x05hello")
        assert read_all(sock) == b""
    until(lambda: "TLS inside TLS is not served" in server.log(), what="logged")


def test_a_minimum_version_of_1_3(certs: Certs, tmp_path: Path) -> None:
    srv = start("tests.server.apps:app", "--certfile", str(certs.server_cert), "--keyfile",
                str(certs.server_key), "--ssl-min-version", "1.3", log_dir=tmp_path)  # fmt: skip
    try:
        old = certs.client_context()
        old.maximum_version = ssl.TLSVersion.TLSv1_2
        with pytest.raises(ssl.SSLError):
            tls_socket(srv.address, old).close()
        until(lambda: "no TLS version or cipher in common" in srv.log(), what="logged")
        with tls_socket(srv.address, certs.client_context()) as sock:
            assert sock.version() == "TLSv1.3"
    finally:
        srv.stop()


def test_tls_1_2_with_a_client_certificate(certs: Certs, tmp_path: Path) -> None:
    srv = start("tests.server.apps:app", "--certfile", str(certs.server_cert), "--keyfile",
                str(certs.server_key), "--ca-certs", str(certs.ca), log_dir=tmp_path)  # fmt: skip
    try:
        context = certs.client_context(cert=certs.client_pem)
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        with tls_socket(srv.address, context) as sock:
            sock.sendall(b"GET /environ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            env = json.loads(read_all(sock).partition(b"\r\n\r\n")[2])
        assert env["SSL_PROTOCOL"] == "TLSv1.2"
        assert env["SSL_CLIENT_S_DN"].startswith(f"CN={CLIENT_NAME},")
    finally:
        srv.stop()


# ---------------------------------------------------------------- the certificate's life


def served_certificate(address: tuple[str, int], certs: Certs) -> bytes:
    with tls_socket(address, certs.client_context()) as sock:
        der = sock.getpeercert(binary_form=True)
    assert der is not None
    return der


def only_generation(srv: ServerProcess, generation: int) -> bool:
    """Two workers, both ready and of ``generation``: the older ones have exited (a reload
    starts the new workers before it stops the old, which serve until then)."""
    workers = srv.stats()["workers"]
    return (
        len(workers) == 2
        and all(w["status"] == "ready" and w["generation"] == generation for w in workers)
        and sorted(srv.worker_pids()) == sorted(w["pid"] for w in workers)
    )


def test_hup_serves_the_new_certificate_on_the_same_socket(certs: Certs, tmp_path: Path) -> None:
    live = tmp_path / "live"
    live.mkdir()
    cert, key = live / "cert.pem", live / "key.pem"
    shutil.copy(certs.server_cert, cert)
    shutil.copy(certs.server_key, key)
    srv = start("tests.server.apps:app", "--certfile", str(cert), "--keyfile", str(key),
                "--workers", "2", "--stats", f"unix:{tmp_path}/stats.sock",
                log_dir=tmp_path)  # fmt: skip
    try:
        until(lambda: only_generation(srv, 0), 30, what="the workers ready")
        first = served_certificate(srv.address, certs)
        (tmp_path / "renewed").mkdir()
        renewed = make_certs(tmp_path / "renewed")
        # The renewal is signed by another CA: trust both while checking.
        both = tmp_path / "both-cas.pem"
        both.write_bytes(certs.ca.read_bytes() + renewed.ca.read_bytes())
        shutil.copy(renewed.server_cert, cert)
        shutil.copy(renewed.server_key, key)
        trusting_both = dataclasses.replace(certs, ca=both)
        srv.signal(signal.SIGHUP)
        until(lambda: only_generation(srv, 1), 60, what="the workers replaced")
        second = served_certificate(srv.address, trusting_both)
        assert second != first
        # A broken file on the next HUP: the certificate in service stays.
        cert.write_text("not a certificate")
        srv.signal(signal.SIGHUP)
        until(lambda: "TLS: keeping the current certificate" in srv.log(), 30, what="logged")
        until(lambda: only_generation(srv, 2), 60, what="the workers replaced again")
        assert served_certificate(srv.address, trusting_both) == second
    finally:
        srv.stop()


def test_session_tickets_resume_in_every_worker(certs: Certs, tmp_path: Path) -> None:
    """The master made the context before forking: one worker's ticket resumes in another."""
    srv = start("tests.server.apps:app", "--certfile", str(certs.server_cert), "--keyfile",
                str(certs.server_key), "--workers", "2", log_dir=tmp_path)  # fmt: skip
    context = certs.client_context()

    def get(session: ssl.SSLSession | None) -> tuple[ssl.SSLSocket, str]:
        sock = context.wrap_socket(socket.create_connection(srv.address, timeout=10),
                                   server_hostname="localhost", session=session)  # fmt: skip
        sock.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        pid = read_all(sock).partition(b"\r\n\r\n")[2].decode()
        return sock, pid

    try:
        first, _ = get(None)  # the tickets arrive with the first read
        session = first.session
        first.close()
        resumed_in: set[str] = set()

        def resumed_in_both() -> bool:
            sock, pid = get(session)
            with sock:
                assert sock.session_reused, f"worker {pid} did not resume the session"
            resumed_in.add(pid)
            return len(resumed_in) == 2

        until(resumed_in_both, 30, 0.01, what="resumed by both workers")
    finally:
        srv.stop()
