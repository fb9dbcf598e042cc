"""Certificates for the TLS tests, made by trustme in a temporary directory: none is checked in.

One CA signs the server's certificate (localhost, 127.0.0.1, ::1), the client's and a gateway's
(nginx's, as a client of the server); a second CA signs what the server must refuse; one client
certificate has expired; one server certificate is for other names.
"""

from __future__ import annotations

import datetime
import http.client
import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme

__all__ = ("Certs", "https_get", "make_certs")

#: The subject's common name of the good client certificate (SSL_CLIENT_S_DN shows it).
CLIENT_NAME = "client-1"
#: The common name of the gateway's (nginx's) client certificate.
GATEWAY_NAME = "gateway"


@dataclass(frozen=True)
class Certs:
    """PEM files; ``*_pem`` files hold a certificate chain and its key together."""

    ca: Path
    server_cert: Path  # the chain only
    server_key: Path
    client_pem: Path
    client_cert: Path  # the same client, certificate and key apart (curl's --cert/--key)
    client_key: Path
    gateway_cert: Path
    gateway_key: Path
    expired_client_pem: Path
    other_ca: Path
    other_ca_client_pem: Path
    #: Signed by the good CA, for api.example and www.api.example only.
    other_name_pem: Path

    def client_context(self, *, cert: Path | None = None) -> ssl.SSLContext:
        """A Python client context that trusts our CA (and presents ``cert``)."""
        context = ssl.create_default_context(cafile=str(self.ca))
        if cert is not None:
            context.load_cert_chain(str(cert))
        return context


def make_certs(directory: Path) -> Certs:
    ca = trustme.CA()
    other_ca = trustme.CA()
    now = datetime.datetime.now(datetime.UTC)
    server = ca.issue_cert("localhost", "127.0.0.1", "::1")
    client = ca.issue_cert("client@example.com", common_name=CLIENT_NAME)
    gateway = ca.issue_cert("gateway@example.com", common_name=GATEWAY_NAME)
    expired = ca.issue_cert(
        "expired@example.com",
        common_name="expired",
        not_before=now - datetime.timedelta(days=3),
        not_after=now - datetime.timedelta(days=1),
    )
    stranger = other_ca.issue_cert("stranger@example.com", common_name="stranger")
    other_name = ca.issue_cert("api.example", "www.api.example")
    certs = Certs(
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_pem=directory / "client.pem",
        client_cert=directory / "client-cert.pem",
        client_key=directory / "client-key.pem",
        gateway_cert=directory / "gateway-cert.pem",
        gateway_key=directory / "gateway-key.pem",
        expired_client_pem=directory / "expired.pem",
        other_ca=directory / "other-ca.pem",
        other_ca_client_pem=directory / "stranger.pem",
        other_name_pem=directory / "api-example.pem",
    )
    ca.cert_pem.write_to_path(str(certs.ca))
    other_ca.cert_pem.write_to_path(str(certs.other_ca))
    for issued, chain, key in (
        (server, certs.server_cert, certs.server_key),
        (client, certs.client_cert, certs.client_key),
        (gateway, certs.gateway_cert, certs.gateway_key),
    ):
        chain.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
        issued.private_key_pem.write_to_path(str(key))
    for issued, both in (
        (client, certs.client_pem),
        (expired, certs.expired_client_pem),
        (stranger, certs.other_ca_client_pem),
        (other_name, certs.other_name_pem),
    ):
        issued.private_key_and_cert_chain_pem.write_to_path(str(both))
    return certs


def https_get(port: int, certs: Certs, path: str, cert: Path | None = None) -> tuple[int, bytes]:
    """GET ``path`` from https://localhost:``port`` with our CA (presenting ``cert``)."""
    context = certs.client_context(cert=cert)
    conn = http.client.HTTPSConnection("localhost", port, context=context, timeout=20)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()
