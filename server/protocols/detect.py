"""The protocol every accepted connection starts with: it reads the first byte and hands the
connection to the mux, classic uwsgi or HTTP/1.1 protocol (PROTOCOL.md §2), or, with a
certificate, to the TLS layer, inside which a second detector does the same again."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
from collections.abc import Sequence
from typing import Final

from muxwsgi import Connection as MuxConnection
from muxwsgi import (
    ConnectionConfig,
    ErrorCode,
    Protocol,
    Role,
    describe_peer_bytes,
    detect_protocol,
)

from ..tls import TLS_HANDSHAKE, TlsProtocol, tls_environ
from .base import BaseProtocol, ServerContext
from .http import HttpProtocol
from .mux import MuxProtocol
from .uwsgi import UwsgiProtocol, error_response

__all__ = ("DetectProtocol", "parse_allow_from")

log = logging.getLogger("muxwsgi.error")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_allow_from(entries: Sequence[str]) -> list[Network] | None:
    """The allow-list as networks; None means everyone ("*")."""
    if not entries or "*" in entries:
        return None
    return [ipaddress.ip_network(entry, strict=False) for entry in entries]


#: What a plaintext client of a --tls-only socket is told, per protocol.
_TLS_REQUIRED: Final = "this port requires TLS"


class DetectProtocol(BaseProtocol):
    """Choose the connection's protocol from its first byte.

    ``tls`` is the server's context when it has a certificate: a TLS handshake then goes to
    the TLS layer, and plaintext is refused if ``tls_only``. Inside TLS the detector is made
    with ``inside`` (the connection's SSLObject) instead, and gives the protocol it chooses
    the vars the connection adds to each request (server/tls.py's ``tls_environ``).
    """

    kind = "detect"

    def __init__(
        self,
        ctx: ServerContext,
        core_config: ConnectionConfig,
        allowed: list[Network] | None,
        *,
        tls: ssl.SSLContext | None = None,
        tls_only: bool = False,
        inside: ssl.SSLObject | None = None,
    ) -> None:
        super().__init__(ctx)
        self._core_config = core_config
        self._allowed = allowed
        self._tls = tls
        self._tls_only = tls_only
        self._inside = inside

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if len(self.ctx.connections) > self.config.max_connections:
            log.warning(
                "refusing a connection from %s: max-connections (%d) reached",
                self.peer,
                self.config.max_connections,
            )
            self.close()
            return
        if self._allowed is not None and self.peer != "unix":
            address = ipaddress.ip_address(self.peer.rpartition(":")[0].strip("[]"))
            if not any(address in network for network in self._allowed):
                log.warning("refusing a connection from %s: not in allow-from", self.peer)
                self.close()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        if data[0] == TLS_HANDSHAKE and self._tls is not None:
            self._switch(TlsProtocol(self.ctx, self._tls, self._inner_detector), data)
            return
        protocol = detect_protocol(data)
        if self._tls_only and protocol is not None and protocol is not Protocol.UNKNOWN:
            self._refuse_plaintext(protocol)
            return
        chosen: BaseProtocol
        if protocol is Protocol.MUX:
            chosen = MuxProtocol(self.ctx, self._core_config)
        elif protocol is Protocol.UWSGI:
            chosen = UwsgiProtocol(self.ctx)
        elif protocol is Protocol.HTTP:
            chosen = HttpProtocol(self.ctx)
        else:
            what = describe_peer_bytes(data)
            if data[0] == TLS_HANDSHAKE:
                what += ", but " + ("TLS inside TLS is not served" if self._inside
                                    else "this server has no certificate (--certfile)")  # fmt: skip
            log.warning(
                "closing a connection from %s: it sent %s, which is neither muxwsgi, "
                "classic uwsgi nor HTTP/1.1",
                self.peer,
                what,
            )
            self.close()
            return
        if self._inside is not None:
            chosen.tls_environ = tls_environ(self._inside, chosen.kind)
        self._switch(chosen, data)

    def _switch(self, chosen: BaseProtocol, data: bytes) -> None:
        """Hand the connection, and the bytes read so far, to ``chosen``."""
        transport = self.transport
        assert transport is not None
        self.ctx.connections.discard(self)
        chosen._peer = self._peer  # if it was looked up already
        transport.set_protocol(chosen)
        chosen.connection_made(transport)
        if self.drain_started:
            chosen.shutdown()  # serve what arrived, nothing after it
        chosen.data_received(data)

    def _inner_detector(self, sslobj: ssl.SSLObject) -> BaseProtocol:
        """The detector inside a TLS connection (allow-from was checked on the socket)."""
        return DetectProtocol(self.ctx, self._core_config, None, inside=sslobj)

    def _refuse_plaintext(self, protocol: Protocol) -> None:
        """A plaintext client on a --tls-only socket: say so in its own protocol, then close.
        A mux client gets the server's PREFACE and a GOAWAY whose debug text says why;
        classic uwsgi and HTTP clients an HTTP 400."""
        log.warning(
            "closing a connection from %s: it speaks %s in plaintext; --tls-only",
            self.peer,
            protocol.value,
        )
        assert self.transport is not None
        if protocol is Protocol.MUX:
            conn = MuxConnection(Role.SERVER, self._core_config)
            conn.send_goaway(ErrorCode.PROTOCOL_ERROR, debug=_TLS_REQUIRED.encode() +
                             b": connect with muxs://")  # fmt: skip
            self.transport.write(conn.data_to_send())
        else:
            hint = "https://" if protocol is Protocol.HTTP else "suwsgi:// or uwsgis://"
            self.transport.write(error_response("400 Bad Request", f"{_TLS_REQUIRED}: {hint}"))
        self.close()

    def enforce_timeouts(self, now: float) -> None:
        self.check_preface_timeout(now, "nothing received")
