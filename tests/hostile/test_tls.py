"""Hostile and faulty TLS peers against a live server, while a healthy client (plaintext mux on
the same port) must not notice: handshakes that never finish, refused client certificates, a
record flood, a renegotiation, plaintext on a --tls-only port.

What load cannot move is checked (every stalled handshake closed by the server, the log line
that says why, the healthy client answered throughout, the flooder's own request answered
correctly). How fairly one loop turn is shared is tests/server/test_tls_layer.py's."""

from __future__ import annotations

import hashlib
import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator

import pytest

from muxwsgi import classic

from ..certs import Certs, make_certs
from ..servers import ServerProcess, start, until
from .kit import Healthy, log_problems

pytestmark = pytest.mark.slow

#: Handshakes left hanging at once; max-connections leaves room for them and the healthy
#: client, and for nothing else.
STALLED = 5


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def server(certs: Certs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Mutual TLS and plaintext on one port; a short header timeout; room for STALLED + 1."""
    srv = start("tests.hostile.apps:app", "--certfile", str(certs.server_cert), "--keyfile",
                str(certs.server_key), "--ca-certs", str(certs.ca), "--header-timeout", "1",
                "--max-connections", str(STALLED + 1),
                log_dir=tmp_path_factory.mktemp("tls-hostile"))  # fmt: skip
    yield srv
    srv.stop()
    assert log_problems(srv.log()) == []


def closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_handshakes_that_never_finish_cost_a_slot_each_until_they_time_out(
    server: ServerProcess, certs: Certs
) -> None:
    with Healthy(server.address, depth=4) as healthy:
        healthy.check(0)
        # The first bytes of a ClientHello, then nothing: slowloris at the TLS layer.
        stalled = [socket.create_connection(server.address, timeout=0.2) for _ in range(STALLED)]
        for sock in stalled:
            sock.sendall(b"\x16\x03\x01\x02\x00\x01")
        # Each holds a connection slot: the next one is refused while they last...
        until(lambda: refused(server), 10, what="a connection refused at max-connections")
        since = healthy.ok
        # ...and the server closes every one of them at header_timeout.
        until(lambda: all(closed_by_server(sock) for sock in stalled), 20, what="all closed")
        for sock in stalled:
            sock.close()
        healthy.check(since)
    assert server.log().count("TLS handshake not complete in 1s") >= STALLED
    with tls_connection(server, certs, cert=certs.client_pem) as sock:
        assert https_get(sock, "/hello").endswith(b"Hello, World!")


def refused(server: ServerProcess) -> bool:
    with socket.create_connection(server.address, timeout=2) as sock:
        return closed_by_server(sock) and "max-connections (6) reached" in server.log()


def tls_connection(server: ServerProcess, certs: Certs, *, cert: object) -> ssl.SSLSocket:
    context = certs.client_context(cert=cert)  # type: ignore[arg-type]
    sock = socket.create_connection(server.address, timeout=10)
    return context.wrap_socket(sock, server_hostname="localhost")


def https_get(sock: ssl.SSLSocket, path: str) -> bytes:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    return b"".join(iter(lambda: sock.recv(65536), b""))


@pytest.mark.parametrize(
    ("which", "logged"),
    [
        ("expired", "client certificate refused: it has expired"),
        ("other-ca", "client certificate refused: it is not signed by a CA in --ca-certs"),
        ("none", "no client certificate (--ca-certs requires one)"),
    ],
)
def test_a_refused_client_certificate_says_which(
    server: ServerProcess, certs: Certs, which: str, logged: str
) -> None:
    cert = {"expired": certs.expired_client_pem, "other-ca": certs.other_ca_client_pem}.get(which)
    before = server.log().count(logged)
    # TLS 1.3: the client's side of the handshake ends before the server has checked its
    # certificate; the refusal arrives as an alert at the first read.
    with (
        pytest.raises((ssl.SSLError, ConnectionResetError)),
        tls_connection(server, certs, cert=cert) as sock,
    ):
        https_get(sock, "/hello")
    until(lambda: server.log().count(logged) > before, 10, what=f"logged {logged!r}")


def test_a_record_flood_is_served_a_turn_at_a_time(server: ServerProcess, certs: Certs) -> None:
    """One byte per record, as fast as the socket takes them: the flooder's body arrives whole
    (its request is answered correctly) and the healthy client is answered throughout."""
    records = 100_000
    body = bytes(i % 251 for i in range(records))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = certs.client_context(cert=certs.client_pem).wrap_bio(
        incoming, outgoing, server_hostname="localhost"
    )
    sock = socket.create_connection(server.address, timeout=30)
    try:
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                sock.sendall(outgoing.read())
                incoming.write(sock.recv(65536))
        # The request's head at once (the server closes a connection that sends nothing for
        # --header-timeout), the body's records after: making them takes seconds on a busy
        # machine.
        tls.write(classic.encode_request({
            "REQUEST_METHOD": "POST", "PATH_INFO": "/sha256", "SERVER_PROTOCOL": "HTTP/1.1",
            "CONTENT_LENGTH": str(records),
        }))  # fmt: skip
        sock.sendall(outgoing.read())
        for i in range(records):
            tls.write(body[i : i + 1])
        flood = outgoing.read()
        assert len(flood) > records * 20  # a record each
        with Healthy(server.address, depth=4) as healthy:
            healthy.check(0)
            since = healthy.ok
            sock.sendall(flood)
            healthy.check(since)
            reply = b""
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                incoming.write(data)
                try:
                    reply += tls.read(65536)
                except ssl.SSLWantReadError:
                    continue
                except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    break
            healthy.check(healthy.ok)
    finally:
        sock.close()
    assert reply.startswith(b"HTTP/1.1 200")
    assert reply.endswith(f"{records} {hashlib.sha256(body).hexdigest()}".encode())


def test_a_renegotiation_is_refused_and_costs_nobody(server: ServerProcess, certs: Certs) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("the openssl command is needed (apt-get install openssl)")
    host, port = server.address
    with Healthy(server.address, depth=4) as healthy:
        healthy.check(0)
        since = healthy.ok
        # s_client renegotiates when a line of its input is "R".
        done = subprocess.run(
            [openssl, "s_client", "-connect", f"{host}:{port}", "-tls1_2", "-CAfile",
             str(certs.ca), "-cert", str(certs.client_pem), "-servername", "localhost"],
            input=b"R\n", capture_output=True, timeout=30,
        )  # fmt: skip
        healthy.check(since)
    output = done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")
    assert "RENEGOTIATING" in output, output
    assert "no renegotiation" in output, output


def test_plaintext_on_a_tls_only_port_is_told_why(
    certs: Certs, tmp_path_factory: pytest.TempPathFactory
) -> None:
    srv = start("tests.hostile.apps:app", "--certfile", str(certs.server_cert), "--keyfile",
                str(certs.server_key), "--tls-only",
                log_dir=tmp_path_factory.mktemp("tls-only"))  # fmt: skip
    try:
        with socket.create_connection(srv.address, timeout=10) as sock:
            sock.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            reply = b"".join(iter(lambda: sock.recv(65536), b""))
        assert reply.startswith(b"HTTP/1.1 400 Bad Request\r\n")
        assert reply.endswith(b"this port requires TLS: https://\n")
        assert "it speaks http in plaintext; --tls-only" in srv.log()
    finally:
        srv.stop()
