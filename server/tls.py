"""TLS on the shared socket: the server's certificate, and a TLS layer between a connection's
socket and the protocol that serves it.

A connection whose first byte starts a TLS handshake record (0x16) is handed to a
:class:`TlsProtocol` by the detector; the bytes the detector read are already gone from the
socket, so the layer is built on ``ssl.SSLObject`` and two memory BIOs rather than on the
loop's ``start_tls``. Once the handshake is done, the plaintext goes to a fresh detector, so
mux, classic uwsgi and HTTP/1.1 are told apart inside TLS exactly as outside it. The inner
protocol writes to a :class:`TlsTransport`, which encrypts; it sees TLS only through
``get_extra_info`` (``ssl_object``, ``peercert``, ``cipher``) and its ``tls_environ`` (the
vars the connection adds to each request's environ, see :func:`tls_environ`).

What a peer can make the layer do is bounded like the mux protocol's frames: a handshake must
finish within ``header_timeout``; one loop turn decrypts at most :data:`RECORDS_PER_TURN`
records, so a flood of tiny records waits for its next turn like a flood of frames; and no
renegotiation is accepted.

The context is made by the master (:class:`ServerTls`) and inherited by the workers it forks:
a session ticket issued by one worker then resumes on any other (OpenSSL's ticket keys belong
to the context), which is what lets nginx's ``uwsgi_ssl_session_reuse`` skip the full
handshake on most of its connections. A HUP loads the certificate files again; the workers
forked by the rolling reload serve the new certificate.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import ssl
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, cast

from .config import Config
from .protocols.base import BaseProtocol, ServerContext

__all__ = (
    "ALPN_PROTOCOLS",
    "RECORDS_PER_TURN",
    "TLS_HANDSHAKE",
    "ServerTls",
    "TlsConfigError",
    "TlsProtocol",
    "TlsTransport",
    "distinguished_name",
    "server_context",
    "tls_environ",
)

log = logging.getLogger("muxwsgi.error")

#: The first byte of every TLS connection: the content type of a handshake record.
TLS_HANDSHAKE = 0x16
#: Advertised in the handshake (PROTOCOL.md §2): a client may ask for either, or for neither
#: (nginx's suwsgi does not use ALPN). What the first plaintext byte says is what is served.
ALPN_PROTOCOLS = ("muxwsgi/1", "http/1.1")
#: Records decrypted in one loop turn; the rest wait for the next turn (see the module's doc).
#: A record holds at most 16 KiB, so a turn hands up to 512 KiB to the inner protocol.
RECORDS_PER_TURN = 32
#: The most plaintext asked of one record read (more than a record holds: one read, one record).
_READ_SIZE = 1 << 17
#: OpenSSL's memory buffers keep the largest size they ever held for the connection's life:
#: ciphertext goes into them in slices of this size (a socket read can bring 256 KiB, an
#: application's write any size), so that each TLS connection keeps tens of KiB, not MiBs.
_SLICE = 1 << 15
#: More than one record (16 KiB and its overhead): the incoming buffer is filled up to here.
_RECORD_ROOM = 17 * 1024

_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


class TlsConfigError(Exception):
    """The TLS settings cannot be used; the message names the setting and says why."""


# ---------------------------------------------------------------- the certificate


def server_context(config: Config) -> ssl.SSLContext | None:
    """The server's SSLContext from the TLS settings, or None when TLS is off (no certfile).

    Raises TlsConfigError for settings that need --certfile, files that cannot be read, a key
    that does not match the certificate, or a cipher list that selects nothing.
    """
    if config.certfile is None:
        for name, value in (
            ("--keyfile", config.keyfile),
            ("--ca-certs", config.ca_certs),
            ("--ssl-ciphers", config.ssl_ciphers),
        ):
            if value is not None:
                raise TlsConfigError(f"{name} needs --certfile (TLS is off without it)")
        if config.tls_only:
            raise TlsConfigError("--tls-only needs --certfile (TLS is off without it)")
        return None
    for flag, path in (
        ("--certfile", config.certfile),
        ("--keyfile", config.keyfile),
        ("--ca-certs", config.ca_certs),
    ):
        if path is not None:  # OpenSSL's errors do not say which file it could not read
            try:
                with open(path, "rb"):
                    pass
            except OSError as exc:
                raise TlsConfigError(f"{flag} {path}: {exc.strerror or exc}") from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _VERSIONS[config.ssl_min_version]
    # A renegotiation costs the server a handshake at the client's will; TLS 1.3 has none.
    context.options |= ssl.OP_NO_RENEGOTIATION
    if config.ssl_ciphers is not None:
        try:
            context.set_ciphers(config.ssl_ciphers)
        except ssl.SSLError:
            raise TlsConfigError(
                f"--ssl-ciphers {config.ssl_ciphers!r}: no cipher matches "
                "(an OpenSSL cipher list, e.g. ECDHE+AESGCM)"
            ) from None
    try:
        context.load_cert_chain(config.certfile, config.keyfile)
    except ssl.SSLError as exc:
        raise TlsConfigError(_chain_error(config, exc)) from None
    try:
        context.set_alpn_protocols(list(ALPN_PROTOCOLS))
    except NotImplementedError:  # an OpenSSL without ALPN: clients then negotiate none
        pass
    if config.ca_certs is not None:
        try:
            context.load_verify_locations(cafile=config.ca_certs)
        except (OSError, ssl.SSLError) as exc:
            raise TlsConfigError(
                f"--ca-certs {config.ca_certs}: cannot load: {_reason(exc)}"
            ) from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _why(exc: ssl.SSLError) -> str | None:
    """OpenSSL's reason for an SSLError, or None: typeshed says str, but it is None when
    OpenSSL gave none (a compiled build checks the value against the stubs)."""
    return cast("str | None", getattr(exc, "reason", None))


def _chain_error(config: Config, exc: ssl.SSLError) -> str:
    """Why load_cert_chain failed, naming the files and the settings."""
    if _why(exc) == "KEY_VALUES_MISMATCH":
        return (
            f"--keyfile {config.keyfile or config.certfile} is not the key of --certfile "
            f"{config.certfile}"
        )
    where = f"--certfile {config.certfile}"
    if config.keyfile is not None:
        where += f" / --keyfile {config.keyfile}"
    return f"{where}: not a PEM certificate chain and its private key ({_reason(exc)})"


def _reason(exc: OSError) -> str:
    if isinstance(exc, ssl.SSLError):
        return _why(exc) or str(exc)
    return exc.strerror or str(exc)


def _fingerprint(certfile: str) -> str:
    """The SHA-256 fingerprint of the first certificate in ``certfile``, as ``openssl x509
    -fingerprint -sha256`` prints it: how an operator checks which certificate is served."""
    try:
        with open(certfile, encoding="ascii", errors="replace") as f:
            text = f.read()
        start = text.index("-----BEGIN CERTIFICATE-----")
        end = text.index("-----END CERTIFICATE-----", start) + len("-----END CERTIFICATE-----")
        digest = hashlib.sha256(ssl.PEM_cert_to_DER_cert(text[start:end])).hexdigest()
    except (OSError, ValueError):
        return "unknown"
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2)).upper()


class ServerTls:
    """The master's TLS context: loaded before the first fork, loaded again on HUP.

    Workers forked after a reload serve the new certificate; connections already open keep
    the one they were made with. A certificate that fails to load on HUP is logged and the
    current one stays in service: a bad file must not take the workers down.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.context: ssl.SSLContext | None = None

    def load(self) -> None:
        """Load the settings' certificate. Raises TlsConfigError."""
        self.context = server_context(self.config)
        if self.context is not None:
            self._log_loaded()

    def reload(self) -> None:
        """Load the certificate files again, keeping the current context if that fails."""
        if self.config.certfile is None:
            return
        try:
            self.context = server_context(self.config)
        except TlsConfigError as exc:
            log.error("TLS: keeping the current certificate: %s", exc)
            return
        self._log_loaded()

    def _log_loaded(self) -> None:
        certfile = self.config.certfile
        assert certfile is not None
        clients = "required" if self.config.ca_certs else "not requested"
        log.info(
            "TLS: serving %s (sha256 %s); client certificates %s",
            certfile,
            _fingerprint(certfile),
            clients,
        )


# ---------------------------------------------------------------- the environ


#: OpenSSL's short names for the attributes of a distinguished name, as nginx and mod_ssl
#: print them; others keep Python's name.
_SHORT_NAMES = {
    "commonName": "CN",
    "countryName": "C",
    "localityName": "L",
    "stateOrProvinceName": "ST",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "streetAddress": "street",
    "domainComponent": "DC",
    "userId": "UID",
}


def distinguished_name(rdns: Any) -> str:
    """An RFC 4514 string (``CN=client,O=Example``, most specific first, as nginx's
    ``$ssl_client_s_dn``) from the ``subject`` or ``issuer`` of ``getpeercert()``."""
    parts = []
    for rdn in reversed(rdns):
        parts.append("+".join(f"{_SHORT_NAMES.get(k, k)}={_escape(v)}" for k, v in rdn))
    return ",".join(parts)


def _escape(value: str) -> str:
    escaped = "".join("\\" + c if c in ',+"\\<>;' else c for c in value)
    if escaped[:1] in ("#", " "):
        escaped = "\\" + escaped
    if escaped.endswith(" ") and not escaped.endswith("\\ "):
        escaped = escaped[:-1] + "\\ "
    return escaped


def tls_environ(sslobj: ssl.SSLObject, inner_kind: str) -> Mapping[str, object]:
    """What a TLS connection adds to each request's environ, in mod_ssl's names (values that
    a request brought itself win: ``prepare_environ`` adds only what is absent).

    ``muxwsgi.tls`` always describes this connection: SSL_PROTOCOL, SSL_CIPHER,
    SSL_SESSION_RESUMED (Initial or Resumed), SSL_CLIENT_VERIFY (SUCCESS or NONE) and, for a
    verified client certificate, SSL_CLIENT_S_DN and SSL_CLIENT_I_DN. The same names are CGI
    vars of HTTP and mux requests, whose TLS peer is the client; a classic uwsgi peer is a
    gateway (nginx's ``uwsgi_pass suwsgi://``) that describes its own client's connection in
    the vars it sends, and its certificate must not pass for that client's: there the names
    are in ``muxwsgi.tls`` only.
    """
    cipher = sslobj.cipher()
    cert = sslobj.getpeercert()
    hop: dict[str, str] = {
        "SSL_PROTOCOL": sslobj.version() or "",
        "SSL_CIPHER": cipher[0] if cipher else "",
        "SSL_SESSION_RESUMED": "Resumed" if sslobj.session_reused else "Initial",
        "SSL_CLIENT_VERIFY": "SUCCESS" if cert else "NONE",
    }
    if cert:
        hop["SSL_CLIENT_S_DN"] = distinguished_name(cert.get("subject", ()))
        hop["SSL_CLIENT_I_DN"] = distinguished_name(cert.get("issuer", ()))
    added: dict[str, object] = {} if inner_kind == "uwsgi" else dict(hop)
    added["muxwsgi.tls"] = MappingProxyType(hop)
    return added


# ---------------------------------------------------------------- the layer

#: verify_code -> what it means for a client certificate, in the log's words.
_CLIENT_CERT_ERRORS = {
    10: "it has expired",
    9: "it is not valid yet",
    2: "it is not signed by a CA in --ca-certs",
    18: "it is self-signed, not signed by a CA in --ca-certs",
    19: "its chain ends in a CA that is not in --ca-certs",
    20: "it is not signed by a CA in --ca-certs",
    21: "it is not signed by a CA in --ca-certs",
    26: "it is not for client authentication (extendedKeyUsage)",
}


def describe_handshake_error(exc: ssl.SSLError) -> tuple[int, str]:
    """(log level, words) for a failed handshake: a refused client certificate is a warning,
    a peer that does not speak our TLS (a scanner, an old client) is info."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = _CLIENT_CERT_ERRORS.get(exc.verify_code, exc.verify_message)
        return logging.WARNING, f"client certificate refused: {why} ({exc.verify_message})"
    reason = _why(exc) or ""
    if reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE":
        return logging.WARNING, "no client certificate (--ca-certs requires one)"
    if reason in ("TLSV1_ALERT_UNKNOWN_CA", "SSLV3_ALERT_BAD_CERTIFICATE",
                  "SSLV3_ALERT_CERTIFICATE_UNKNOWN", "TLSV1_ALERT_DECRYPT_ERROR"):  # fmt: skip
        return logging.INFO, f"the client refused our certificate ({reason})"
    if reason in ("UNSUPPORTED_PROTOCOL", "NO_SHARED_CIPHER", "WRONG_VERSION_NUMBER"):
        return logging.INFO, f"no TLS version or cipher in common ({reason})"
    return logging.INFO, reason or str(exc)


class TlsProtocol(BaseProtocol):
    """The protocol of a TLS connection's socket: handshake, then decrypt for, and pass events
    on to, the inner protocol (``make_inner(ssl_object)``, once the handshake is done).

    While the handshake runs this is the connection the worker sees (max-connections, the
    timeout tick, a graceful stop); after it, the inner protocol is, and this stays the
    socket's protocol only to pass bytes through.
    """

    kind = "tls"

    def __init__(
        self,
        ctx: ServerContext,
        context: ssl.SSLContext,
        make_inner: Callable[[ssl.SSLObject], BaseProtocol],
    ) -> None:
        super().__init__(ctx)
        self._make_inner = make_inner
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._ssl = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self.inner: BaseProtocol | None = None
        self.facade: TlsTransport | None = None
        #: The inner protocol asked for no more data (its pause_reading).
        self.inner_paused = False
        #: A turn is scheduled to decrypt what the last one left (RECORDS_PER_TURN).
        self._turn_pending = False
        self._socket_paused = False
        #: Ciphertext read from the socket and not yet in the incoming buffer (see _SLICE).
        self._backlog: memoryview | None = None
        #: The socket's end was seen (FIN); passed on once everything before it was.
        self._socket_eof = False
        #: The TLS stream ended (close_notify, or the socket's end): nothing more to decrypt.
        self._ended = False
        self._eof_passed = False
        #: We sent close_notify (write_eof or close): what arrives after it is dropped.
        self.shut = False

    # ---------------------------------------------------------------- the handshake

    def data_received(self, data: bytes) -> None:
        if self.shut or (self.closed and self.inner is None):
            return
        if self.inner is None:
            self._incoming.write(data)  # handshake messages: small, or refused by OpenSSL
            self._handshake()
            return
        backlog = self._backlog
        self._backlog = memoryview(data if backlog is None else bytes(backlog) + data)
        if not self._turn_pending:
            self.turn()

    def _fill(self) -> None:
        """Move the next slice of the backlog into the incoming buffer (its end, after it)."""
        backlog = self._backlog
        assert backlog is not None
        self._incoming.write(backlog[:_SLICE])
        if len(backlog) > _SLICE:
            self._backlog = backlog[_SLICE:]
            return
        self._backlog = None
        if self._socket_eof:
            self._incoming.write_eof()

    def _handshake(self) -> None:
        try:
            self._ssl.do_handshake()
        except ssl.SSLWantReadError:
            self._send_pending()
            return
        except ssl.SSLError as exc:
            level, why = describe_handshake_error(exc)
            log.log(level, "TLS handshake with %s failed: %s", self.peer, why)
            self._send_pending()  # the alert, if OpenSSL made one
            # A lingering close: under TLS 1.3 the client may have finished its side and sent
            # its first request already; closing with it unread would send an RST, which can
            # destroy the alert before the client reads why it was refused.
            self.close()
            return
        self._send_pending()  # our Finished, the session tickets
        self._start_inner()
        self.turn()  # what came with the client's Finished (TLS 1.3 sends its request at once)

    def _start_inner(self) -> None:
        transport = self.transport
        assert transport is not None
        self.facade = TlsTransport(self, transport)
        inner = self.inner = self._make_inner(self._ssl)
        inner._peer = self._peer  # if it was looked up already
        self.ctx.connections.discard(self)  # the inner protocol is the connection from now on
        inner.connection_made(self.facade)
        if self.drain_started:
            inner.shutdown()

    # ---------------------------------------------------------------- reading

    def turn(self) -> None:
        """Decrypt up to RECORDS_PER_TURN records and hand their plaintext to the inner
        protocol in one call; leave the rest (and the socket) for the next loop turn."""
        self._turn_pending = False
        if self.inner is None or self.inner_paused or self.shut:
            return
        chunks: list[bytes] = []
        budget_spent = False
        if not self._ended:
            read = self._ssl.read
            incoming = self._incoming
            budget_spent = True
            for _ in range(RECORDS_PER_TURN):
                if self._backlog is not None and incoming.pending < _RECORD_ROOM:
                    self._fill()
                if not incoming.pending and not incoming.eof:
                    # Everything read was decrypted: no call that can only say "want read"
                    # (each call into OpenSSL gives up the GIL, and the application threads
                    # may keep it for a switch interval).
                    budget_spent = False
                    break
                try:
                    chunk = read(_READ_SIZE)
                except ssl.SSLWantReadError:
                    budget_spent = False
                    break
                except (ssl.SSLZeroReturnError, ssl.SSLEOFError):  # close_notify; the socket's end
                    budget_spent = False
                    self._ended = True
                    break
                except ssl.SSLError as exc:
                    log.info("TLS connection from %s: %s; closing", self.peer, _why(exc) or exc)
                    self._send_pending()
                    self._abort_inner()
                    return
                if not chunk:  # close_notify (OpenSSL's clean end reads as b"")
                    budget_spent = False
                    self._ended = True
                    break
                chunks.append(chunk)
            if self._outgoing.pending:
                self._send_pending()  # post-handshake messages (a KeyUpdate's answer)
        if chunks:
            self.inner.data_received(chunks[0] if len(chunks) == 1 else b"".join(chunks))
        if self.inner_paused or self.shut or self.inner.closed:
            pass  # resume_reading (or nothing, once closed) brings the next turn
        elif self._ended:
            self._pass_eof()
        elif budget_spent:
            self._turn_pending = True
            self.ctx.loop.call_soon(self.turn)
        self._update_reading()

    def _update_reading(self) -> None:
        """Read the socket only while the inner protocol wants data and no turn is pending."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        pause = self.inner_paused or self._turn_pending
        if pause != self._socket_paused:
            self._socket_paused = pause
            if pause:
                transport.pause_reading()
            else:
                transport.resume_reading()

    def inner_resumed(self) -> None:
        """The inner protocol reads again: what is buffered waits for the next loop turn,
        as it would on a plain socket (never delivered inside its resume_reading call)."""
        self.inner_paused = False
        if not self._turn_pending and (
            self._incoming.pending or self._backlog is not None or self._socket_eof or self._ended
        ):
            self._turn_pending = True
            self.ctx.loop.call_soon(self.turn)
        self._update_reading()

    def eof_received(self) -> bool:
        if self.inner is None:
            if not self.closed:
                log.info("TLS connection from %s: closed during the handshake", self.peer)
            return False
        if self.shut:
            return False  # our close_notify went out: the close is complete
        self._socket_eof = True
        if self._backlog is None:
            self._incoming.write_eof()  # else after the backlog (_fill)
        if not self._turn_pending:
            self.turn()
        return True  # kept open: the inner protocol decides when it closes

    def _pass_eof(self) -> None:
        """The peer sent close_notify or closed the socket: tell the inner protocol (once),
        and close if it has nothing left to answer."""
        if self._eof_passed or self.inner is None:
            return
        self._eof_passed = True
        if not self.inner.eof_received() and self.facade is not None:
            self.facade.close()

    def _abort_inner(self) -> None:
        if self.facade is not None:
            self.facade.abort()

    # ---------------------------------------------------------------- writing

    def _send_pending(self) -> None:
        data = self._outgoing.read()
        if data and self.transport is not None:
            self.transport.write(data)

    def send_close_notify(self) -> None:
        """Queue our close_notify (once); nothing is read or decrypted after it."""
        if self.shut:
            return
        self.shut = True
        try:
            self._ssl.unwrap()
        except (ssl.SSLError, ValueError):
            pass  # the peer's close_notify is not awaited: ours is in the outgoing BIO
        self._send_pending()

    # ---------------------------------------------------------------- the socket's events

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()
        else:
            super().pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()
        else:
            super().resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        inner, self.inner, self.facade = self.inner, None, None
        if inner is not None:
            inner.connection_lost(exc)
            # The inner protocol may live on in a reference cycle of its own (with its
            # request's input stream, say) until the cyclic collector runs, which can take
            # thousands of connections: it must not keep the layer and OpenSSL's state alive
            # all that time. Its transport is optional to it; its peer is kept.
            inner._peer = inner.peer
            inner.transport = None

    # ---------------------------------------------------------------- the worker's tick

    def enforce_timeouts(self, now: float) -> None:
        # Only while handshaking: afterwards the inner protocol is the worker's connection.
        self.check_preface_timeout(now, "TLS handshake not complete", linger=False)


class TlsTransport(asyncio.Transport):
    """The inner protocol's transport: writes are encrypted, reading is paused and resumed
    through the TLS layer, closing sends close_notify first."""

    def __init__(self, layer: TlsProtocol, transport: asyncio.Transport) -> None:
        super().__init__()
        self._layer = layer
        self._transport = transport
        self._encrypt = layer._ssl.write
        self._ciphertext = layer._outgoing.read
        self._send = transport.write
        self._closing = False
        #: Set once close_notify went out (or the connection was aborted): writes are dropped,
        #: as a closed transport drops them.
        self._stopped = False

    # Writing: the hot path. One write is one call into OpenSSL and one socket write.

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._stopped or not data:
            return
        if len(data) > _SLICE:
            self._write_slices(memoryview(data))
            return
        try:
            self._encrypt(data)
        except ssl.SSLError as exc:
            log.info("TLS connection: cannot encrypt (%s); closing", _why(exc) or exc)
            self.abort()
            return
        self._send(self._ciphertext())

    def _write_slices(self, view: memoryview) -> None:
        """A large write, encrypted a slice at a time (see _SLICE), sent in one socket write."""
        pieces = []
        try:
            for start in range(0, len(view), _SLICE):
                self._encrypt(view[start : start + _SLICE])
                pieces.append(self._ciphertext())
        except ssl.SSLError as exc:
            log.info("TLS connection: cannot encrypt (%s); closing", _why(exc) or exc)
            self.abort()
            return
        self._transport.writelines(pieces)

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def write_eof(self) -> None:
        self._stopped = True
        self._layer.send_close_notify()
        self._transport.write_eof()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    # Reading

    def pause_reading(self) -> None:
        self._layer.inner_paused = True
        self._layer._update_reading()

    def resume_reading(self) -> None:
        if self._layer.inner_paused:
            self._layer.inner_resumed()

    def is_reading(self) -> bool:
        return not self._layer.inner_paused and not self.is_closing()

    # Closing

    def is_closing(self) -> bool:
        return self._closing or self._transport.is_closing()

    def close(self) -> None:
        if self._closing:
            return
        self._closing = self._stopped = True
        self._layer.send_close_notify()
        self._transport.close()

    def abort(self) -> None:
        self._closing = self._stopped = True
        self._transport.abort()

    # The rest

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        assert isinstance(protocol, BaseProtocol)
        self._layer.inner = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self._layer.inner is not None
        return self._layer.inner

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        sslobj = self._layer._ssl
        if name == "ssl_object":
            return sslobj
        if name == "peercert":
            return sslobj.getpeercert()
        if name == "cipher":
            return sslobj.cipher()
        if name == "compression":
            return sslobj.compression()
        if name == "socket":
            # The socket carries ciphertext: whoever would write to it directly (the classic
            # protocol's hand-over to a thread) must write through this transport instead.
            return default
        return self._transport.get_extra_info(name, default)
