"""TLS for ``muxs://`` and ``uwsgis://``: the client's SSLContext from its settings, and what a
TLS failure means, in words.

The settings are httpx's: ``verify`` (True: the system's CAs; a CA bundle's path; False: no
verification; an ``ssl.SSLContext``, used as is) and ``cert`` (a client certificate for
servers that require one). Certificate and name verification are on
unless ``verify=False``; ALPN offers ``muxwsgi/1`` on mux connections (PROTOCOL.md §2).
"""

from __future__ import annotations

import os
import ssl
from typing import Any, TypeAlias

__all__ = (
    "ALPN",
    "CertTypes",
    "VerifyTypes",
    "build_context",
    "certificate_names",
    "check_settings",
    "describe_handshake_failure",
    "describe_tls_error",
    "is_name_mismatch",
)

VerifyTypes: TypeAlias = bool | str | ssl.SSLContext
CertTypes: TypeAlias = str | tuple[str, str] | None

#: What ALPN offers, by protocol: classic uwsgi has no ALPN name (nginx's suwsgi sends none).
ALPN = {"mux": ["muxwsgi/1"], "uwsgi": []}

#: OpenSSL's verify codes for a name (or IP address) the certificate is not for.
_NAME_MISMATCH = (62, 64)
#: verify code -> what is wrong with the server's certificate.
_VERIFY_WORDS = {
    10: "it has expired",
    9: "it is not valid yet",
    18: "it is self-signed, and not in the client's trusted CAs",
    19: "its chain ends in a CA the client does not trust",
    20: "it is not signed by a CA the client trusts",
    21: "it is not signed by a CA the client trusts",
    2: "it is not signed by a CA the client trusts",
}
#: TLS alerts from the server (the SSLError's reason) -> what they say about our side.
_ALERTS = {
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": (
        "the server requires a client certificate: give cert= (muxwsgi request: --cert)"
    ),
    "SSLV3_ALERT_HANDSHAKE_FAILURE": "the server refused the handshake (a client certificate "
    "missing, or no TLS version or cipher in common)",
    "TLSV1_ALERT_UNKNOWN_CA": "the server refused our client certificate: it is not signed by "
    "a CA the server trusts (its --ca-certs)",
    "SSLV3_ALERT_BAD_CERTIFICATE": "the server refused our client certificate",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "the server refused our client certificate: it has expired",
    "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE": "the server refused our client certificate: not "
    "for client authentication",
    "TLSV1_ALERT_PROTOCOL_VERSION": "no TLS version in common with the server",
    "WRONG_VERSION_NUMBER": "the server does not speak TLS there (it answered in plaintext)",
    "UNEXPECTED_EOF_WHILE_READING": "the server closed the connection during the TLS "
    "handshake: does it serve TLS there (muxwsgi serve --certfile)?",
}


def check_settings(verify: object, cert: object) -> None:
    """Raise ValueError, naming the setting, for a value the client cannot use. Files are
    checked here (a missing CA bundle is a configuration error, best found at once); they are
    read when the first TLS connection opens."""
    if not isinstance(verify, bool | str | ssl.SSLContext):
        raise ValueError(
            f"verify={verify!r}: must be True, False, a CA bundle path or an SSLContext"
        )
    if isinstance(verify, str) and not os.path.exists(verify):
        raise ValueError(f"verify={verify!r}: no such CA bundle file")
    files: tuple[object, ...] = ()
    if isinstance(cert, str):
        files = (cert,)
    elif isinstance(cert, tuple) and len(cert) == 2:
        files = cert
    if cert is not None and not (files and all(isinstance(name, str) for name in files)):
        raise ValueError(f"cert={cert!r}: must be a PEM file, or (certificate file, key file)")
    for name in files:
        if not os.path.exists(str(name)):
            raise ValueError(f"cert={cert!r}: no such file {name!r}")
    if isinstance(verify, ssl.SSLContext) and cert is not None:
        raise ValueError("cert= with verify=<SSLContext>: load the certificate into the context")


def build_context(
    verify: VerifyTypes,
    cert: CertTypes,
    protocol: str,
    *,
    check_hostname: bool = True,
) -> ssl.SSLContext:
    """The SSLContext for ``protocol`` ("mux" or "uwsgi") connections. A context given by the
    caller is returned as it is (its ALPN included); ``check_hostname=False`` (only to read a
    certificate's names for an error message) still verifies the chain."""
    if isinstance(verify, ssl.SSLContext):
        return verify
    if verify is False:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context = ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)
        context.check_hostname = check_hostname
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert is not None:
        certfile, keyfile = (cert, None) if isinstance(cert, str) else cert
        context.load_cert_chain(certfile, keyfile)
    if ALPN[protocol]:
        context.set_alpn_protocols(ALPN[protocol])
    return context


def is_name_mismatch(exc: ssl.SSLError) -> bool:
    """Whether the handshake failed because the certificate is for other names."""
    return isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_code in _NAME_MISMATCH


def certificate_names(cert: dict[str, Any]) -> list[str]:
    """The names a verified certificate (``getpeercert()``) is for: its subjectAltName
    entries (what verification checks), else its common name."""
    names = [str(value) for _, value in cert.get("subjectAltName", ())]
    if not names:
        for rdn in cert.get("subject", ()):
            names += [str(value) for key, value in rdn if key == "commonName"]
    return names


def describe_handshake_failure(exc: ssl.SSLError, host: str, names: list[str] | None) -> str:
    """Why the TLS handshake with ``host`` failed, and what to do about it. ``names``: the
    names the server's certificate is for, when the failure is a name mismatch and they could
    be read."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        if exc.verify_code in _NAME_MISMATCH:
            if names:
                listed = ", ".join(repr(name) for name in names)
                return (
                    f"the server's certificate is not valid for {host!r}: it is for {listed} "
                    f"(connect with one of those names, or give the server a certificate for "
                    f"{host!r})"
                )
            return f"the server's certificate is not valid for {host!r} ({exc.verify_message})"
        why = _VERIFY_WORDS.get(exc.verify_code, exc.verify_message)
        return (
            f"the server's certificate failed verification: {why} ({exc.verify_message}); "
            "give verify= the CA bundle that signed it (muxwsgi request: --cacert)"
        )
    return describe_tls_error(exc)


def describe_tls_error(exc: BaseException) -> str:
    """What a TLS error (from the handshake or a later read) means, in words."""
    if isinstance(exc, ssl.SSLEOFError):
        return _ALERTS["UNEXPECTED_EOF_WHILE_READING"]
    reason = exc.reason if isinstance(exc, ssl.SSLError) else None
    if reason in _ALERTS:
        return _ALERTS[reason]
    return f"TLS error: {reason or exc}"
